"""Imports a catalogue CSV through ProductService.BulkCreateProducts.

    python -m services.product.import_csv FILE.csv [--target host:port]

The header names the columns: `sku`, `name` and `price_cents` are required;
`description`, `category`, `stock` and `id` are optional (header of the example:
sku,name,description,price_cents,category,stock). Rows are streamed to the service, which
commits each on its own; a row whose sku exists already updates that product (its stock is
a product's initial stock, added once per product). Progress goes to
stderr, the summary and each failed row to stdout.

Exit status: 0 every row created, updated or unchanged; 1 some row failed; 2 a bad file (missing,
unreadable, not UTF-8 CSV, required column missing) or bad arguments; 3 the call itself
failed (service unreachable, deadline exceeded).
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from core.config import get_settings
from core.grpc_client import channel_credentials
from proto.shop.v1 import product_pb2, product_pb2_grpc

REQUIRED = ("sku", "name", "price_cents")
OPTIONAL = ("description", "category", "stock", "id")
PROGRESS_EVERY = 100


class BadFile(Exception):
    """The file cannot be imported at all."""


@dataclass
class Rows:
    """The CSV's rows as messages; rows the client cannot even encode fail locally."""

    messages: list[tuple[int, product_pb2.BulkCreateProductRow]] = field(default_factory=list)
    local_errors: list[tuple[int, str, str]] = field(default_factory=list)  # (row, sku, why)


def _int(value: str | None, column: str) -> int:
    value = (value or "").strip()
    if not value:
        return 0
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{column} is not an integer: {value!r}") from None


def read_rows(path: Path) -> Rows:
    """Parses the CSV; row numbers are 1-based data rows (the header is not counted)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in reader.fieldnames or []]
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise BadFile(f"{path}: missing column(s) {', '.join(missing)} in the header")
            reader.fieldnames = header
            rows = Rows()
            for number, record in enumerate(reader, start=1):
                if None in record:  # more cells than header columns
                    rows.local_errors.append((number, record.get("sku") or "", "too many cells"))
                    continue
                sku = record.get("sku") or ""
                try:
                    message = product_pb2.BulkCreateProductRow(
                        sku=sku,
                        name=record.get("name") or "",
                        description=record.get("description") or "",
                        price_cents=_int(record.get("price_cents"), "price_cents"),
                        category=record.get("category") or "",
                        stock=_int(record.get("stock"), "stock"),
                        id=(record.get("id") or "").strip(),
                    )
                except ValueError as err:  # not an integer, or out of int64 range
                    rows.local_errors.append((number, sku, str(err)))
                    continue
                rows.messages.append((number, message))
            return rows
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise BadFile(f"{path}: {err}") from None


def _stream(
    messages: list[tuple[int, product_pb2.BulkCreateProductRow]],
) -> Iterator[product_pb2.BulkCreateProductRow]:
    total = len(messages)
    for sent, (_, message) in enumerate(messages, start=1):
        yield message
        if sent % PROGRESS_EVERY == 0 and sent < total:
            print(f"sent {sent}/{total} rows", file=sys.stderr, flush=True)
    print(f"sent {total}/{total} rows", file=sys.stderr, flush=True)


def run(
    path: Path, target: str, timeout: float, credentials: grpc.ChannelCredentials | None = None
) -> int:
    try:
        rows = read_rows(path)
    except BadFile as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    channel = (
        grpc.insecure_channel(target)
        if credentials is None
        else grpc.secure_channel(target, credentials)
    )
    with channel:
        stub = product_pb2_grpc.ProductServiceStub(channel)
        try:
            summary = stub.BulkCreateProducts(_stream(rows.messages), timeout=timeout)
        except grpc.RpcError as err:
            code = err.code().name if isinstance(err, grpc.Call) else "ERROR"
            details = err.details() if isinstance(err, grpc.Call) else str(err)
            print(f"error: import via {target} failed: {code} {details}", file=sys.stderr)
            return 3
    # The server numbers the rows it received; map them back to the file's row numbers.
    numbers = [number for number, _ in rows.messages]
    errors = [
        (numbers[e.row - 1] if 0 < e.row <= len(numbers) else e.row, e.sku, e.message)
        for e in summary.errors
    ]
    errors = sorted(errors + rows.local_errors)
    failed = summary.failed + len(rows.local_errors)
    total = summary.received + len(rows.local_errors)
    print(
        f"{total} rows: {summary.created} created, {summary.updated} updated, "
        f"{summary.skipped} unchanged, {failed} failed"
    )
    for number, sku, message in errors:
        print(f"row {number} (sku {sku or '-'}): {message}")
    if failed > len(errors):
        print(f"... and {failed - len(errors)} more failed rows")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.product.import_csv",
        description="Import a catalogue CSV through ProductService.BulkCreateProducts.",
    )
    parser.add_argument("file", type=Path, help="CSV with header sku,name,description,...")
    parser.add_argument(
        "--target", help="the product service, host:port (default: GRPC_TARGET setting)"
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds for the whole import (300)"
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    target = args.target or settings.grpc_target
    return run(args.file, target, args.timeout, channel_credentials(settings))


if __name__ == "__main__":
    sys.exit(main())
