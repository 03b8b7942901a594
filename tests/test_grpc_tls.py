"""The gRPC services are private: they listen on GRPC_HOST (loopback by default) and, with
GRPC_TLS_* set, serve only clients presenting a certificate their CA signed. Certificates
are made here, with `cryptography`: our CA, the services' certificate for 127.0.0.1 and
localhost (also a client one: the product service calls inventory), a client certificate,
and a client certificate from another CA.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import ValidationError
from sqlalchemy import Engine
from temporalio.testing import WorkflowEnvironment

from core.config import Settings
from core.db import make_engine
from core.grpc_client import Stubs, channel_credentials
from core.secrets import resolved_admin_password
from proto.shop.v1 import inventory_pb2, product_pb2
from services.product.import_csv import run as import_csv
from services.server import create_server
from tests.api_fixtures import GOOD_CARD, PASSWORD, SHIPPING_ADDRESS, bearer, log_in
from tests.harness import running_stack, uid

pytestmark = pytest.mark.timeout(180)

SERVER_AUTH, CLIENT_AUTH = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH


@dataclass(frozen=True)
class Issuer:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(common_name: str) -> Issuer:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
        .sign(key, hashes.SHA256())
    )
    return Issuer(key, cert)


def issue(ca: Issuer, common_name: str, usages: list[x509.ObjectIdentifier]) -> Issuer:
    """A leaf certificate for 127.0.0.1 and localhost, signed by `ca`."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return Issuer(key, cert)


def write_pems(directory: Path, name: str, ca: Issuer, leaf: Issuer) -> Settings:
    """The leaf's certificate and key and the CA's certificate as PEM files, and Settings
    naming them as GRPC_TLS_*."""
    files = {
        "ca": ca.cert.public_bytes(serialization.Encoding.PEM),
        "cert": leaf.cert.public_bytes(serialization.Encoding.PEM),
        "key": leaf.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    }
    paths = {}
    for kind, pem in files.items():
        paths[kind] = directory / f"{name}-{kind}.pem"
        paths[kind].write_bytes(pem)
        paths[kind].chmod(0o600)
    return Settings(grpc_tls_ca=paths["ca"], grpc_tls_cert=paths["cert"], grpc_tls_key=paths["key"])


@dataclass(frozen=True)
class Pki:
    """Settings for each party: each names its own certificate and key, and its CA."""

    services: Settings
    client: Settings
    stranger: Settings  # a client certificate from another CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ours, theirs = make_ca("shop test CA"), make_ca("another CA")
    return Pki(
        services=write_pems(
            directory, "services", ours, issue(ours, "services", [SERVER_AUTH, CLIENT_AUTH])
        ),
        client=write_pems(directory, "client", ours, issue(ours, "api", [CLIENT_AUTH])),
        # Its CA file is ours, so it trusts the server: only its own certificate is foreign.
        stranger=write_pems(directory, "stranger", ours, issue(theirs, "api", [CLIENT_AUTH])),
    )


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path_factory.mktemp('tls')}/shop.db")
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
async def target(pki: Pki, engine: Engine) -> AsyncIterator[str]:
    """The five services on 127.0.0.1, port 0, requiring mutual TLS."""
    server, port = create_server("127.0.0.1:0", engine, fault_rate=0, settings=pki.services)
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(None)


async def get_stock(stubs: Stubs, product_id: str) -> int:
    request = inventory_pb2.GetStockRequest(product_id=product_id)
    level: inventory_pb2.StockLevel = await stubs.inventory.GetStock(request, timeout=10)
    return level.available


async def test_a_client_with_a_certificate_of_the_ca_is_served(pki: Pki, target: str) -> None:
    product_id = uid("p-")
    async with Stubs.open(target, channel_credentials(pki.client)) as stubs:
        request = inventory_pb2.AdjustStockRequest(
            product_id=product_id, delta=3, idempotency_key=uid()
        )
        await stubs.inventory.AdjustStock(request, timeout=10)
        assert await get_stock(stubs, product_id) == 3


@pytest.mark.parametrize(
    "client", ["plaintext", "TLS without a certificate", "certificate of another CA"]
)
async def test_other_clients_are_refused(pki: Pki, target: str, client: str) -> None:
    ca = pki.client.grpc_tls_ca
    assert ca is not None
    credentials = {
        "plaintext": None,
        "TLS without a certificate": grpc.ssl_channel_credentials(ca.read_bytes()),
        "certificate of another CA": channel_credentials(pki.stranger),
    }[client]
    async with Stubs.open(target, credentials, retry=False) as stubs:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await get_stock(stubs, uid("p-"))
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value


async def test_product_alone_reaches_inventory_over_mutual_tls(
    pki: Pki, target: str, engine: Engine
) -> None:
    # Served without inventory, product sets imported stock through InventoryService,
    # presenting the services' own certificate.
    server, port = create_server(
        "127.0.0.1:0",
        engine,
        ("product",),
        fault_rate=0,
        inventory_target=target,
        settings=pki.services,
    )
    await server.start()
    tag = uid()
    try:
        async with Stubs.open(f"127.0.0.1:{port}", channel_credentials(pki.client)) as product:
            row = product_pb2.BulkCreateProductRow(
                sku=f"TLS-{tag}", id=f"tls-{tag}", name="TLS", price_cents=100, category="tls",
                stock=4,
            )  # fmt: skip
            summary = await product.product.BulkCreateProducts(iter([row]), timeout=10)
        assert (summary.created, summary.failed) == (1, 0), summary
        async with Stubs.open(target, channel_credentials(pki.client)) as stubs:
            assert await get_stock(stubs, f"tls-{tag}") == 4
    finally:
        await server.stop(None)


async def test_the_csv_import_presents_the_certificate(
    pki: Pki, target: str, tmp_path: Path
) -> None:
    tag = uid()
    csv = tmp_path / "catalogue.csv"
    csv.write_text(f"sku,name,description,price_cents,stock,category\nCSV-{tag},CSV,,100,1,tls\n")
    # The tool is synchronous: off the event loop that serves it.
    assert await asyncio.to_thread(import_csv, csv, target, 10, None) == 3
    credentials = channel_credentials(pki.client)
    assert await asyncio.to_thread(import_csv, csv, target, 10, credentials) == 0


def test_the_three_tls_files_go_together(pki: Pki) -> None:
    with pytest.raises(ValidationError, match="GRPC_TLS_KEY"):
        Settings(grpc_tls_ca=pki.client.grpc_tls_ca, grpc_tls_cert=pki.client.grpc_tls_cert)
    with pytest.raises(ValidationError, match="grpc_tls_ca"):
        Settings(
            grpc_tls_ca="/nonexistent/ca.pem",
            grpc_tls_cert=pki.client.grpc_tls_cert,
            grpc_tls_key=pki.client.grpc_tls_key,
        )
    assert Settings(grpc_tls_ca="", grpc_tls_cert="", grpc_tls_key="").grpc_tls is None
    # The error goes to the logs: it names what is wrong, never the values read (secrets).
    secret = "S3cr3t-9876"  # short: pydantic's shortened view of the input shows its tail
    with pytest.raises(ValidationError) as info:
        Settings(grpc_tls_ca=pki.client.grpc_tls_ca, admin_password=secret)
    assert "GRPC_TLS_CERT" in str(info.value) and secret not in str(info.value)


async def until_paid(http: httpx.AsyncClient, order_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        r = await http.get(f"/orders/{order_id}")
        if r.status_code == 200 and r.json()["status"] == "PAID":
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"order {order_id} not PAID: {r.status_code} {r.text}")
        await asyncio.sleep(0.2)


async def test_the_processes_place_an_order_over_mutual_tls(
    pki: Pki, dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    address = dev_env.client.service_client.config.target_host
    tls = {
        "grpc_tls_ca": pki.services.grpc_tls_ca,
        "grpc_tls_cert": pki.services.grpc_tls_cert,
        "grpc_tls_key": pki.services.grpc_tls_key,
    }
    async with running_stack(address, tmp_path, **tls) as stack:
        assert "mutual TLS" in stack.log("services")
        port = stack.settings.grpc_port
        # GRPC_HOST is 127.0.0.1 by default: not even another loopback address reaches it.
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", port), timeout=5)
        async with Stubs.open(stack.grpc_target, retry=False) as plaintext:
            with pytest.raises(grpc.aio.AioRpcError):
                await get_stock(plaintext, uid("p-"))

        async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as http:
            email = f"{uid()}@example.com"
            r = await http.post(
                "/users", json={"email": email, "name": "TLS", "password": PASSWORD}
            )
            assert r.status_code == 201, r.text
            customer = bearer(await log_in(http, email, PASSWORD))
            admin_password = resolved_admin_password(stack.settings)
            admin = bearer(await log_in(http, stack.settings.admin_email, admin_password))
            product = {
                "sku": uid("SKU-"), "name": "Widget", "description": "mTLS",
                "price_cents": 1250, "stock": 2, "category": "tls",
            }  # fmt: skip
            r = await http.post("/products", json=product, headers=admin)
            assert r.status_code == 201, r.text
            body = {
                "items": [{"product_id": r.json()["id"], "quantity": 1}],
                "payment": {"card_number": GOOD_CARD},
                "shipping_address": SHIPPING_ADDRESS,
            }
            http.headers.update(customer)
            r = await http.post("/checkout", json=body, headers={"Idempotency-Key": uid()})
            assert r.status_code == 202, r.text
            await until_paid(http, r.json()["order_id"])
