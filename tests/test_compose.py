"""docker-compose.yaml and the Dockerfile, checked without a Docker engine (parsed with PyYAML)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.config import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
SETTINGS_VARS = {name.upper() for name in Settings.model_fields}
# The processes of this project, and what each command must point at.
ENTRY_POINTS = {
    ("python", "-m", "services"): ROOT / "services" / "__main__.py",
    ("python", "worker.py"): ROOT / "worker.py",
    ("python", "-m", "api"): ROOT / "api" / "__main__.py",
    ("python", "-m", "core.seed"): ROOT / "core" / "seed.py",
    ("python", "-m", "codec"): ROOT / "codec" / "__main__.py",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


def ours(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services built from this repository (as opposed to official images)."""
    return {name: svc for name, svc in compose["services"].items() if "build" in svc}


def as_argv(command: Any) -> tuple[str, ...]:
    return tuple(shlex.split(command) if isinstance(command, str) else command)


def environment(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):  # the `- KEY=value` form
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def test_every_service_has_an_image_or_a_build(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        assert "image" in svc or "build" in svc, name


def test_the_expected_services_are_there(compose: dict[str, Any]) -> None:
    expected = {"postgresql", "temporal", "temporal-setup", "temporal-ui", "shop-db"}
    expected |= {"services", "worker", "api", "codec"}
    assert expected <= set(compose["services"])
    assert {"services", "worker", "api", "codec"} <= set(ours(compose))


def test_our_services_read_only_settings_fields(compose: dict[str, Any]) -> None:
    for name, svc in ours(compose).items():
        unknown = set(environment(svc)) - SETTINGS_VARS
        assert not unknown, f"{name}: {sorted(unknown)} are not fields of core.config.Settings"


def test_our_services_run_real_entry_points(compose: dict[str, Any]) -> None:
    for name, svc in ours(compose).items():
        argv = as_argv(svc["command"])
        assert argv in ENTRY_POINTS, f"{name}: unexpected command {argv}"
        assert ENTRY_POINTS[argv].exists(), f"{name}: {ENTRY_POINTS[argv]} is missing"


def test_the_wiring_between_our_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert environment(services["services"])["GRPC_PORT"] == "50051"
    for name in ("worker", "api"):
        env = environment(services[name])
        assert env["TEMPORAL_ADDRESS"] == "temporal:7233", name
        assert env["GRPC_TARGET"] == "services:50051", name
        assert env["DATABASE_URL"].startswith("postgresql+psycopg://"), name
        assert "@shop-db:" in env["DATABASE_URL"], name
    api = environment(services["api"])
    assert api["API_HOST"] == "0.0.0.0"  # the default, 127.0.0.1, is unreachable from outside
    assert f"{api['API_PORT']}:{api['API_PORT']}" in services["api"]["ports"]


def test_our_processes_share_their_secrets_and_the_ui_decodes_through_the_codec(
    compose: dict[str, Any],
) -> None:
    for name, svc in ours(compose).items():
        assert environment(svc)["DATA_DIR"] == "/data", name
        assert "shop-data:/data" in svc["volumes"], name
    services = compose["services"]
    codec = environment(services["codec"])
    assert services["codec"]["ports"] == [f"127.0.0.1:{codec['CODEC_PORT']}:{codec['CODEC_PORT']}"]
    ui = environment(services["temporal-ui"])
    assert ui["TEMPORAL_CODEC_ENDPOINT"] == f"http://localhost:{codec['CODEC_PORT']}"
    assert codec["CODEC_CORS_ORIGINS"] == "http://localhost:8080"  # the UI's published origin


def test_the_shop_has_its_own_database(compose: dict[str, Any]) -> None:
    services = compose["services"]
    temporal = environment(services["temporal"])
    assert temporal["DB"] == "postgres12"
    assert temporal["POSTGRES_SEEDS"] == "postgresql"
    assert services["shop-db"]["image"].startswith("postgres:")
    assert services["postgresql"]["image"].startswith("postgres:")


def test_the_search_attributes_are_registered(compose: dict[str, Any]) -> None:
    script = " ".join(as_argv(compose["services"]["temporal-setup"]["command"]))
    assert "search-attribute create" in script and "--type Keyword" in script
    for name in ("OrderStatus", "CustomerId"):
        assert name in script


def test_only_the_api_is_published_beyond_loopback(compose: dict[str, Any]) -> None:
    """Temporal's frontend, its Web UI, the codec and the observability tools have no login
    of their own (a client of the frontend reads and starts any workflow, and the codec
    decrypts for it): they listen on the host's loopback only. The API checks every caller."""
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            if name != "api":
                assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port}"
    api = environment(compose["services"]["api"])
    assert api["TEMPORAL_UI_URL"] == "http://localhost:8080"  # the back office's links


def test_published_host_ports_do_not_clash(compose: dict[str, Any]) -> None:
    seen: dict[str, str] = {}
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            parts = str(port).split(":")
            assert len(parts) >= 2, f"{name}: {port} publishes a random host port"
            host = ":".join(parts[:-1])
            assert host not in seen, f"{name} and {seen[host]} both publish {host}"
            seen[host] = name


def test_depends_on_targets_exist(compose: dict[str, Any]) -> None:
    names = set(compose["services"])
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, svc in compose["services"].items():
        deps = svc.get("depends_on") or []
        for dep in deps:
            assert dep in names, f"{name} depends on unknown service {dep}"
            if isinstance(deps, dict):
                condition = deps[dep].get("condition", "service_started")
                assert condition in conditions, f"{name} -> {dep}: {condition}"
                if condition == "service_healthy":
                    assert "healthcheck" in compose["services"][dep], f"{dep} has no healthcheck"


def test_dockerfile_installs_the_project_and_runs_a_real_module() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.12-slim", text, re.M)
    assert re.search(r"pip install[^\n]* \.", text)
    cmd = re.findall(r"^CMD (\[.*\])$", text, re.M)
    assert len(cmd) == 1
    argv = tuple(yaml.safe_load(cmd[0]))  # JSON exec form
    assert argv in ENTRY_POINTS and ENTRY_POINTS[argv].exists()
    env_vars = set(re.findall(r"^\s+([A-Z_]+)=", text, re.M)) | set(
        re.findall(r"^ENV ([A-Z_]+)=", text, re.M)
    )
    ours = {v for v in env_vars if not v.startswith(("PYTHON", "PIP_"))}
    assert ours <= SETTINGS_VARS, ours - SETTINGS_VARS


def test_dockerignore_keeps_local_state_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for path in (".venv", ".data", ".git"):
        assert path in ignored


# --- observability: Prometheus, the OpenTelemetry collector, Jaeger, Grafana ---------------
# (tests/test_telemetry.py checks that every metric these files query is really exported.)

DEPLOY = ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "datasources.yaml"


def mounts(svc: dict[str, Any]) -> dict[str, Path]:
    """Container path -> file or folder of this repository, for the bind mounts."""
    found = {}
    for volume in svc.get("volumes", []):
        source, target, *_ = str(volume).split(":")
        if source.startswith("./"):
            found[target] = ROOT / source
    return found


def test_the_observability_services_mount_files_that_exist(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"otel-collector", "jaeger", "prometheus", "grafana"} <= set(services)
    for name in ("otel-collector", "prometheus", "grafana"):
        assert mounts(services[name]), name
        for target, source in mounts(services[name]).items():
            assert source.exists(), f"{name}: {source} (mounted at {target}) is missing"
    prometheus = mounts(services["prometheus"])
    assert prometheus["/etc/prometheus/prometheus.yml"] == PROMETHEUS
    assert prometheus["/etc/prometheus/alerts.yml"] == ALERTS
    assert mounts(services["grafana"])["/var/lib/grafana/dashboards"] == DASHBOARDS


def test_prometheus_scrapes_every_process_where_it_serves(compose: dict[str, Any]) -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    targets: dict[str, list[str]] = {}
    for job in config["scrape_configs"]:
        static = [t for c in job.get("static_configs", []) for t in c["targets"]]
        dns = [f"{n}:{c['port']}" for c in job.get("dns_sd_configs", []) for n in c["names"]]
        targets[job["job_name"]] = static + dns
    defaults = Settings()
    services = compose["services"]
    api_port = environment(services["api"])["API_PORT"]
    assert targets["shop-api"] == [f"api:{api_port}"]
    assert targets["shop-worker"] == [f"worker:{defaults.metrics_port_worker}"]
    assert targets["shop-services"] == [f"services:{defaults.metrics_port_services}"]
    for name in ("services", "worker", "api"):
        env = environment(services[name])
        # Reachable from Prometheus's container, and spans to the collector's OTLP/HTTP port.
        assert env["METRICS_HOST"] == "0.0.0.0", name
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318", name


def test_the_collector_passes_spans_from_otlp_http_to_jaeger() -> None:
    config = yaml.safe_load((DEPLOY / "otel-collector.yaml").read_text())
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    pipeline = config["service"]["pipelines"]["traces"]
    assert pipeline["receivers"] == ["otlp"]
    for exporter in pipeline["exporters"]:
        assert exporter in config["exporters"]
    assert config["exporters"]["otlp/jaeger"]["endpoint"] == "jaeger:4317"
    for processor in pipeline["processors"]:
        assert processor in config["processors"]


def test_alert_rules_are_well_formed() -> None:
    """What `promtool check rules` checks of their structure (promtool is not on PyPI)."""
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    names = [rule["alert"] for group in groups for rule in group["rules"]]
    assert len(names) == len(set(names))
    expected = {"NoOrdersCompleting", "HighOrderFailureRatio", "CompensationsFailing"}
    assert expected | {"WorkerDown", "WorkerStuck"} <= set(names)
    for group in groups:
        assert group["name"] and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert rule["expr"].strip() and re.fullmatch(r"\d+[smh]", rule["for"]), rule
            assert rule["labels"]["severity"] in {"page", "warn"}, rule
            assert rule["annotations"]["summary"], rule
            assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]


def test_the_dashboard_is_provisioned_with_its_data_sources() -> None:
    sources = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    uids = {s["uid"]: s for s in sources}
    assert uids["prometheus"]["url"] == "http://prometheus:9090"
    assert uids["jaeger"]["url"] == "http://jaeger:16686"
    files = sorted(DASHBOARDS.glob("*.json"))
    assert files
    for path in files:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] and dashboard["title"] and dashboard["panels"]
        assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
        for panel in dashboard["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, panel["title"]
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] in uids, panel["title"]
                assert target["expr"].count("(") == target["expr"].count(")"), panel["title"]
