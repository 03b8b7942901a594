"""Every Temporal client of the shop connects through core.temporal.connect_config: Settings'
address and namespace, and Temporal's standard environment configuration (envconfig) for
what a secured server asks: an API key, or mutual TLS, from TEMPORAL_* variables or a
profile of the TOML config file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.service import TLSConfig
from temporalio.testing import WorkflowEnvironment

from core.config import Settings
from core.temporal import connect_config
from worker import connect


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No TEMPORAL_* from the machine, and no config file but the test's own."""
    for name in os.environ:
        if name.startswith("TEMPORAL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(tmp_path / "absent.toml"))


def pems(directory: Path) -> dict[str, Path]:
    """Stand-in PEM files: envconfig reads them, the connection is not made."""
    paths = {name: directory / f"{name}.pem" for name in ("ca", "cert", "key")}
    for name, path in paths.items():
        path.write_text(f"-----BEGIN {name}-----\n")
    return paths


def test_without_configuration_the_local_server_in_the_clear() -> None:
    config = connect_config(Settings())
    assert config == {"target_host": "localhost:7233", "namespace": "default"}


def test_an_api_key_from_the_environment_turns_tls_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", "my-ns.a1b2c.tmprl.cloud:7233")
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "my-ns.a1b2c")
    monkeypatch.setenv("TEMPORAL_API_KEY", "secret-key")
    config = connect_config(Settings())
    assert config == {
        "target_host": "my-ns.a1b2c.tmprl.cloud:7233",
        "namespace": "my-ns.a1b2c",
        "api_key": "secret-key",
        "tls": True,
    }


def test_mutual_tls_files_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    files = pems(tmp_path)
    monkeypatch.setenv("TEMPORAL_ADDRESS", "temporal.internal:7233")
    monkeypatch.setenv("TEMPORAL_TLS_SERVER_CA_CERT_PATH", str(files["ca"]))
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", str(files["cert"]))
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_KEY_PATH", str(files["key"]))
    monkeypatch.setenv("TEMPORAL_TLS_SERVER_NAME", "temporal.internal")
    config = connect_config(Settings())
    assert config["target_host"] == "temporal.internal:7233"
    assert "api_key" not in config
    assert config["tls"] == TLSConfig(
        domain="temporal.internal",
        server_root_ca_cert=files["ca"].read_bytes(),
        client_cert=files["cert"].read_bytes(),
        client_private_key=files["key"].read_bytes(),
    )


def test_a_profile_of_the_config_file_names_the_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    files = pems(tmp_path)
    config_file = tmp_path / "temporal.toml"
    config_file.write_text(
        f"""
[profile.default]
address = "localhost:7233"

[profile.cloud]
address = "shop.a1b2c.tmprl.cloud:7233"
namespace = "shop.a1b2c"

[profile.cloud.tls]
client_cert_path = "{files["cert"]}"
client_key_path = "{files["key"]}"
"""
    )
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(config_file))
    monkeypatch.setenv("TEMPORAL_PROFILE", "cloud")
    settings = Settings()
    # Settings take the profile's server, so `make run` starts no dev server for it.
    assert (settings.temporal_address, settings.temporal_namespace) == (
        "shop.a1b2c.tmprl.cloud:7233",
        "shop.a1b2c",
    )
    config = connect_config(settings)
    assert (config["target_host"], config["namespace"]) == (
        "shop.a1b2c.tmprl.cloud:7233",
        "shop.a1b2c",
    )
    assert config["tls"] == TLSConfig(
        client_cert=files["cert"].read_bytes(), client_private_key=files["key"].read_bytes()
    )
    # Our own variables still win over the file.
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "staging")
    assert connect_config(Settings())["namespace"] == "staging"
    assert connect_config(Settings(temporal_address="elsewhere:7233"))["target_host"] == (
        "elsewhere:7233"
    )


async def test_the_worker_connects_to_the_dev_server_through_it(
    dev_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = dev_env.client.service_client.config.target_host
    monkeypatch.setenv("TEMPORAL_ADDRESS", address)
    client = await connect(Settings())
    assert (client.service_client.config.target_host, client.namespace) == (address, "default")
    await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace="default"))

    # The environment's TLS reaches the connection: the dev server speaks plaintext only.
    monkeypatch.setenv("TEMPORAL_API_KEY", "not-for-a-dev-server")
    with pytest.raises(RuntimeError, match="Failed client connect"):
        await connect(Settings())
