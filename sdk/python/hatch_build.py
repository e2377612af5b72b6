"""Hatchling build hook: generates the protobuf modules before the wheel is
assembled (see generate.py) and adds the runtime bound they need.

Generated code checks at import that the installed protobuf runtime is at
least as new as the protoc that made it, so the wheel's metadata gets
`protobuf>=<gencode version>,<next major>` from the protoc that actually ran,
whatever grpcio-tools the build environment resolved."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class GenerateProtoHook(BuildHookInterface):  # type: ignore[type-arg]
    """Runs generate.py for the wheel (and editable) targets."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        sys.path.insert(0, self.root)
        try:
            from generate import generate
        finally:
            sys.path.pop(0)
        gencode = generate(Path(self.root))
        major = int(gencode.split(".")[0])
        build_data["dependencies"].append(f"protobuf>={gencode},<{major + 1}")
