"""One `Settings` per process, read from the environment (see the README's settings table)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, FilePath, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from temporalio.envconfig import ClientConfigProfile

TASK_QUEUE = "orders"


class Settings(BaseSettings):
    # A refused setting's error names the setting, never the values read: they include the
    # secrets (ADMIN_PASSWORD, JWT_SECRET, PAYLOAD_KEYS), and the error goes to the logs.
    model_config = SettingsConfigDict(env_file=None, extra="ignore", hide_input_in_errors=True)

    data_dir: Path = Path(".data")
    # Empty means sqlite:///$DATA_DIR/shop.db.
    database_url: str = ""
    # Empty means: `make run` starts a dev server on localhost:7233.
    temporal_address: str = ""
    temporal_namespace: str = "default"
    temporal_ui_port: int = 8233
    # Where the back office links each order's workflow; empty means the dev server's Web UI.
    temporal_ui_url: str = ""
    temporal_task_queue: str = TASK_QUEUE
    # The services listen on GRPC_HOST only: loopback unless an operator opens them up.
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    grpc_target: str = ""
    # PEM files for mutual TLS between the services and their clients (all three, or none
    # for plaintext): the CA that signs every certificate, this process's certificate, its key.
    grpc_tls_ca: FilePath | None = None
    grpc_tls_cert: FilePath | None = None
    grpc_tls_key: FilePath | None = None
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # Chaos testing only: probability that a mutating gRPC call fails with UNAVAILABLE.
    fault_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    fault_seed: int | None = None
    # How long a PAID order may wait to be shipped before it is cancelled (NOT_SHIPPED).
    fulfilment_deadline_seconds: int = Field(default=7 * 24 * 3600, gt=0)
    log_level: str = "INFO"
    # An untouched, non-empty cart sends one CART_REMINDER after this many seconds.
    cart_reminder_seconds: int = Field(default=86_400, gt=0)
    # Secrets: empty means generated once into $DATA_DIR (core.secrets resolves them).
    # SecretStr keeps them out of reprs, so logging the settings never leaks them.
    payload_keys: SecretStr = SecretStr("")
    jwt_secret: SecretStr = SecretStr("")
    admin_email: str = "admin@example.com"
    admin_password: SecretStr = SecretStr("")
    access_token_minutes: int = Field(default=60, gt=0)
    # `limits` notation ("120/minute", "5 per second"); "0" turns the limit off.
    rate_limit: str = "120/minute"
    login_rate_limit: str = "10/minute"
    # memory:// counts per API process; redis://host:6379 shares the counters between replicas.
    rate_limit_storage_url: str = "memory://"
    # Event streams one caller may hold open at once in one API process (0: no bound).
    streams_per_caller: int = Field(default=16, ge=0)
    codec_host: str = "127.0.0.1"
    codec_port: int = 8081
    # Comma-separated in the environment; empty means the Web UI's origin.
    codec_cors_origins: Annotated[list[str], NoDecode] = []
    codec_auth: Literal["optional", "required"] = "optional"
    # Telemetry (core/telemetry.py): Prometheus /metrics of the worker and the services on
    # METRICS_HOST (0: none; the API serves its own on API_PORT), spans to an OTLP/HTTP
    # endpoint (unset: no tracing at all), and the log format.
    metrics_host: str = "127.0.0.1"
    metrics_port_worker: int = Field(default=9464, ge=0, le=65535)
    metrics_port_services: int = Field(default=9465, ge=0, le=65535)
    otel_exporter_otlp_endpoint: str = ""
    log_format: Literal["text", "json"] = "text"

    @field_validator("grpc_tls_ca", "grpc_tls_cert", "grpc_tls_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return value or None

    @field_validator("codec_cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @model_validator(mode="after")
    def _defaults(self) -> Settings:
        tls = {"CA": self.grpc_tls_ca, "CERT": self.grpc_tls_cert, "KEY": self.grpc_tls_key}
        missing = [f"GRPC_TLS_{name}" for name, path in tls.items() if path is None]
        if 0 < len(missing) < len(tls):
            raise ValueError(f"mutual TLS needs all three GRPC_TLS_*: {', '.join(missing)} unset")
        # The environment's TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE are ours too; without
        # them, a Temporal config profile (TEMPORAL_PROFILE, the TOML file) may name the server.
        if not self.temporal_address or "temporal_namespace" not in self.model_fields_set:
            profile = ClientConfigProfile.load()
            self.temporal_address = self.temporal_address or profile.address or ""
            if "temporal_namespace" not in self.model_fields_set and profile.namespace:
                self.temporal_namespace = profile.namespace
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir}/shop.db"
        if not self.grpc_target:
            self.grpc_target = f"localhost:{self.grpc_port}"
        if not self.temporal_ui_url:
            self.temporal_ui_url = f"http://localhost:{self.temporal_ui_port}"
        if not self.codec_cors_origins:
            self.codec_cors_origins = [f"http://localhost:{self.temporal_ui_port}"]
        return self

    @property
    def grpc_tls(self) -> tuple[Path, Path, Path] | None:
        """The (CA, certificate, key) PEM files for mutual TLS, or None for plaintext."""
        if self.grpc_tls_ca and self.grpc_tls_cert and self.grpc_tls_key:
            return self.grpc_tls_ca, self.grpc_tls_cert, self.grpc_tls_key
        return None

    @property
    def temporal_target(self) -> str:
        return self.temporal_address or "localhost:7233"


@lru_cache
def get_settings() -> Settings:
    return Settings()
