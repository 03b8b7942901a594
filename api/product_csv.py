"""The catalogue CSV of `POST /products/import`, read and checked whole before anything is
written: a file that cannot be read as the table (not UTF-8, broken quoting, a missing
column, a row with more cells than the header, a number that is not an integer) is refused
with the first bad line; what the product service refuses row by row (a price below a cent,
an empty name, a sku twice) comes back in the import's `failed` list instead.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from api.errors import ApiError
from proto.shop.v1 import product_pb2

REQUIRED = ("sku", "name", "price_cents")
COLUMNS = ("sku", "name", "description", "price_cents", "stock", "category")
MAX_BYTES = 10 * 1024 * 1024
MAX_ROWS = 100_000
_INT64 = 2**63 - 1


class BadCsv(ApiError):
    def __init__(self, message: str, line: int | None = None) -> None:
        details = None if line is None else {"line": line}
        where = f"line {line}: " if line is not None else ""
        super().__init__(422, "INVALID_CSV", f"{where}{message}", details)


@dataclass(frozen=True)
class CsvRow:
    line: int
    message: product_pb2.BulkCreateProductRow


def _int(value: str | None, column: str, line: int) -> int:
    value = (value or "").strip()
    if not value:
        return 0
    try:
        number = int(value)
    except ValueError:
        raise BadCsv(f"{column} is not an integer", line) from None
    if abs(number) > _INT64:
        raise BadCsv(f"{column} is out of range", line)
    return number


def parse(data: bytes) -> list[CsvRow]:
    """The file's rows as BulkCreateProductRows, each with its line (the header is line 1)."""
    if len(data) > MAX_BYTES:
        raise BadCsv(f"the file is larger than {MAX_BYTES} bytes")
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise BadCsv("the file is not UTF-8", line) from None
    if "\x00" in content:
        raise BadCsv(
            "the file contains a NUL character", content[: content.index("\x00")].count("\n") + 1
        )
    reader = csv.reader(io.StringIO(content, newline=""), strict=True)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise BadCsv(
            "the file is empty; the header is sku,name,description,price_cents,stock,category"
        ) from None
    except csv.Error as err:
        raise BadCsv(str(err), 1) from None
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise BadCsv(f"the header misses the column(s) {', '.join(missing)}", 1)
    unknown = [c for c in header if c not in COLUMNS]
    if unknown or len(set(header)) != len(header):
        raise BadCsv(f"the header's columns must be among {','.join(COLUMNS)}, each once", 1)
    rows: list[CsvRow] = []
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            raise BadCsv(str(err), start) from None
        if not cells or all(not c.strip() for c in cells):
            continue  # a blank line
        if len(cells) > len(header):
            raise BadCsv(f"{len(cells)} cells for {len(header)} columns", start)
        record = dict(zip(header, cells, strict=False))
        if len(rows) >= MAX_ROWS:
            raise BadCsv(f"more than {MAX_ROWS} rows", start)
        rows.append(
            CsvRow(
                line=start,
                message=product_pb2.BulkCreateProductRow(
                    sku=record.get("sku", "").strip(),
                    name=record.get("name", ""),
                    description=record.get("description", ""),
                    price_cents=_int(record.get("price_cents"), "price_cents", start),
                    category=record.get("category", ""),
                    stock=_int(record.get("stock"), "stock", start),
                    line=start,
                ),
            )
        )
    return rows
