"""The committed protobuf bindings are exactly what protoc makes of the .proto files."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GENERATED = REPO / "proto" / "cascade" / "v1"


def test_generated_code_is_up_to_date(tmp_path):
    subprocess.run([sys.executable, str(REPO / "scripts" / "gen_proto.py"), "--out", str(tmp_path)], check=True)
    fresh = sorted((tmp_path / "cascade" / "v1").iterdir())
    assert fresh, "protoc produced nothing"
    for path in fresh:
        committed = GENERATED / path.name
        assert committed.exists(), f"{path.name} is not committed; run scripts/gen_proto.py"
        assert committed.read_bytes() == path.read_bytes(), f"{path.name} is stale; run scripts/gen_proto.py"
