"""Listing the catalogue: filters, keyset pagination in sku order, opaque page tokens.

A page token is base64url JSON `{"after": sku, "filters": digest}`: the last sku of the
page and a digest of the filters it was made for, so a token used with other filters is
refused rather than silently skipping products.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass

from sqlalchemy import func, literal_column, or_
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from core.errors import InvalidArgument
from services.common import text
from services.product.models import ProductRow

Q_MAX = 100
LIMIT_MAX = 1000
TOKEN_MAX = 512


@dataclass(frozen=True)
class Filters:
    q: str
    category: str
    active: bool | None

    @classmethod
    def of(cls, q: str, category: str, active: bool | None) -> Filters:
        return cls(
            q=text("q", q.strip(), Q_MAX, required=False),
            category=text("category", category.strip(), 64, required=False),
            active=active,
        )

    def digest(self) -> str:
        raw = json.dumps([self.q, self.category, self.active])
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


def encode_token(after: str, filters: Filters) -> str:
    raw = json.dumps({"after": after, "filters": filters.digest()}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, filters: Filters) -> str:
    """The sku a page starts after; InvalidArgument for a malformed or mismatched token."""
    if len(token) > TOKEN_MAX:
        raise InvalidArgument("page_token is malformed")
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        after, digest = data["after"], data["filters"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise InvalidArgument("page_token is malformed") from None
    if not isinstance(after, str) or not after or digest != filters.digest():
        raise InvalidArgument("page_token is malformed or was made for other filters")
    return after


def _like(q: str) -> str:
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def page_query(filters: Filters, limit: int, after: str) -> SelectOfScalar[ProductRow]:
    """The SELECT of a page (one row more than `limit`, to tell whether another follows)."""
    sku = col(ProductRow.sku)
    # With `q`, order by an expression of sku (same values, same order) that no index
    # provides: otherwise the planner walks the sku index hoping to meet `limit` matches
    # soon, which for a rare word means reading the whole table; this way it takes the
    # trigram index's matches and sorts them.
    order = sku.op("||")(literal_column("''")) if filters.q else sku
    query = select(ProductRow).order_by(order)
    if filters.category:
        query = query.where(ProductRow.category == filters.category)
    if filters.active is not None:
        query = query.where(ProductRow.active == filters.active)
    if filters.q:
        # ILIKE on PostgreSQL (the trigram index serves it), lower() LIKE lower() on SQLite.
        pattern = _like(filters.q)
        query = query.where(
            or_(
                col(ProductRow.name).ilike(pattern, escape="\\"),
                col(ProductRow.description).ilike(pattern, escape="\\"),
                col(ProductRow.sku).ilike(pattern, escape="\\"),
            )
        )
    if after:
        query = query.where(col(ProductRow.sku) > after)
    if limit:
        query = query.limit(limit + 1)
    return query


def list_page(
    session: Session, filters: Filters, limit: int, after: str
) -> tuple[list[ProductRow], str]:
    """A page in sku order, and the sku the next one starts after ("" on the last page)."""
    rows = list(session.exec(page_query(filters, limit, after)).all())
    if limit and len(rows) > limit:
        rows = rows[:limit]
        return rows, rows[-1].sku
    return rows, ""


def category_counts(session: Session) -> list[tuple[str, int]]:
    """(category, active products) for every non-empty category of an active product."""
    query = (
        select(ProductRow.category, func.count())
        .where(col(ProductRow.active).is_(True))
        .where(ProductRow.category != "")
        .group_by(col(ProductRow.category))
        .order_by(col(ProductRow.category))
    )
    return [(name, int(count)) for name, count in session.exec(query).all()]
