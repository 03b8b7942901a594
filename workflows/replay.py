"""Replays workflow histories against the current workflow code.

    python -m workflows.replay HISTORY.json ...        # files from `temporal workflow show -o json`
    python -m workflows.replay --workflow-id order-ID  # fetched from the server
    python -m workflows.replay --query 'WorkflowType="PlaceOrder"' [--limit 100]

Uses the worker's own configuration (workflows, data converter, sandbox), prints one line
per history (id, type, events, OK or the nondeterminism error) and exits 1 if any fails.
Payloads are decrypted with PAYLOAD_KEYS (else $DATA_DIR/payload_keys), as the worker's;
the committed histories were recorded with tests/histories/payload-keys.txt:

    PAYLOAD_KEYS=$(cat tests/histories/payload-keys.txt) python -m workflows.replay tests/histories
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client, WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.worker import Replayer

from core.codec import PayloadKeyError, data_converter
from core.config import get_settings
from core.runtime import exit_now
from core.secrets import SecretFileError
from core.temporal import connect_config


@dataclass
class ReplayOutcome:
    workflow_id: str
    workflow_type: str
    events: int
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None

    def line(self) -> str:
        verdict = "OK" if self.ok else f"FAIL {self.error}"
        return f"{self.workflow_id}\t{self.workflow_type}\t{self.events} events\t{verdict}"


def build_replayer(converter: DataConverter) -> Replayer:
    from worker import WORKFLOW_RUNNER, WORKFLOWS

    return Replayer(
        workflows=list(WORKFLOWS), data_converter=converter, workflow_runner=WORKFLOW_RUNNER
    )


def load_history_file(path: Path) -> WorkflowHistory:
    """Reads a history as `temporal workflow show -o json` writes it; the file stem is the id."""
    data = json.loads(path.read_text())
    return WorkflowHistory.from_json(path.stem, data)


def workflow_type_of(history: WorkflowHistory) -> str:
    for event in history.events:
        if event.HasField("workflow_execution_started_event_attributes"):
            return event.workflow_execution_started_event_attributes.workflow_type.name
    return "?"


async def replay(
    histories: AsyncIterator[WorkflowHistory], replayer: Replayer
) -> list[ReplayOutcome]:
    outcomes = []
    async for history in histories:
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        err = result.replay_failure
        outcomes.append(
            ReplayOutcome(
                workflow_id=history.workflow_id,
                workflow_type=workflow_type_of(history),
                events=len(history.events),
                error=None if err is None else f"{type(err).__name__}: {err}",
            )
        )
    return outcomes


async def _from_files(paths: Sequence[Path]) -> AsyncIterator[WorkflowHistory]:
    for path in paths:
        yield load_history_file(path)


async def _from_server(
    client: Client, workflow_ids: Sequence[str], query: str | None, limit: int
) -> AsyncIterator[WorkflowHistory]:
    for wid in workflow_ids:
        yield await client.get_workflow_handle(wid).fetch_history()
    if query:
        async for history in client.list_workflows(query, limit=limit).map_histories():
            yield history


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m workflows.replay", description=__doc__.split("\n")[0]
    )
    p.add_argument("files", nargs="*", type=Path, help="history JSON files (or folders of them)")
    p.add_argument(
        "--workflow-id", action="append", default=[], help="fetch this workflow's history"
    )
    p.add_argument("--query", help="fetch the histories of workflows matching this list filter")
    p.add_argument("--limit", type=int, default=1000, help="at most this many for --query")
    p.add_argument(
        "--address", help="Temporal address (default: TEMPORAL_ADDRESS or localhost:7233)"
    )
    p.add_argument(
        "--namespace", help="Temporal namespace (default: TEMPORAL_NAMESPACE or default)"
    )
    args = p.parse_args(argv)
    if not (args.files or args.workflow_id or args.query):
        p.error("give history files, --workflow-id or --query")
    return args


async def amain(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    files: list[Path] = []
    for path in args.files:
        files.extend(sorted(path.rglob("*.json")) if path.is_dir() else [path])
    settings = get_settings()
    converter = data_converter(settings)
    replayer = build_replayer(converter)
    outcomes = await replay(_from_files(files), replayer)
    if args.workflow_id or args.query:
        overrides = {"temporal_address": args.address, "temporal_namespace": args.namespace}
        settings = settings.model_copy(
            update={name: value for name, value in overrides.items() if value}
        )
        client = await Client.connect(**connect_config(settings), data_converter=converter)
        outcomes += await replay(
            _from_server(client, args.workflow_id, args.query, args.limit), replayer
        )
    for outcome in outcomes:
        print(outcome.line())
    failed = sum(not o.ok for o in outcomes)
    print(f"{len(outcomes)} replayed, {failed} failed")
    return 1 if failed or not outcomes else 0


def main() -> None:
    try:
        code = asyncio.run(amain())
    except (PayloadKeyError, SecretFileError) as err:
        sys.exit(f"replay: {err}")
    exit_now(code)


if __name__ == "__main__":
    main()
