"""How every Temporal client of the shop connects: the worker, the API, the replay and
record tools, `make run`'s readiness waits and the benchmark.

The server is Settings' TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE; everything else a secured
server asks for comes from Temporal's standard environment configuration
(`temporalio.envconfig`): `TEMPORAL_API_KEY`, `TEMPORAL_TLS_*`, `TEMPORAL_GRPC_META_*`, or a
profile of the TOML config file (`TEMPORAL_CONFIG_FILE`, `TEMPORAL_PROFILE`). So the same
processes run against a local dev server and against Temporal Cloud unchanged.
"""

from __future__ import annotations

from temporalio.client import Interceptor
from temporalio.envconfig import ClientConfigProfile, ClientConnectConfig

from core import telemetry
from core.config import Settings


def connect_config(settings: Settings) -> ClientConnectConfig:
    """`Client.connect`'s connection arguments: `Client.connect(**connect_config(settings),
    data_converter=...)`. The caller chooses the data converter and the other options."""
    config = ClientConfigProfile.load().to_client_connect_config()
    config["target_host"] = settings.temporal_target
    config["namespace"] = settings.temporal_namespace
    return config


def client_interceptors() -> list[Interceptor]:
    """`Client.connect`'s interceptors for the API and the worker: Temporal's tracing when
    OTEL_EXPORTER_OTLP_ENDPOINT is set (core.telemetry), else none."""
    return telemetry.client_interceptors()
