"""Final-answer extraction across formats, and agreement / majority over answers."""

from __future__ import annotations

import pytest

from classifier.answers import agreement, final_answer, majority, same_answer


@pytest.mark.parametrize(
    "text",
    [
        "Let's think step by step. ... The answer is (C).",
        "the answer is C",
        "The correct answer is: (C)",
        "Answer: C",
        "Final answer: **C**",
        "After weighing the options, **C** is right.",
        "**(C)**",
        "(C) Paris",
        "C) Paris",
        "C. Paris",
        "C",
        "The correct option is C.",
        "I pick choice (C)",
        "The answer is (A).\n\nOn reflection, the answer is (C).",
    ],
)
def test_option_letters_in_many_phrasings(text: str) -> None:
    assert final_answer(text) == "option:C"


@pytest.mark.parametrize("text", ["The answer is (c).", "(c)", "c", "Answer: c"])
def test_lower_case_option_letters(text: str) -> None:
    assert final_answer(text) == "option:C"


def test_option_letters_agree_across_cases() -> None:
    assert agreement("The answer is (a)", ["A", "(A) Paris", "Answer: a", "b"]) == 0.75


@pytest.mark.parametrize(
    "text",
    [
        "The answer is a 3-day trip",  # an article, not option A
        "The answer is I think unclear",  # a pronoun, not option I
        "A man walks into a bar.",  # a sentence starting with "A"
    ],
)
def test_words_that_look_like_letters_are_not_options(text: str) -> None:
    assert not final_answer(text).startswith("option:")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("She has 3 apples, buys 5 more.\n#### 8", "number:8"),
        ("#### 1,234", "number:1234"),
        (r"So the result is $\boxed{42}$.", "number:42"),
        (r"\boxed{\frac{1}{2}}", "number:0.5"),
        (r"\boxed{\dfrac{3}{4}}", "number:0.75"),
        (r"\boxed{0.5}", "number:0.5"),
        (r"The area is \boxed{12\text{ cm}^2}", "number:12"),
        ("The answer is 42.", "number:42"),
        ("The answer is 42 apples.", "number:42"),
        ("The answer is $1,200.", "number:1200"),
        ("The answer is 45%.", "number:45"),
        ("The answer is -3.5. Hence done", "number:-3.5"),
        ("There are 5 cats and 7 dogs, so 12 pets.", "number:12"),
        ("Answer: 3/4", "number:0.75"),
    ],
)
def test_numbers(text: str, key: str) -> None:
    assert final_answer(text) == key


def test_equal_numbers_in_different_spellings_agree() -> None:
    assert agreement("#### 1,000", [r"\boxed{1000}", "The answer is 1000.0", "so 999"]) == pytest.approx(2 / 3)
    assert agreement(r"\boxed{\frac{1}{2}}", ["The answer is 0.5"]) == 1.0


@pytest.mark.parametrize(
    ("text", "key"),
    [("Yes, it is.", "bool:yes"), ("No.", "bool:no"), ("True", "bool:yes"), ("false", "bool:no")],
)
def test_booleans(text: str, key: str) -> None:
    assert final_answer(text) == key


def test_the_answer_is_yes_is_a_boolean() -> None:
    assert final_answer("Considering both sides, the answer is yes.") == "bool:yes"
    assert agreement("True.", ["Yes", "No", "The answer is yes"]) == pytest.approx(2 / 3)


def test_free_text_agrees_by_containment_and_token_f1() -> None:
    assert agreement("Paris", ["The capital of France is Paris.", "paris", "Lyon"]) == pytest.approx(2 / 3)
    assert agreement("The Eiffel Tower is in Paris", ["the eiffel tower is located in paris"]) == 1.0
    assert agreement("George Washington", ["Abraham Lincoln"]) == 0.0


def test_long_free_text_is_compared_by_its_last_sentence() -> None:
    reasoning = "Many cities were considered over the centuries and historians disagree. " * 5
    assert same_answer(final_answer(reasoning + "So it is Paris."), final_answer("Paris"))


def test_sign_offs_are_not_the_answer() -> None:
    reasoning = "The question asks where the tower stands, and the records are clear on this point. " * 4
    a = reasoning + "It stands in Paris. I hope this helps! Let me know if you have other questions."
    b = reasoning + "It stands in Rome. Let me know if you have any other questions?"
    assert final_answer(a) == "text:stands paris"
    assert agreement(a, [b]) == 0.0


def test_empty_answers_never_agree() -> None:
    assert final_answer("") == "text:"
    assert agreement("", ["", "x"]) == 0.0


def test_different_kinds_do_not_agree() -> None:
    assert agreement("The answer is (B)", ["The answer is 2", "Yes"]) == 0.0


def test_agreement_is_none_without_others() -> None:
    assert agreement("The answer is (B)", []) is None


def test_majority_picks_the_most_agreed_answer_and_the_earliest_on_ties() -> None:
    assert majority(["A", "The answer is (B)", "B) because", "**B**"]) == 1
    assert majority(["#### 3", "#### 4"]) == 0
    assert majority(["Paris", "Lyon", "It is Paris."]) == 0


def test_majority_needs_answers() -> None:
    with pytest.raises(ValueError):
        majority([])


@pytest.mark.parametrize(
    "text",
    [
        "The answer is (C). Then again, the ANSWER IS option (b) and the final answer: D",
        "Answer: e\nanswer is option (B) and answer is (C)",
        "no conclusion here at all",
        "choices: answerable options; choice is (J) — the correct option is c.",
        "İstanbul: the answer is (A)… ünïcödé before the answer is (G)",
    ],
)
def test_keyword_matches_finds_what_finditer_finds(text: str) -> None:
    from classifier.answers import _ANSWER_IS, _LETTER_MARKED, _MARKED_WORDS, keyword_matches

    for pattern, words in ((_LETTER_MARKED, _MARKED_WORDS), (_ANSWER_IS, ("final answer", "answer"))):
        expected = [(m.start(), m.group(0)) for m in pattern.finditer(text)]
        assert [(m.start(), m.group(0)) for m in keyword_matches(pattern, text, words)] == expected
