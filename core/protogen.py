"""Generates the gRPC stubs for proto/shop/v1/*.proto with grpcio-tools, and typed stubs of
the services (`*_pb2_grpc.pyi`, sync and asyncio) with mypy-protobuf's protoc plugin.

`make proto` writes them next to the sources; tests call `generate(tmpdir)` and compare,
so a stub that drifts from its .proto fails the suite.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto" / "shop" / "v1"


def proto_files() -> list[Path]:
    return sorted(PROTO_DIR.glob("*.proto"))


def generate(out_dir: Path) -> None:
    """Runs protoc for every .proto, writing `proto/shop/v1/*_pb2*.py[i]` under out_dir."""
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--plugin=protoc-gen-mypy_grpc={Path(sys.executable).parent / 'protoc-gen-mypy_grpc'}",
        f"--mypy_grpc_out={out_dir}",
        *(str(p.relative_to(ROOT)) for p in proto_files()),
    ]
    # protoc resolves the relative proto paths against the include dir, so run from ROOT.
    import os

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        code = protoc.main(args)
    finally:
        os.chdir(cwd)
    if code != 0:
        raise RuntimeError(f"protoc failed with exit code {code}")


def main() -> None:
    generate(ROOT)
    print(f"generated stubs for {len(proto_files())} protos in {PROTO_DIR.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
