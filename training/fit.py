"""Fit a router model, export it to ONNX with a parity check, and write it with its card."""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import shlex
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from tqdm import tqdm

from classifier import load_model
from classifier.contract import CARD_FILE, FEATURES_INPUT, ONNX_FILE, SCHEMA_VERSION, TEXT_INPUT
from classifier.features import EXTRA_DIMS
from classifier.thresholds import pick_threshold
from services.core.settings import CascadeSettings
from training.data import LABELS, PairData, split_masks
from training.evaluation import evaluate_scores, prices_from_settings
from training.export import build_onnx, set_metadata
from training.featuresets import FEATURE_SETS, extra_matrix, fit_vectorizer, make_estimator
from training.metrics import routing_curve, threshold_table

PARITY_TOLERANCE = 1e-4
PARITY_PROMPTS = 1000


class ParityError(RuntimeError):
    """The exported ONNX graph does not score like the fitted model."""


@dataclass
class Fitted:
    """A fitted featurizer + estimator; scores prompts with scikit-learn (training side)."""

    feature_set: str
    family: str
    vectorizer: TfidfVectorizer | None
    extra_mean: np.ndarray | None
    extra_scale: np.ndarray | None
    estimator: Any

    def matrix(self, texts: Sequence[str]) -> sp.csr_matrix:
        parts = []
        fs = FEATURE_SETS[self.feature_set]
        if self.vectorizer is not None:
            parts.append(self.vectorizer.transform(fs.vectorizer_texts(texts)))
        extra = fs.extra
        if extra is not None:
            m = extra_matrix(extra, texts)
            if self.extra_mean is not None and self.extra_scale is not None:
                m = sp.csr_matrix((m.toarray() - self.extra_mean) / self.extra_scale)
            parts.append(m)
        return sp.hstack(parts, format="csr", dtype=np.float32)

    @property
    def inputs(self) -> list[str]:
        extra = FEATURE_SETS[self.feature_set].extra
        return ([TEXT_INPUT] if self.vectorizer is not None else []) + ([FEATURES_INPUT] if extra else [])

    def score(self, texts: Sequence[str]) -> np.ndarray:
        return self.estimator.predict_proba(self.matrix(texts))[:, 1].astype(np.float64)

    def to_onnx(self) -> onnx.ModelProto:
        extra = FEATURE_SETS[self.feature_set].extra
        return build_onnx(
            vectorizer=self.vectorizer,
            extra_dim=EXTRA_DIMS[extra] if extra else 0,
            extra_mean=self.extra_mean,
            extra_scale=self.extra_scale,
            estimator=self.estimator,
        )


def fit(*, texts: Sequence[str], labels: np.ndarray, feature_set: str, family: str, seed: int) -> Fitted:
    fs = FEATURE_SETS[feature_set]
    vectorizer = fit_vectorizer(fs.vectorizer(), fs.vectorizer_texts(texts)) if fs.vectorizer else None
    mean = scale = None
    if fs.extra == "hand":
        dense = extra_matrix("hand", texts).toarray()
        mean, scale = dense.mean(axis=0), dense.std(axis=0) + 1e-6
    fitted = Fitted(feature_set, family, vectorizer, mean, scale, make_estimator(family, seed=seed))
    fitted.estimator.fit(fitted.matrix(texts), labels)
    return fitted


def check_parity(*, fitted: Fitted, onnx_path: Path, texts: Sequence[str]) -> float:
    """Largest |ONNX - scikit-learn| score difference on ``texts``; raises above tolerance."""
    texts = list(texts)[:PARITY_PROMPTS] + ["", "   ", "?", "Ünïcödé ÇAPS 123 x+y=z"]
    served = load_model(onnx_path).score(texts).astype(np.float64)
    diff = float(np.max(np.abs(served - fitted.score(texts))))
    if diff > PARITY_TOLERANCE:
        raise ParityError(
            f"ONNX and fitted model disagree by {diff:.2e} (> {PARITY_TOLERANCE}) on {len(texts)} prompts"
        )
    return diff


def make_card(
    *,
    fitted: Fitted,
    pair: tuple[str, str],
    label: str,
    validation: PairData,
    scores: np.ndarray,
    extra: dict[str, Any],
) -> dict[str, Any]:
    curve = routing_curve(scores=scores, small=validation.small, large=validation.large)
    table = threshold_table(curve)
    return {
        "schema_version": SCHEMA_VERSION,
        "version": "",
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "pair": list(pair),
        "label": label,
        "label_definition": LABELS[label],
        "feature_set": fitted.feature_set,
        "feature_set_description": FEATURE_SETS[fitted.feature_set].description,
        "family": fitted.family,
        "extra_features": FEATURE_SETS[fitted.feature_set].extra,
        "text_normalisation": FEATURE_SETS[fitted.feature_set].normalisation,
        "inputs": fitted.inputs,
        "threshold_table": table,
        "default_threshold": pick_threshold(table, quality=0.95),
        "default_target": {"quality": 0.95},
        **extra,
    }


def write_model(*, model: onnx.ModelProto, card: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Stamp a version (hash of the graph) and write router.onnx + model_card.json."""
    digest = hashlib.sha256(model.graph.SerializeToString()).hexdigest()[:12]
    card = {**card, "version": f"{card['created_at'][:10].replace('-', '')}.{digest}"}
    set_metadata(model, card)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / (ONNX_FILE + ".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(out_dir / ONNX_FILE)
    (out_dir / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    return card


def fit_and_write(
    args: argparse.Namespace,
    *,
    settings: CascadeSettings,
    data: PairData,
    pair: tuple[str, str],
    pairs: dict[str, tuple[str, str]],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """`train fit` (files or stream) once its data is loaded: split by prompt id, fit, evaluate with the
    config's prices, write DIR/router.onnx + card (parity-checked); the card."""
    steps = tqdm(total=5, desc="fit", unit="step", disable=args.quiet)
    masks = split_masks(data, seed=args.seed)
    train, val, test = (data.subset(masks[k]) for k in ("train", "validation", "test"))
    if min(len(train), len(val), len(test)) == 0:
        raise ValueError(f"too few prompts to split: train {len(train)}, validation {len(val)}, test {len(test)}")
    steps.update()
    steps.set_postfix_str(f"fitting {args.features}/{args.family} on {len(train)} prompts")
    fitted = fit(
        texts=train.prompts,
        labels=train.labels(args.label),
        feature_set=args.features,
        family=args.family,
        seed=args.seed,
    )
    steps.update()
    val_scores, test_scores = fitted.score(val.prompts), fitted.score(test.prompts)
    metrics = evaluate_scores(
        data=test, scores=test_scores, labels=test.labels(args.label), prices=prices_from_settings(settings)
    )
    steps.update()
    extra = {
        "pairs": {stem: list(p) for stem, p in pairs.items()},
        **extra,
        "training_sources": sorted(set(data.frame["source"])),
        "split": {"by": "prompt_id", "seed": args.seed, "train": len(train), "validation": len(val), "test": len(test)},
        "metrics": {"test": metrics},
        "rebuild_command": "cascade train " + shlex.join(sys.argv[sys.argv.index("fit") :])
        if "fit" in sys.argv
        else "",
    }
    card = make_card(fitted=fitted, pair=pair, label=args.label, validation=val, scores=val_scores, extra=extra)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".staging-") as staging:
        card = write_model(model=fitted.to_onnx(), card=card, out_dir=Path(staging))
        steps.update()
        diff = check_parity(fitted=fitted, onnx_path=Path(staging) / ONNX_FILE, texts=test.prompts)
        out.mkdir(parents=True, exist_ok=True)
        for name in (ONNX_FILE, CARD_FILE):
            shutil.move(str(Path(staging) / name), str(out / name))
    steps.update()
    steps.close()
    print(
        f"wrote {out / ONNX_FILE} version {card['version']}: test AUC {metrics['roc_auc']:.3f}, "
        f"APGR {metrics['apgr']:.3f} (random {metrics['random']['apgr']:.3f}, oracle "
        f"{metrics['oracle']['apgr']:.3f}); ONNX parity max |diff| {diff:.1e}"
    )
    return card
