"""Golden values: the committed default router model's scores and the features it sees, on fixed prompts.

A changed feature (a different character counted, one ratio swapped for another), a changed model file
or a changed text path fails here, even where every other test still passes. The numbers were printed
by the code at the commit that added this test; when the model or the features change on purpose,
print them again (the snippet in this module's GOLDEN_SCRIPT) and replace them in the same commit.
"""

from __future__ import annotations

import numpy as np
import pytest

from classifier import load_model
from classifier.features import HAND_FEATURE_NAMES, HASH_DIM, hand_features, hash_features, hash_indices
from services.core.settings import DEFAULT_ROUTER_MODEL

GOLDEN_SCRIPT = (
    "from classifier import load_model; from services.core.settings import DEFAULT_ROUTER_MODEL as D; "
    "from tests.unit.test_golden_router import SCORES; m = load_model(D); "
    "print(m.version, [float(s) for s in m.score([p for p, _ in SCORES])])"
)

VERSION = "20261124.32c8bf2a095e"
SCORES = [
    ("What is 2 + 2?", 0.11603400111198425),
    ("Why is the sky blue? Is it the same on Mars?", 0.18301546573638916),
    ("Prove that there are infinitely many PRIMES.\nA. yes\nB. no", 0.12615886330604553),
    ("def f(x):\n    return x ** 2  # what does f(12) return?", 0.2985653877258301),
    ("Compute 3.14159 * 2.71828 and round to 3 decimals!", 0.17106777429580688),
    ("Tell me a story about a dragon.", 0.16174334287643433),
    ("", 0.01454174518585205),
]

# fmt: off
FEATURES = {
    "What is 2 + 2?": [
        2.70805025, 1.60943794, 2.0, 0.0, 0.75, 0.14285719, 0.0714286, 0.0714286, 1.09861231, 0.69314718,
        0.0, 0.0, 0.0, 0.14285719,
    ],
    "Why is the sky blue? Is it the same on Mars?": [
        3.80666232, 2.48490667, 2.909091, 0.0, 0.81818181, 0.0, 0.0681818, 0.0, 0.0, 1.09861231,
        0.0, 0.0, 0.0, 0.0454545,
    ],
    "Prove that there are infinitely many PRIMES.\nA. yes\nB. no": [
        4.06044292, 2.48490667, 4.0, 0.0909091, 1.0, 0.0, 0.1578947, 0.0, 0.0, 0.0,
        1.09861231, 1.09861231, 0.0, 0.0526316,
    ],
    "def f(x):\n    return x ** 2  # what does f(12) return?": [
        4.00733328, 2.48490667, 2.72727275, 0.0, 0.72727281, 0.0555556, 0.0, 0.037037, 1.09861231, 0.69314718,
        0.69314718, 0.0, 1.38629436, 0.1666667,
    ],
    # One character, one word, options as a Python list: the edges of the ratios and the option count.
    "?": [0.69314718, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.69314718, 0.0, 0.0, 0.0, 1.0],
    "Why?": [1.60943794, 0.69314718, 3.0, 0.0, 1.0, 0.0, 0.25, 0.0, 0.0, 0.69314718, 0.0, 0.0, 0.0, 0.25],
    "Pick one: ['red', 'blue', 'green']": [
        3.55534816, 1.79175949, 3.79999995, 0.0, 1.0, 0.0, 0.02941176, 0.0, 0.0, 0.0,
        0.0, 1.09861231, 0.0, 0.32352942,
    ],
}
# fmt: on


def test_the_default_router_model_scores_fixed_prompts_as_recorded() -> None:
    model = load_model(DEFAULT_ROUTER_MODEL)
    assert model.version == VERSION, "a new default model: print its golden scores again (GOLDEN_SCRIPT)"
    scores = model.score([prompt for prompt, _ in SCORES])
    np.testing.assert_allclose(scores, [score for _, score in SCORES], rtol=0, atol=1e-5)


@pytest.mark.parametrize("prompt", list(FEATURES))
def test_hand_features_of_fixed_prompts_are_as_recorded(prompt: str) -> None:
    row = hand_features([prompt])[0]
    expected = dict(zip(HAND_FEATURE_NAMES, FEATURES[prompt], strict=True))
    got = dict(zip(HAND_FEATURE_NAMES, (float(x) for x in row), strict=True))
    assert got == pytest.approx(expected, abs=1e-5)


def test_hashed_grams_of_a_fixed_text_are_as_recorded() -> None:
    cols, vals = hash_indices("What is two plus two? Two.")
    assert cols.dtype == np.int64 and vals.dtype == np.float32
    assert cols.tolist() == [960, 2662, 2793, 4687, 6500, 8433, 8855, 9042, 12898]
    # "two" three times: log1p(3) against log1p(1) for every other gram, l2-normalised.
    np.testing.assert_allclose(vals, [0.288675, 0.57735] + [0.288675] * 7, atol=1e-5)


def test_hash_features_are_the_hashed_grams_in_dense_rows() -> None:
    texts = ["What is two plus two? Two.", "", "!!!"]
    dense = hash_features(texts)
    assert dense.shape == (3, HASH_DIM) and dense.dtype == np.float32
    cols, vals = hash_indices(texts[0])
    np.testing.assert_array_equal(np.flatnonzero(dense[0]), cols)
    np.testing.assert_allclose(dense[0, cols], vals)
    assert not dense[1:].any()  # no words, no grams
    for text in texts[1:]:
        cols, vals = hash_indices(text)
        assert cols.shape == vals.shape == (0,) and cols.dtype == np.int64 and vals.dtype == np.float32
