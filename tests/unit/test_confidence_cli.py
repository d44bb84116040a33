"""`cascade confidence` as a user runs it: a real subprocess reading JSON lines on stdin."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from classifier.confidence import Evidence, load_confidence

REPO = Path(__file__).resolve().parents[2]

LINES = [
    {"prompt": "Capital of France?", "answer": "Paris"},
    {"prompt": "Capital of France?", "answer": "Paris", "others": ["It is Paris.", "Lyon"]},
    {"prompt": "2+2?", "answer": "#### 4", "logprobs": [-0.1, -0.02, -1]},
    {"prompt": "2+2?", "answer": "#### 5", "others": ["4"], "logprobs": [], "router_score": 0.7},
]


def _run(stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", "confidence", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


def test_scores_every_line_in_order_like_the_model() -> None:
    stdin = "\n".join(json.dumps(line) for line in LINES) + "\n\n"
    proc = _run(stdin, "--batch-size", "3")
    assert proc.returncode == 0, proc.stderr
    got = [json.loads(line)["confidence"] for line in proc.stdout.splitlines()]
    evidence = [
        Evidence(
            prompt=d["prompt"],
            answer=d["answer"],
            others=d.get("others", ()),
            logprobs=d.get("logprobs", ()),
            router_score=d.get("router_score"),
        )
        for d in LINES
    ]
    assert got == pytest.approx(load_confidence("scorer", None).confidence(evidence).tolist(), abs=1e-6)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json", "line 2: not JSON"),
        ('["a list"]', "line 2: expected a JSON object"),
        ('{"prompt": "p"}', "line 2: 'answer' is required"),
        ('{"prompt": 3, "answer": "a"}', "line 2: 'prompt' is required"),
        ('{"prompt": "p", "answer": "a", "others": "B"}', "line 2: 'others' must be a list of strings"),
        ('{"prompt": "p", "answer": "a", "logprobs": ["x"]}', "line 2: 'logprobs' must be a list of numbers"),
        ('{"prompt": "p", "answer": "a", "router_score": 2}', "line 2: 'router_score' must be a number in [0, 1]"),
    ],
)
def test_a_malformed_line_is_exit_2_naming_the_line(bad: str, message: str) -> None:
    proc = _run(json.dumps(LINES[0]) + "\n" + bad + "\n")
    assert proc.returncode == 2
    assert message in proc.stderr


def test_a_missing_model_dir_is_a_clear_error(tmp_path: Path) -> None:
    proc = _run(json.dumps(LINES[0]) + "\n", "--model", str(tmp_path / "absent"))
    assert proc.returncode == 1
    assert "scorer.onnx" in proc.stderr


def test_other_registered_models_by_name() -> None:
    proc = _run(json.dumps(LINES[1]) + "\n", "--name", "agreement")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["confidence"] == pytest.approx(0.5)


def test_help_and_scoring_work_without_the_train_extra() -> None:
    # A base install has no scikit-learn, pandas or skl2onnx: make them unimportable.
    code = (
        "import sys\n"
        "for m in ('sklearn', 'pandas', 'skl2onnx', 'scipy'): sys.modules[m] = None\n"
        "from services.cli.main import main\n"
        "main(sys.argv[1:])\n"
    )
    for args in (["confidence", "--help"], ["confidence"]):
        proc = subprocess.run(
            [sys.executable, "-c", code, *args],
            input=json.dumps(LINES[0]) + "\n",
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
    assert "confidence" in proc.stdout
