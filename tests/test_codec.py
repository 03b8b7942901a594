"""The payload codec: encryption through a real Temporal dev server, the codec server over
real HTTP (and the `temporal` CLI through it), rotation, auth, CORS, generated secrets.

Over 400 lines: the codec and its server share the keys, the workflow and the server
fixtures defined here, and each auth mode meets six kinds of token.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import stat
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr
from temporalio import activity, workflow

# The sandbox re-imports this module for the workflow: what it needs from outside passes through.
with workflow.unsafe.imports_passed_through():
    import httpx
    import jwt
    from google.protobuf import json_format
    from google.protobuf.message import Message
    from temporalio.api.common.v1 import Payload, Payloads
    from temporalio.api.history.v1 import History
    from temporalio.client import Client
    from temporalio.common import SearchAttributePair, TypedSearchAttributes
    from temporalio.testing import WorkflowEnvironment
    from temporalio.worker import Worker

    from codec.app import create_app
    from core.codec import (
        EncryptionCodec,
        PayloadKeyError,
        data_converter,
        generate_payload_key,
        parse_payload_keys,
    )
    from core.config import Settings
    from core.messages import CUSTOMER_ID
    from core.secrets import (
        SecretFileError,
        generated_once,
        resolved_admin_password,
        resolved_jwt_secret,
        resolved_payload_keys,
    )
    from core.tokens import issue_access_token
    from tests.conftest import binary
    from tests.harness import free_port
    from tests.net import served

pytestmark = pytest.mark.timeout(60)

UI_ORIGIN = "http://localhost:8233"
JWT_SECRET = "test-jwt-secret-for-the-codec-server"


# -- a tiny workflow whose every payload carries a secret -----------------------------------


class Parcel(BaseModel):
    secret: str


class Note(BaseModel):
    reason: str


@activity.defn(name="CodecProbeReveal")
async def reveal(parcel: Parcel) -> Parcel:
    return Parcel(secret=f"seen {parcel.secret}")


@workflow.defn(name="CodecProbe")
class CodecProbe:
    def __init__(self) -> None:
        self.note: Note | None = None

    @workflow.signal
    def leave_note(self, note: Note) -> None:
        self.note = note

    @workflow.run
    async def run(self, parcel: Parcel) -> Parcel:
        await workflow.wait_condition(lambda: self.note is not None)
        assert self.note is not None
        seen = await workflow.execute_activity(
            reveal, parcel, start_to_close_timeout=timedelta(seconds=10)
        )
        return Parcel(secret=f"{seen.secret} / {self.note.reason}")


def keyed_settings(tmp_path: Path, keys: str, **overrides: Any) -> Settings:
    return Settings(
        data_dir=tmp_path,
        payload_keys=SecretStr(keys),
        jwt_secret=SecretStr(JWT_SECRET),
        **overrides,
    )


def encrypting_client(env: WorkflowEnvironment, settings: Settings) -> Client:
    """A client of the session's dev server with the shop's encrypting converter."""
    raw = env.client
    return Client(
        raw.service_client, namespace=raw.namespace, data_converter=data_converter(settings)
    )


def payloads_in(message: Message, path: str = "") -> Iterator[tuple[str, Payload]]:
    """Every Payload inside a proto message, with the path of fields leading to it."""
    if isinstance(message, Payload):
        yield path, message
        return
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].message_type is None:
                continue
            items = list(value.values())
        elif field.is_repeated:
            items = list(value)
        else:
            items = [value]
        for item in items:
            yield from payloads_in(item, f"{path}.{field.name}")


def key_id(payload: Payload) -> str:
    return payload.metadata["encryption-key-id"].decode()


def workflow_input(history: History) -> list[Payload]:
    return list(history.events[0].workflow_execution_started_event_attributes.input.payloads)


async def stored_history(env: WorkflowEnvironment, workflow_id: str) -> History:
    """The history as the server stores it, read by a client without the codec."""
    fetched = await env.client.get_workflow_handle(workflow_id).fetch_history()
    return History(events=fetched.events)


def event_payloads(history: History, attribute: str) -> list[Payload]:
    """The payloads of the first event carrying `attribute` (e.g. the started event's input)."""
    for event in history.events:
        if event.HasField(attribute):  # type: ignore[arg-type]
            return [p for _, p in payloads_in(getattr(event, attribute))]
    raise AssertionError(f"no {attribute} in the history")


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The codec server for `settings` on a free port (uvicorn, real HTTP), and a client."""
    async with (
        served(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        yield http


async def post_payloads(
    http: httpx.AsyncClient, path: str, payloads: list[Payload], **kwargs: Any
) -> httpx.Response:
    body = json_format.MessageToJson(Payloads(payloads=payloads))
    headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
    return await http.post(path, content=body, headers=headers, **kwargs)


def parsed(reply: httpx.Response) -> list[Payload]:
    assert reply.status_code == 200, reply.text
    return list(json_format.Parse(reply.text, Payloads()).payloads)


# -- through a real Temporal server ----------------------------------------------------------


async def test_every_payload_in_the_history_is_encrypted_and_the_codec_server_reads_it(
    dev_env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> None:
    settings = keyed_settings(tmp_path, generate_payload_key("k1"))
    client = encrypting_client(dev_env, settings)
    secret = f"secret-{uuid.uuid4().hex}"
    workflow_id = f"codec-{uuid.uuid4().hex}"
    async with Worker(client, task_queue=task_queue, workflows=[CodecProbe], activities=[reveal]):
        handle = await client.start_workflow(
            CodecProbe.run,
            Parcel(secret=secret),
            id=workflow_id,
            task_queue=task_queue,
            memo={"note": secret},
            search_attributes=TypedSearchAttributes([SearchAttributePair(CUSTOMER_ID, "cust-7")]),
        )
        await handle.signal(CodecProbe.leave_note, Note(reason=f"because {secret}"))
        result = await handle.result()
    assert result == Parcel(secret=f"seen {secret} / because {secret}")

    # Read back by a client without the codec: what the server (and its Web UI) stores.
    history = await stored_history(dev_env, workflow_id)
    assert secret.encode() not in history.SerializeToString()
    found = list(payloads_in(history))
    clear = [(path, p) for path, p in found if ".search_attributes." in path]
    encrypted = [p for path, p in found if ".search_attributes." not in path]
    # input, memo, signal, activity input and result, workflow result
    assert len(encrypted) >= 6, [path for path, _ in found]
    assert all(p.metadata["encoding"] == b"binary/encrypted" for p in encrypted)
    assert {key_id(p) for p in encrypted} == {"k1"}
    assert [json.loads(p.data) for _, p in clear] == ["cust-7"]

    # The codec server gives the Web UI and the CLI the clear input back, over real HTTP.
    async with serving(settings) as http:
        reply = await post_payloads(
            http,
            "/decode",
            workflow_input(history),
            headers={"X-Namespace": dev_env.client.namespace},
        )
        decoded = parsed(reply)
        assert dev_env.client.data_converter.payload_converter.from_payload(
            decoded[0], Parcel
        ) == Parcel(secret=secret)

        # `temporal workflow show --codec-endpoint ...`: the CLI's own codec client.
        show = [
            binary("temporal"), "workflow", "show", "--workflow-id", workflow_id,
            "--address", dev_env.client.service_client.config.target_host,
            "--namespace", dev_env.client.namespace, "--output", "json",
        ]  # fmt: skip
        shown = await run_cli(*show, "--codec-endpoint", str(http.base_url))
    shown_started = workflow_input(shown)
    assert [p.metadata["encoding"] for p in shown_started] == [b"json/plain"]
    assert dev_env.client.data_converter.payload_converter.from_payload(
        shown_started[0], Parcel
    ) == Parcel(secret=secret)
    assert not [p for _, p in payloads_in(shown) if p.metadata["encoding"] == b"binary/encrypted"]


async def run_cli(*args: str) -> History:
    """Runs `temporal ... --output json` and reads the history it prints."""
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    return json_format.Parse(out, History(), ignore_unknown_fields=True)


async def test_a_plain_signal_reaches_a_workflow_run_with_the_codec(
    dev_env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> None:
    """As `temporal workflow signal --input '{"reason":"x"}'` without the codec endpoint."""
    client = encrypting_client(dev_env, keyed_settings(tmp_path, generate_payload_key()))
    async with Worker(client, task_queue=task_queue, workflows=[CodecProbe], activities=[reveal]):
        handle = await client.start_workflow(
            CodecProbe.run,
            Parcel(secret="s"),
            id=f"codec-{uuid.uuid4().hex}",
            task_queue=task_queue,
        )
        raw = dev_env.client
        plain = Client(raw.service_client, namespace=raw.namespace)  # no codec
        await plain.get_workflow_handle(handle.id).signal("leave_note", {"reason": "x"})
        assert await handle.result() == Parcel(secret="seen s / x")


async def test_a_workflow_started_before_a_key_rotation_finishes_after_it(
    dev_env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> None:
    k1, k2 = generate_payload_key("k1"), generate_payload_key("k2")
    before = encrypting_client(dev_env, keyed_settings(tmp_path, k1))
    after = encrypting_client(dev_env, keyed_settings(tmp_path, f"{k2},{k1}"))
    handle = await before.start_workflow(
        CodecProbe.run, Parcel(secret="old"), id=f"codec-{uuid.uuid4().hex}", task_queue=task_queue
    )
    async with Worker(after, task_queue=task_queue, workflows=[CodecProbe], activities=[reveal]):
        rotated = after.get_workflow_handle_for(CodecProbe.run, handle.id)
        await rotated.signal(CodecProbe.leave_note, Note(reason="new"))
        result = await rotated.result()
    assert result == Parcel(secret="seen old / new")

    history = await stored_history(dev_env, handle.id)
    assert [key_id(p) for p in workflow_input(history)] == ["k1"]
    for attribute in (
        "workflow_execution_signaled_event_attributes",
        "activity_task_scheduled_event_attributes",
        "workflow_execution_completed_event_attributes",
    ):
        assert {key_id(p) for p in event_payloads(history, attribute)} == {"k2"}, attribute


# -- the codec on its own --------------------------------------------------------------------


def plain(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(text).encode())


async def test_rotation_decrypts_old_payloads_and_encrypts_new_ones_with_the_first_key() -> None:
    k1, k2 = generate_payload_key("k1"), generate_payload_key("k2")
    old = await EncryptionCodec(parse_payload_keys(k1)).encode([plain("old")])
    rotated = EncryptionCodec(parse_payload_keys(f"{k2},{k1}"))
    new = await rotated.encode([plain("new")])
    assert [key_id(p) for p in old + new] == ["k1", "k2"]
    assert await rotated.decode(old + new) == [plain("old"), plain("new")]
    # A fresh nonce each time: the same payload never encrypts to the same bytes.
    again = await rotated.encode([plain("new")])
    assert again[0].data != new[0].data


async def test_a_payload_of_an_unknown_key_id_fails_clearly() -> None:
    (payload,) = await EncryptionCodec(parse_payload_keys(generate_payload_key("k2"))).encode(
        [plain("x")]
    )
    with pytest.raises(PayloadKeyError, match="key id 'k2', which is not in PAYLOAD_KEYS"):
        await EncryptionCodec(parse_payload_keys(generate_payload_key("k1"))).decode([payload])


async def test_a_payload_under_another_key_of_the_same_id_or_altered_fails_clearly() -> None:
    codec = EncryptionCodec(parse_payload_keys(generate_payload_key("k1")))
    (payload,) = await codec.encode([plain("x")])
    impostor = EncryptionCodec(parse_payload_keys(generate_payload_key("k1")))
    with pytest.raises(PayloadKeyError, match="does not decrypt with key 'k1'"):
        await impostor.decode([payload])
    altered = Payload(metadata=payload.metadata, data=payload.data[:-1] + b"\0")
    with pytest.raises(PayloadKeyError, match="does not decrypt"):
        await codec.decode([altered])
    # Too short to hold its nonce: the same clear error, not a ValueError of the cipher.
    truncated = Payload(metadata=payload.metadata, data=payload.data[:5])
    with pytest.raises(PayloadKeyError, match="does not decrypt"):
        await codec.decode([truncated])


async def test_payloads_it_did_not_encrypt_pass_through_unchanged() -> None:
    codec = EncryptionCodec(parse_payload_keys(generate_payload_key()))
    others = [plain("x"), Payload(metadata={"encoding": b"binary/null"}), Payload(data=b"raw")]
    assert await codec.decode(others) == others


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "entry 1 is not `id:base64key`"),
        ("k1", "entry 1 is not `id:base64key`"),
        (f"{generate_payload_key()},", "entry 2 is not `id:base64key`"),
        ("bad id:" + base64.b64encode(bytes(32)).decode(), "entry 1 is not"),
        ("k1:not*base64", "key 'k1' is not valid base64"),
        ("k1:" + base64.b64encode(bytes(16)).decode(), "key 'k1' has 16 bytes; AES-256 needs 32"),
        (f"{generate_payload_key('a')},{generate_payload_key('a')}", "key id 'a' twice"),
    ],
)
def test_malformed_payload_keys_are_refused_without_echoing_the_key(
    text: str, message: str
) -> None:
    with pytest.raises(PayloadKeyError, match=message) as caught:
        parse_payload_keys(text)
    for entry in text.split(","):
        material = entry.partition(":")[2]
        assert not material or material not in str(caught.value)


def test_payload_keys_keep_their_order() -> None:
    keys = parse_payload_keys(f" {generate_payload_key('new')} , {generate_payload_key('old')}")
    assert list(keys) == ["new", "old"] and all(len(k) == 32 for k in keys.values())


def test_the_data_converter_is_pydantics_with_the_encryption_codec(tmp_path: Path) -> None:
    converter = data_converter(keyed_settings(tmp_path, generate_payload_key("k7")))
    assert isinstance(converter.payload_codec, EncryptionCodec)
    assert converter.payload_codec.key_ids == ["k7"]
    assert (
        converter.payload_converter.to_payloads([Parcel(secret="s")])[0].data == b'{"secret":"s"}'
    )


# -- the codec server over HTTP --------------------------------------------------------------


def token(claims: dict[str, Any], secret: str = JWT_SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret.encode(), algorithm=algorithm)


def unsigned(claims: dict[str, Any]) -> str:
    """An `alg: none` token, built by hand: no library should produce one for us."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def claims(role: str, *, age: timedelta = timedelta(0)) -> dict[str, Any]:
    now = datetime.now(UTC) - age
    return {"sub": "user-1", "role": role, "iat": now, "exp": now + timedelta(minutes=60)}


TOKENS: dict[str, Callable[[], str | None]] = {
    "none sent": lambda: None,
    "admin": lambda: issue_access_token(JWT_SECRET, "user-1", "admin", timedelta(minutes=5)),
    "customer": lambda: issue_access_token(JWT_SECRET, "user-2", "customer", timedelta(minutes=5)),
    "forged": lambda: token(claims("admin"), secret="another-secret-of-the-same-length-as-ours"),
    "expired": lambda: token(claims("admin", age=timedelta(hours=2))),
    "alg none": lambda: unsigned({"sub": "user-1", "role": "admin", "iat": 0, "exp": 2**40}),
    "no role": lambda: token({"sub": "user-1", "iat": 0, "exp": 2**40}),
    "not a token": lambda: "abc",
}


@pytest.mark.parametrize(
    ("mode", "kind", "status"),
    [
        ("optional", "none sent", 200),
        ("optional", "admin", 200),
        ("optional", "customer", 403),
        ("optional", "forged", 401),
        ("optional", "expired", 401),
        ("optional", "alg none", 401),
        ("optional", "no role", 401),
        ("optional", "not a token", 401),
        ("required", "none sent", 401),
        ("required", "admin", 200),
        ("required", "customer", 403),
        ("required", "forged", 401),
        ("required", "expired", 401),
        ("required", "alg none", 401),
    ],
)
async def test_codec_auth(tmp_path: Path, mode: str, kind: str, status: int) -> None:
    keys = generate_payload_key()
    (encrypted,) = await EncryptionCodec(parse_payload_keys(keys)).encode([plain("x")])
    bearer = TOKENS[kind]()
    headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
    async with serving(keyed_settings(tmp_path, keys, codec_auth=mode)) as http:
        encoded = await post_payloads(http, "/encode", [plain("x")], headers=headers)
        decoded = await post_payloads(http, "/decode", [encrypted], headers=headers)
    for reply in (encoded, decoded):
        assert reply.status_code == status, reply.text
        if status == 401:
            assert reply.headers["WWW-Authenticate"] == "Bearer"
        if status != 200:
            assert reply.json()["error"]["message"]
    if status == 200:
        assert parsed(decoded) == [plain("x")]


async def test_a_header_that_is_not_a_bearer_token_is_refused(tmp_path: Path) -> None:
    async with serving(keyed_settings(tmp_path, generate_payload_key())) as http:
        reply = await post_payloads(http, "/decode", [], headers={"Authorization": "Basic eDp5"})
    assert reply.status_code == 401 and "Bearer" in reply.json()["error"]["message"]


async def test_encode_then_decode_round_trips_under_a_namespace_path(tmp_path: Path) -> None:
    """The CLI may template the namespace into the endpoint: /{namespace}/encode."""
    async with serving(keyed_settings(tmp_path, generate_payload_key("k3"))) as http:
        encoded = parsed(await post_payloads(http, "/default/encode", [plain("x")]))
        assert [(p.metadata["encoding"], key_id(p)) for p in encoded] == [
            (b"binary/encrypted", "k3")
        ]
        assert parsed(await post_payloads(http, "/default/decode", encoded)) == [plain("x")]
        # An empty batch is still an answer in the protocol's shape.
        empty = await post_payloads(http, "/decode", [])
        assert empty.json() == {"payloads": []}


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"not json", 400, "expected Payloads as JSON"),
        (b'{"payloads": [{"metadata": {"encoding": 5}}]}', 400, "expected Payloads as JSON"),
        (b'{"payloads": [{"unknown": 1}]}', 400, "expected Payloads as JSON"),
        (b'{"payloads": 3}', 400, "expected Payloads as JSON"),
        (b"\xff\xfe", 400, "expected Payloads as JSON"),
    ],
)
async def test_bad_bodies_get_400_with_a_message(
    tmp_path: Path, body: bytes, status: int, fragment: str
) -> None:
    async with serving(keyed_settings(tmp_path, generate_payload_key())) as http:
        reply = await http.post("/decode", content=body)
    assert reply.status_code == status and fragment in reply.json()["error"]["message"]


async def test_undecodable_payloads_and_other_namespaces_get_clear_errors(tmp_path: Path) -> None:
    (foreign,) = await EncryptionCodec(parse_payload_keys(generate_payload_key("k9"))).encode(
        [plain("x")]
    )
    async with serving(keyed_settings(tmp_path, generate_payload_key("k1"))) as http:
        reply = await post_payloads(http, "/decode", [foreign])
        assert reply.status_code == 400 and "'k9'" in reply.json()["error"]["message"]
        (mine,) = await EncryptionCodec(parse_payload_keys(generate_payload_key("k1"))).encode(
            [plain("x")]
        )
        truncated = Payload(metadata=mine.metadata, data=mine.data[:5])
        reply = await post_payloads(http, "/decode", [truncated])
        assert reply.status_code == 400 and "does not decrypt" in reply.json()["error"]["message"]
        for path, headers in (("/other/decode", {}), ("/decode", {"X-Namespace": "other"})):
            reply = await post_payloads(http, path, [plain("x")], headers=headers)
            assert reply.status_code == 404, (path, reply.text)
            assert "namespace 'default'" in reply.json()["error"]["message"]
        assert (await http.get("/decode")).status_code == 405


@pytest.mark.parametrize("mode", ["optional", "required"])
async def test_cors_answers_the_web_ui_only(tmp_path: Path, mode: str) -> None:
    settings = keyed_settings(
        tmp_path, generate_payload_key(), codec_auth=mode, codec_cors_origins=[UI_ORIGIN]
    )
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
    }
    async with serving(settings) as http:
        ok = await http.options("/decode", headers={"Origin": UI_ORIGIN, **preflight})
        assert ok.status_code == 200, ok.text
        assert ok.headers["Access-Control-Allow-Origin"] == UI_ORIGIN
        allowed = {h.strip().lower() for h in ok.headers["Access-Control-Allow-Headers"].split(",")}
        assert {"authorization", "content-type", "x-namespace"} <= allowed
        assert "POST" in ok.headers["Access-Control-Allow-Methods"]

        evil = await http.options("/decode", headers={"Origin": "http://evil.example", **preflight})
        assert "Access-Control-Allow-Origin" not in evil.headers

        body = json_format.MessageToJson(Payloads(payloads=[plain("x")]))
        admin = TOKENS["admin"]()
        auth = {"Authorization": f"Bearer {admin}"}
        answer = await http.post("/decode", content=body, headers={"Origin": UI_ORIGIN, **auth})
        assert answer.headers["Access-Control-Allow-Origin"] == UI_ORIGIN
        other = await http.post(
            "/decode", content=body, headers={"Origin": "http://evil.example", **auth}
        )
        assert "Access-Control-Allow-Origin" not in other.headers


def test_cors_origins_are_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEC_CORS_ORIGINS", "http://a.example:1, http://b.example:2")
    assert Settings().codec_cors_origins == ["http://a.example:1", "http://b.example:2"]
    monkeypatch.delenv("CODEC_CORS_ORIGINS")
    assert Settings(temporal_ui_port=9233).codec_cors_origins == ["http://localhost:9233"]


# -- secrets generated once into DATA_DIR ----------------------------------------------------


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_unset_secrets_are_generated_once_into_data_dir_with_mode_0600(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("PAYLOAD_KEYS", "JWT_SECRET", "ADMIN_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(data_dir=tmp_path / "data")
    resolvers = (resolved_payload_keys, resolved_jwt_secret, resolved_admin_password)
    first = [resolve(settings) for resolve in resolvers]
    assert [resolve(Settings(data_dir=tmp_path / "data")) for resolve in resolvers] == first
    files = {p.name: p for p in (tmp_path / "data").iterdir()}
    assert sorted(files) == ["admin_password", "jwt_secret", "payload_keys"]
    assert all(mode_of(p) == 0o600 for p in files.values())
    assert [
        files[n].read_text().strip() for n in ("payload_keys", "jwt_secret", "admin_password")
    ] == first
    assert list(parse_payload_keys(first[0])) == ["k1"]
    assert len(first[1]) >= 43 and len(first[2]) >= 16 and first[1] != first[2]
    # They stay out of the settings' repr, so logging the settings leaks nothing.
    loaded = keyed_settings(tmp_path, first[0])
    assert first[0] not in repr(loaded) and JWT_SECRET not in str(loaded)


def test_a_set_secret_wins_and_writes_no_file(tmp_path: Path) -> None:
    key = generate_payload_key("mine")
    settings = Settings(
        data_dir=tmp_path,
        payload_keys=SecretStr(key),
        jwt_secret=SecretStr("s"),
        admin_password=SecretStr("p"),
    )
    assert resolved_payload_keys(settings) == key
    assert (resolved_jwt_secret(settings), resolved_admin_password(settings)) == ("s", "p")
    assert list(tmp_path.iterdir()) == []


def test_processes_starting_at_once_agree_on_one_secret(tmp_path: Path) -> None:
    path = tmp_path / "jwt_secret"
    start = threading.Barrier(8)
    seen: list[str] = []

    def resolve(n: int) -> None:
        start.wait()
        seen.append(generated_once(path, lambda: f"secret-{n}-{uuid.uuid4().hex}"))

    threads = [threading.Thread(target=resolve, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 8 and set(seen) == {path.read_text().strip()}
    assert [p.name for p in tmp_path.iterdir()] == ["jwt_secret"]  # no temporary file left
    assert mode_of(path) == 0o600


def test_an_empty_secret_file_is_an_error_not_an_empty_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JWT_SECRET", raising=False)
    (tmp_path / "jwt_secret").write_text("\n")
    with pytest.raises(SecretFileError, match="is empty"):
        resolved_jwt_secret(Settings(data_dir=tmp_path))


# -- python -m codec -------------------------------------------------------------------------


async def test_python_m_codec_serves_on_codec_port_and_stops_cleanly_on_sigterm(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {**os.environ, "DATA_DIR": str(tmp_path), "CODEC_PORT": str(port)}
    for name in ("PAYLOAD_KEYS", "JWT_SECRET", "CODEC_AUTH", "CODEC_CORS_ORIGINS"):
        env.pop(name, None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "codec", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as http:
            async with asyncio.timeout(20):
                while True:
                    try:
                        if (await http.get("/health")).status_code == 200:
                            break
                    except httpx.TransportError:
                        await asyncio.sleep(0.1)
            encoded = parsed(await post_payloads(http, "/encode", [plain("x")]))
        # It generated its keys into DATA_DIR: the same keys decrypt what it encrypted.
        keys = (tmp_path / "payload_keys").read_text()
        assert await EncryptionCodec(parse_payload_keys(keys)).decode(encoded) == [plain("x")]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 15)
    log = out.decode()
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert proc.returncode in (0, -signal.SIGTERM), log[-2000:]
    assert "Application shutdown complete" in log
    assert keys.strip().partition(":")[2] not in log


async def test_python_m_codec_refuses_malformed_keys_with_a_clear_message(tmp_path: Path) -> None:
    material = base64.b64encode(bytes(16)).decode()
    env = {**os.environ, "DATA_DIR": str(tmp_path), "PAYLOAD_KEYS": f"k1:{material}"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "codec", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    assert "PAYLOAD_KEYS key 'k1' has 16 bytes; AES-256 needs 32" in out.decode()
    assert material not in out.decode()
