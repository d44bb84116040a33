"""Feature sets and model families the trainer knows, by name.

A feature set is an optional text vectorizer that skl2onnx puts inside the ONNX graph
plus an optional numpy extractor from :mod:`classifier.features` that runs beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

from classifier.features import EXTRA_DIMS, HASH_DIM, TEXT_NORMALISERS, hand_features, hash_indices

# The graph tokenizer must split exactly like sklearn: lowercase, then runs of [a-z0-9].
TOKEN_PATTERN = r"[a-z0-9]+"


@dataclass(frozen=True)
class FeatureSet:
    name: str
    vectorizer: Callable[[], TfidfVectorizer] | None
    extra: str | None  # a key of classifier.features.EXTRACTORS
    description: str
    # A key of classifier.features.TEXT_NORMALISERS: what the vectorizer (and the graph) is given.
    normalisation: str | None = None

    def vectorizer_texts(self, texts: Sequence[str]) -> Sequence[str]:
        if self.normalisation is None:
            return texts
        normalise = TEXT_NORMALISERS[self.normalisation]
        return [normalise(t) for t in texts]


def _word() -> TfidfVectorizer:
    return TfidfVectorizer(
        token_pattern=TOKEN_PATTERN, ngram_range=(1, 2), min_df=3, max_features=30000, dtype=np.float32
    )


def _char() -> TfidfVectorizer:
    return TfidfVectorizer(analyzer="char", ngram_range=(2, 4), min_df=5, max_features=30000, dtype=np.float32)


FEATURE_SETS: dict[str, FeatureSet] = {
    fs.name: fs
    for fs in [
        FeatureSet("word", _word, None, "TF-IDF of word uni+bigrams (in the ONNX graph)", "ascii-words"),
        FeatureSet("char", _char, None, "TF-IDF of character 2-4-grams (in the ONNX graph)"),
        FeatureSet("hash", None, "hash", f"hashed word uni+bigrams, {HASH_DIM} dims (numpy)"),
        FeatureSet("hand", None, "hand", "hand-made difficulty features (numpy)"),
        FeatureSet("word+hand", _word, "hand", "word TF-IDF plus hand-made features", "ascii-words"),
    ]
}


def fit_vectorizer(vectorizer: TfidfVectorizer, texts: Sequence[str]) -> TfidfVectorizer:
    """Fit, then keep only the n-grams whose every word is in the vocabulary on its own.

    ``max_features`` can keep a bigram and drop one of its words, and onnxruntime's
    TfIdfVectorizer then never counts that bigram (it looks n-grams up through their words),
    so the graph disagreed with scikit-learn. Refitting on the pruned vocabulary recomputes
    the IDF over the same texts.
    """
    vectorizer.fit(texts)
    if vectorizer.analyzer != "word" or vectorizer.ngram_range[1] == 1:
        return vectorizer
    vocabulary = vectorizer.vocabulary_
    kept = sorted(gram for gram in vocabulary if all(word in vocabulary for word in gram.split(" ")))
    if len(kept) == len(vocabulary):
        return vectorizer
    return vectorizer.set_params(vocabulary={gram: i for i, gram in enumerate(kept)}).fit(texts)


def make_estimator(family: str, *, seed: int) -> LogisticRegression | MLPClassifier:
    if family == "logreg":
        return LogisticRegression(C=1.0, max_iter=2000, random_state=seed)
    if family == "mlp":
        return MLPClassifier(hidden_layer_sizes=(32,), alpha=1e-3, early_stopping=True, max_iter=200, random_state=seed)
    raise ValueError(f"unknown model family {family!r}; known: logreg, mlp")


FAMILIES = ("logreg", "mlp")


def extra_matrix(extra: str, texts: Sequence[str]) -> sp.csr_matrix:
    """The numpy-side features as a sparse matrix (the hashed set is too wide to densify)."""
    if extra == "hand":
        return sp.csr_matrix(hand_features(texts))
    assert extra == "hash"
    rows = [hash_indices(t) for t in texts]
    indptr = np.cumsum([0] + [len(c) for c, _ in rows])
    cols = np.concatenate([c for c, _ in rows]) if rows else np.zeros(0, np.int64)
    vals = np.concatenate([v for _, v in rows]) if rows else np.zeros(0, np.float32)
    return sp.csr_matrix((vals, cols, indptr), shape=(len(texts), EXTRA_DIMS[extra]))
