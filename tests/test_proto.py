"""The committed gRPC stubs are exactly what grpcio-tools generates from proto/."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.protogen import PROTO_DIR, ROOT, generate, proto_files

SERVICES = ["user", "product", "inventory", "payment", "notification"]


def test_every_service_has_a_versioned_proto() -> None:
    names = sorted(p.stem for p in proto_files())
    assert names == sorted(SERVICES)
    for p in proto_files():
        assert "package shop.v1;" in p.read_text()


@pytest.mark.parametrize("suffix", ["_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi"])
def test_generated_stubs_match_the_protos(tmp_path: Path, suffix: str) -> None:
    generate(tmp_path)
    fresh_dir = tmp_path / PROTO_DIR.relative_to(ROOT)
    for name in SERVICES:
        fresh = (fresh_dir / f"{name}{suffix}").read_text()
        committed = (PROTO_DIR / f"{name}{suffix}").read_text()
        assert committed == fresh, f"{name}{suffix} drifted from its .proto: run `make proto`"
