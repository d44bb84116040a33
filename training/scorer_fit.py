"""Fit the answer scorer (standardise + logistic regression), add the logprob prior, export to ONNX,
write the model folder."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from classifier.confidence.features import FEATURE_NAMES, GROUPS
from classifier.confidence.scorer import CARD_FILE, FEATURES_INPUT, ONNX_FILE, PROBA_OUTPUT, SCHEMA_VERSION
from training.export import OPSET, set_metadata

FAMILIES = ("logreg", "gbm")
MAX_PARITY = 1e-4
# No training row carries logprobs, so their weights cannot be learned: a documented prior, in logit
# units per nat (centred as features.LP_CENTRE says), uncalibrated until traffic with logprobs trains it.
LOGPROB_PRIOR = {"has_logprobs": 0.0, "lp_mean": 1.0, "lp_q10": 0.25, "lp_min": 0.05}
# The sign each weight must have, for transfer to unseen tasks: confidence never falls as agreement
# rises, nor as a harder prompt (router score), hedging, repetition or truncation falls. A feature
# whose fitted weight has the wrong sign is dropped (its column zeroed) and the model refitted.
SIGNS = {
    "agree_share": 1.0,
    "log_agree": 1.0,
    "log_disagree": -1.0,
    "rival_share": -1.0,
    "in_format": 1.0,
    "flip_flop": -1.0,
    "hedges": -1.0,
    "repetition": -1.0,
    "truncated": -1.0,
    "refusal": -1.0,
    "router_score": -1.0,
}


def make_estimator(family: str, *, seed: int) -> Pipeline:
    if family == "logreg":
        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    if family == "gbm":
        signs = [int(SIGNS.get(n, 0)) for n in FEATURE_NAMES]
        gbm = HistGradientBoostingClassifier(
            max_iter=150, max_depth=4, learning_rate=0.08, monotonic_cst=signs, random_state=seed
        )
        return make_pipeline(gbm)
    raise ValueError(f"unknown family {family!r}; known: {FAMILIES}")


def fit(x: np.ndarray, y: np.ndarray, *, family: str = "logreg", seed: int = 0) -> Pipeline:
    """A fitted pipeline; for logreg, every weight in SIGNS has its sign and the logprob prior is set."""
    if family != "logreg":
        return make_estimator(family, seed=seed).fit(x, y)
    dropped: set[int] = set()
    while True:
        cols = sorted(dropped)
        model = make_estimator(family, seed=seed).fit(_zeroed(x, cols), y)
        wrong = {i for i in _sign_violations(model) if i not in dropped}
        if not wrong:
            break
        dropped |= wrong
    _set_logprob_prior(model)
    return model


def _zeroed(x: np.ndarray, cols: list[int]) -> np.ndarray:
    if not cols:
        return x
    x = x.copy()
    x[:, cols] = 0.0
    return x


def _sign_violations(model: Pipeline) -> list[int]:
    coef = model[-1].coef_[0]
    return [FEATURE_NAMES.index(n) for n, sign in SIGNS.items() if sign * coef[FEATURE_NAMES.index(n)] < 0]


def _set_logprob_prior(model: Pipeline) -> None:
    scaler, head = model[0], model[-1]
    for name, weight in LOGPROB_PRIOR.items():
        i = FEATURE_NAMES.index(name)
        # Constant zero in training: the scaler keeps it as is (mean 0, scale 1).
        if scaler.mean_[i] != 0.0 or scaler.scale_[i] != 1.0:
            raise ValueError(f"training rows carry logprob feature {name}; learn it instead of the prior")
        head.coef_[0, i] = weight


def weights(model: Pipeline) -> dict[str, float]:
    """Logistic weights per feature in raw feature units (for the card and the README)."""
    scaler, head = model[0], model[-1]
    raw = head.coef_[0] / scaler.scale_
    return {n: round(float(w), 6) for n, w in zip(FEATURE_NAMES, raw, strict=True)}


def group_weights(model: Pipeline) -> dict[str, float]:
    """Sum of |standardised weight| per signal group: how much each group moves the logit."""
    coef = np.abs(model[-1].coef_[0])
    return {g: round(float(sum(coef[FEATURE_NAMES.index(n)] for n in names)), 4) for g, names in GROUPS.items()}


def to_onnx(model: Pipeline) -> onnx.ModelProto:
    """``features`` [N, D] float32 in, ``probabilities`` [N, 2] out (column 1: acceptable)."""
    onx = convert_sklearn(
        model,
        initial_types=[(FEATURES_INPUT, FloatTensorType([None, len(FEATURE_NAMES)]))],
        options={id(model[-1]): {"zipmap": False}},
        target_opset={"": OPSET, "ai.onnx.ml": 3},
    )
    # skl2onnx names the graph with a random uuid; a fixed name keeps the version (a hash) reproducible.
    onx.graph.name = "cascade_scorer"
    names = [o.name for o in onx.graph.output]
    if PROBA_OUTPUT not in names:
        raise ValueError(f"converted scorer has outputs {names}, expected {PROBA_OUTPUT!r}")
    return onx


def parity(onx: onnx.ModelProto, model: Pipeline, x: np.ndarray) -> float:
    """Largest |onnx - sklearn| probability over ``x`` (the export check: <= 1e-4)."""
    import onnxruntime as ort

    session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    (proba,) = session.run([PROBA_OUTPUT], {FEATURES_INPUT: x.astype(np.float32)})
    return float(np.max(np.abs(np.asarray(proba)[:, 1] - model.predict_proba(x)[:, 1]))) if len(x) else 0.0


def describe(model: Pipeline) -> dict[str, Any]:
    if isinstance(model[-1], LogisticRegression):
        return {"weights": weights(model), "group_weights": group_weights(model), "logprob_prior": LOGPROB_PRIOR}
    return {}


def checked_onnx(model: Pipeline, x: np.ndarray) -> tuple[onnx.ModelProto, float]:
    """The ONNX graph of ``model`` and its largest difference from it on ``x``; raises past MAX_PARITY."""
    onx = to_onnx(model)
    diff = parity(onx, model, x)
    if diff > MAX_PARITY:
        raise ValueError(f"ONNX scorer differs from the fitted model by {diff:.2e} > {MAX_PARITY}")
    return onx, diff


def with_logprobs(x: np.ndarray, seed: int) -> np.ndarray:
    """``x`` with synthetic logprob features on every other row, so parity checks the prior's weights too."""
    x = x.copy()
    rng = np.random.default_rng(seed)
    lp = [FEATURE_NAMES.index(n) for n in GROUPS["logprob"]]
    x[::2, lp[0]] = 1.0
    x[::2, lp[1] : lp[-1] + 1] = rng.normal(0.0, 1.0, size=(len(x[::2]), len(lp) - 1))
    return x


def base_card(*, signals: str, label: str, seed: int, counts: dict[str, int], rows: int) -> dict[str, Any]:
    """The card fields every scorer fit writes (the command adds its data's)."""
    from training.scorer_data import SIGNAL_SETS

    return {
        "schema_version": SCHEMA_VERSION,
        "version": "",
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "family": "logreg",
        "signal_set": {signals: list(SIGNAL_SETS[signals])},
        "label": label,
        "feature_names": list(FEATURE_NAMES),
        "feature_groups": {g: list(n) for g, n in GROUPS.items()},
        "split": {"by": "source + prompt_id (training.data.split_masks)", "seed": seed, **counts},
        "training_rows": rows,
        "rebuild_command": "cascade train " + shlex.join(sys.argv[sys.argv.index("fit-scorer") :])
        if "fit-scorer" in sys.argv
        else "",
    }


def write_scorer(onx: onnx.ModelProto, card: dict[str, Any], out: Path) -> dict[str, Any]:
    """OUT/scorer.onnx + model card, moved in from a staging folder; the card with its version."""
    digest = hashlib.sha256(onx.graph.SerializeToString()).hexdigest()[:12]
    card = {**card, "version": f"scorer-{card['created_at'][:10].replace('-', '')}.{digest}"}
    set_metadata(onx, {k: card[k] for k in ("schema_version", "version", "feature_names", "created_at", "label")})
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".staging-") as staging:
        onnx.save(onx, str(Path(staging) / ONNX_FILE))
        (Path(staging) / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
        out.mkdir(parents=True, exist_ok=True)
        for name in (ONNX_FILE, CARD_FILE):
            shutil.move(str(Path(staging) / name), str(out / name))
    return card
