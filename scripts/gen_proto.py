"""Regenerate the Python bindings in proto/cascade/v1 from the .proto files there.

Run after changing a .proto file: ``python scripts/gen_proto.py``. The output is
committed (so a plain ``pip install`` needs no code generator); a unit test checks
that it matches the sources. Never edit the generated files by hand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent.parent / "proto"


def generate(out_dir: Path) -> None:
    from grpc_tools import protoc  # dev dependency; imported here so --help works without it

    include = Path(protoc.__file__).parent / "_proto"
    sources = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "cascade" / "v1").glob("*.proto"))
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=PROTO_ROOT, help="output root (default: proto/)")
    generate(parser.parse_args().out)


if __name__ == "__main__":
    sys.exit(main())
