"""The OpenAPI schema tells the whole truth: schemathesis's own command line, with every check
and every phase (stateful included), against the real processes finds no disagreement
between the schema and the server. Plus the documented patterns, compared with what the
server's validators accept.

The run is derandomized and bounded (examples per operation, a timeout per request and for
the whole run), so it is the same run every time.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from api.models import (
    NOT_BLANK_PATTERN,
    SPECIAL_USE_EMAIL_PATTERN,
    CancelCreate,
    PaymentDetails,
    ProductCreate,
    UserCreate,
)
from core.secrets import resolved_admin_password
from tests.api_fixtures import PASSWORD, log_in
from tests.harness import running_stack

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
MAX_EXAMPLES = 25
REQUEST_TIMEOUT = 10
RUN_TIMEOUT = 200.0
SCHEMAS = create_app().openapi()["components"]["schemas"]
# What no schema can say: a catalogue CSV's content, and a cursor's signature (forged, or
# made for other filters). Schema-valid, they may still be refused with 422.
CONFIG = """
[[operations]]
include-name = ["GET /products", "POST /products/import"]
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"
]
"""


@dataclass
class FuzzedApi:
    url: str
    admin_token: str


@pytest.fixture(scope="module")
async def api(
    dev_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FuzzedApi]:
    """The services, the worker and the API as processes (as `make run` starts them), on the
    session's dev server, a task queue of their own and SQLite; no rate limits (schemathesis
    sends thousands of requests from one address), and the admin's token."""
    address = dev_env.client.service_client.config.target_host
    data_dir = tmp_path_factory.mktemp("fuzz")
    async with running_stack(address, data_dir, rate_limit="0", login_rate_limit="0") as stack:
        settings = stack.settings
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as http:
            token = await log_in(http, settings.admin_email, resolved_admin_password(settings))
        yield FuzzedApi(stack.api_url, token)


@pytest.mark.timeout(RUN_TIMEOUT + 60)
async def test_schemathesis_finds_no_disagreement(api: FuzzedApi, tmp_path: Path) -> None:
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    # Awaited, not run blocking: the supervisor's event loop keeps draining the children's
    # output meanwhile.
    proc = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS), "run", f"{api.url}/openapi.json",
        # As the admin, who may call every route (the 401s and 403s are tests/test_authz.py's).
        "--header", f"Authorization: Bearer {api.admin_token}",
        "--checks", "all",
        # DELETE /products/{id} deactivates: the CONTRACT keeps the product for past orders,
        # so it still answers GET with "active": false; "use after free" does not apply.
        "--exclude-checks", "use_after_free",
        "--phases", "examples,coverage,fuzzing,stateful",
        "--max-examples", str(MAX_EXAMPLES),
        "--request-timeout", str(REQUEST_TIMEOUT),
        "--generation-deterministic",
        "--no-color",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    report = out.decode(errors="replace")
    assert proc.returncode == 0, report[-8000:]
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):  # each ran, none was skipped
        assert f"✅  {phase}" in report, report[-3000:]


def _accepts(model: type[BaseModel], **fields: Any) -> bool:
    try:
        model(**fields)
    except ValidationError:
        return False
    return True


def _documented(model: type[BaseModel], field: str, value: str) -> bool:
    """Whether the field's schema in /openapi.json allows `value` (pattern and length)."""
    schema = SCHEMAS[model.__name__]["properties"][field]
    return (
        schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value))
        and re.search(schema["pattern"], value) is not None
    )


@pytest.mark.parametrize(
    "card",
    [
        "4242424242424242",
        "4242 4242 4242 4242",
        " 424242424242 ",
        "1234567890123456789",
        "42424242424",  # 11 digits
        "12345678901234567890",  # 20
        "4242-4242-4242-4242",
        "",
        "４２４２４２４２４２４２４２４２",  # full-width digits
    ],
)
def test_the_documented_card_pattern_is_what_checkout_accepts(card: str) -> None:
    assert _accepts(PaymentDetails, card_number=card) == _documented(
        PaymentDetails, "card_number", card
    )


TEXTS = [
    "Ada",
    "  Ada  ",
    "",
    " ",
    "\t\n\x0b\x0c\r",
    "\x1c\x1f",  # separators: whitespace to Python's str.strip(), not to every regex engine
    "\u00a0\u2003\u3000",
    "\u200b",  # zero-width space: not whitespace
    "Ada\x00",
    "\x00",
    "A" * 200,
    " " + "A" * 199,
    "A" * 201,
    "Ad\u00e4 \U0001f600",
]


@pytest.mark.parametrize("text", TEXTS)
def test_the_documented_name_pattern_is_what_the_api_accepts(text: str) -> None:
    # The services refuse a blank name and a NUL; the API, as its schema says, before them.
    assert SCHEMAS["UserCreate"]["properties"]["name"]["pattern"] == NOT_BLANK_PATTERN
    documented = _documented(UserCreate, "name", text)
    assert _accepts(UserCreate, email="ada@example.com", name=text, password=PASSWORD) == documented
    assert _accepts(CancelCreate, reason=text) == documented
    assert documented == (0 < len(text) <= 200 and bool(text.strip()) and "\x00" not in text)


@pytest.mark.parametrize(
    "sku", ["COF-ESP-250", "a", "a b", " a", "a ", "a\tb", "a\x7f", "caf\u00e9", "~" * 64, "~" * 65]
)
def test_the_documented_sku_pattern_is_what_the_api_accepts(sku: str) -> None:
    documented = _documented(ProductCreate, "sku", sku)
    assert _accepts(ProductCreate, sku=sku, name="N", price_cents=1) == documented
    # Whatever the API accepts, the product service does too (services.common.ident).
    if documented:
        assert sku.strip() == sku and sku.isprintable()


@pytest.mark.parametrize(
    ("email", "accepted"),
    [
        ("ada@example.com", True),
        ("  ada@example.com ", True),
        ("ADA@Example.COM", True),
        ("ada@contest.com", True),
        ("ada@example.test", False),
        ("ada@example.TeSt", False),
        ("ada@mail.local", False),
        ("ada@host.localhost", False),
        ("ada@x.onion", False),
        ("ada@a.invalid", False),
        ("ada@1.2.in-addr.arpa", False),
        ("ada@example", False),
        ("ada@exa mple.com", False),
        ("ada\u2003@example.com", False),
        ("ada example@x.com", False),
        ("@example.com", False),
        ("ada@", False),
        ("ada", False),
    ],
)
def test_sign_up_refuses_the_documented_special_use_domains(email: str, accepted: bool) -> None:
    schema = SCHEMAS["UserCreate"]["properties"]["email"]
    assert schema["format"] == "email" and schema["not"]["pattern"] == SPECIAL_USE_EMAIL_PATTERN
    assert _accepts(UserCreate, email=email, name="Ada", password=PASSWORD) == accepted
    if re.search(SPECIAL_USE_EMAIL_PATTERN, email):
        assert not accepted


@settings(max_examples=200, derandomize=True, database=None, deadline=None)
@given(st.emails())
def test_sign_up_accepts_every_address_of_the_email_format(email: str) -> None:
    """Addresses drawn as a client reads `format: email` (RFC 5322 dot-atoms on registered
    top-level domains) are accepted, unless the schema's `not` excludes them."""
    assert re.search(SPECIAL_USE_EMAIL_PATTERN, email) is None
    assert _accepts(UserCreate, email=email, name="Ada", password=PASSWORD)
