"""Generates the protobuf message modules of stepup_client from the proto.

`python generate.py` writes `src/stepup_client/v1/decision_pb2.py` and its
typed stub `decision_pb2.pyi` from `stepup/v1/decision.proto`, found in
`proto/` beside this file (an sdist) or in the repository's `../../proto`.
The wheel build runs it too (hatch_build.py), so an install from the
repository or the sdist always carries modules made from the proto it ships
with. It uses grpcio-tools (`python -m grpc_tools.protoc`, which bundles
protoc), never a system protoc.

Only the message modules are generated: grpcio-tools' service stubs
(`*_pb2_grpc.py`) are untyped, so the clients build the three method
callables themselves from the service descriptor (see `_methods.py`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROTO_FILE = "stepup/v1/decision.proto"
GENERATED = ("decision_pb2.py", "decision_pb2.pyi")


def proto_root(root: Path) -> Path:
    """The directory holding `stepup/v1/decision.proto`: the sdist's
    `proto/` or the repository's `../../proto`."""
    for candidate in (root / "proto", root.parent.parent / "proto"):
        if (candidate / PROTO_FILE).is_file():
            return candidate
    raise SystemExit(
        f"generate.py: `{PROTO_FILE}` not found under `{root / 'proto'}` "
        f"or `{root.parent.parent / 'proto'}`"
    )


def generate(root: Path) -> str:
    """Writes the generated modules under `root/src/stepup_client/v1` and
    returns the protobuf gencode version they need at run time (e.g.
    `7.35.1`): the runtime refuses to load gencode newer than itself."""
    proto = proto_root(root)
    out = root / "src" / "stepup_client" / "v1"
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"--proto_path={proto}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            str(proto / PROTO_FILE),
        ]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(
                f"generate.py: grpc_tools.protoc failed ({result.returncode}): "
                f"{result.stderr.strip()}"
            )
        made = Path(tmp) / "stepup" / "v1"
        for name in GENERATED:
            shutil.copyfile(made / name, out / name)
    text = (out / "decision_pb2.py").read_text(encoding="utf-8")
    found = re.search(r"^# Protobuf Python Version: (\d+\.\d+\.\d+)", text, re.M)
    if found is None:
        raise SystemExit("generate.py: no `Protobuf Python Version` line in the generated code")
    return found.group(1)


if __name__ == "__main__":
    version = generate(Path(__file__).resolve().parent)
    print(f"generated stepup_client/v1/decision_pb2 (protobuf gencode {version})")
