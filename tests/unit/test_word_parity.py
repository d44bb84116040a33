"""Word models pass the ONNX parity check on any text: non-ASCII prompts, and vocabularies that
``max_features`` cut between a bigram and its words (both once failed `cascade train fit`)."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from classifier import load_model
from classifier.contract import ONNX_FILE
from classifier.features import ascii_words
from training.featuresets import FEATURE_SETS, TOKEN_PATTERN, fit_vectorizer
from training.fit import PARITY_TOLERANCE, check_parity, fit, write_model

# Characters onnxruntime's StringNormalizer/Tokenizer treat unlike Python's str.lower + re:
# "İ" lowercases to "i" + a combining dot, the Kelvin sign to "k", and the rest are the
# accents and dash of the prompt that first failed.
WORDS = ("İstanbul", "Kelvin", "K", "café", "résumé", "á", "é", "–", "ﬁle", "Straße", "naïve")
ASCII = ("what", "is", "the", "answer", "option", "because", "law", "court", "offer", "price")


def _prompts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS + ASCII) for _ in range(rng.randint(4, 14))) for _ in range(count)]


def _labels(texts: list[str]) -> np.ndarray:
    return np.array([int("İ" in t or "–" in t) for t in texts])


def _fit_and_check(texts: list[str], out: Path, feature_set: str = "word") -> float:
    fitted = fit(texts=texts, labels=_labels(texts), feature_set=feature_set, family="logreg", seed=0)
    write_model(model=fitted.to_onnx(), card=_card(fitted), out_dir=out)
    return check_parity(fitted=fitted, onnx_path=out / ONNX_FILE, texts=_prompts(200, seed=1))


def _card(fitted: object) -> dict[str, object]:
    feature_set = FEATURE_SETS[fitted.feature_set]  # type: ignore[attr-defined]
    return {
        "schema_version": "1",
        "created_at": "2026-11-25T00:00:00+00:00",
        "pair": ["small", "large"],
        "label": "test",
        "feature_set": feature_set.name,
        "inputs": fitted.inputs,  # type: ignore[attr-defined]
        "extra_features": feature_set.extra,
        "text_normalisation": feature_set.normalisation,
        "threshold_table": [{"threshold": 0.5, "large_share": 0.5, "quality": 1.0}],
        "default_threshold": 0.5,
    }


@pytest.mark.parametrize("feature_set", ["word", "word+hand"])
def test_word_model_on_non_ascii_prompts_passes_parity(tmp_path: Path, feature_set: str) -> None:
    diff = _fit_and_check(_prompts(300, seed=0), tmp_path, feature_set)
    assert diff <= PARITY_TOLERANCE
    model = load_model(tmp_path)
    assert model.card["text_normalisation"] == "ascii-words"


def test_served_scores_see_the_same_words_as_training(tmp_path: Path) -> None:
    _fit_and_check(_prompts(300, seed=0), tmp_path)
    model = load_model(tmp_path)
    raw = "İstanbul – café K"
    assert ascii_words(raw) == "i stanbul caf k"
    np.testing.assert_allclose(model.score([raw]), model.score([ascii_words(raw)]), atol=1e-7)


def _tied_pairs_texts() -> list[str]:
    # Each pair of words always appears together, so a word and its bigram tie in frequency and
    # max_features keeps some bigrams without their words.
    pairs = [(f"w{i}a", f"w{i}b") for i in range(40)]
    return [" ".join(f"{a} {b}" for a, b in pairs[i : i + 3]) for i in range(38)]


def test_pruned_vocabulary_keeps_the_words_of_every_bigram() -> None:
    texts = _tied_pairs_texts()
    plain = TfidfVectorizer(token_pattern=TOKEN_PATTERN, ngram_range=(1, 2), max_features=50).fit(texts)
    assert any(w not in plain.vocabulary_ for g in plain.vocabulary_ for w in g.split()), "precondition"
    pruned = fit_vectorizer(
        TfidfVectorizer(token_pattern=TOKEN_PATTERN, ngram_range=(1, 2), max_features=50), texts
    ).vocabulary_
    assert pruned and all(w in pruned for g in pruned for w in g.split())


def test_word_model_with_a_cut_vocabulary_passes_parity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small = dataclasses.replace(
        FEATURE_SETS["word"],
        vectorizer=lambda: TfidfVectorizer(
            token_pattern=TOKEN_PATTERN, ngram_range=(1, 2), max_features=50, dtype=np.float32
        ),
    )
    monkeypatch.setitem(FEATURE_SETS, "word", small)
    texts = _tied_pairs_texts() * 3
    fitted = fit(texts=texts, labels=np.arange(len(texts)) % 2, feature_set="word", family="logreg", seed=0)
    write_model(model=fitted.to_onnx(), card=_card(fitted), out_dir=tmp_path)
    assert check_parity(fitted=fitted, onnx_path=tmp_path / ONNX_FILE, texts=texts) <= PARITY_TOLERANCE
