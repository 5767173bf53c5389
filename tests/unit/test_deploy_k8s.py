"""The Kubernetes manifests in deploy/k8s agree with the code they run.

Read as data: settings names and ports come from the settings classes, the drain
bound from ``consume()``, so a rename in the code breaks a test, not a rollout.
"""

from __future__ import annotations

import inspect
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from reelflow_api.settings import Settings as ApiSettings
from reelflow_common.broker import consume
from reelflow_notifier.settings import Settings as NotifierSettings
from reelflow_poller.settings import Settings as PollerSettings
from reelflow_submitter.settings import Settings as SubmitterSettings

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
SETTINGS: dict[str, type[BaseSettings]] = {
    "api": ApiSettings,
    "submitter": SubmitterSettings,
    "poller": PollerSettings,
    "notifier": NotifierSettings,
}
SERVICES = sorted(SETTINGS)
CONFIG_MAP = "reelflow-config"
SECRET = "reelflow-secrets"
EXAMPLE_SECRET_FILE = "secret.example.yaml"
LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
)
# What each service needs from the Secret, by the settings it reads.
SECRET_SETTINGS = {
    "api": {"amqp_url", "mongo_url", "webhook_secret"},
    "submitter": {"amqp_url", "mongo_url", "runware_api_key", "webhook_secret"},
    "poller": {"amqp_url", "mongo_url", "runware_api_key"},
    "notifier": {"amqp_url", "mongo_url"},
}


# --- helpers ---------------------------------------------------------------------------


@cache
def documents() -> dict[str, list[dict[str, Any]]]:
    """Every manifest file's documents, by file name (kustomization.yaml excluded)."""
    found = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            found[path.name] = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return found


def objects(kind: str) -> dict[str, dict[str, Any]]:
    """Objects of ``kind`` by name, from the files kustomization.yaml applies."""
    applied = set(kustomization()["resources"])
    return {
        doc["metadata"]["name"]: doc
        for name, docs in documents().items()
        if name in applied
        for doc in docs
        if doc["kind"] == kind
    }


@cache
def kustomization() -> dict[str, Any]:
    return cast(dict[str, Any], yaml.safe_load((K8S / "kustomization.yaml").read_text()))


def deployment(name: str) -> dict[str, Any]:
    return objects("Deployment")[f"reelflow-{name}"]


def container(name: str) -> dict[str, Any]:
    containers = deployment(name)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return cast(dict[str, Any], containers[0])


def env_names(settings: type[BaseSettings]) -> dict[str, str]:
    """Every environment variable ``settings`` reads, upper-cased, to its field name."""
    prefix = settings.model_config.get("env_prefix", "")
    names: dict[str, str] = {}
    for field_name, field in settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            variables = [choice for choice in alias.choices if isinstance(choice, str)]
        elif isinstance(alias, str):
            variables = [alias]
        else:
            variables = [f"{prefix}{field_name}"]
        names.update({variable.upper(): field_name for variable in variables})
    return names


def http_port(name: str) -> int:
    """The port the service listens on: REELFLOW_HTTP_PORT if set, else the default."""
    for entry in container(name).get("env", []):
        if entry["name"] == "REELFLOW_HTTP_PORT":
            return int(entry["value"])
    default = SETTINGS[name].model_fields["http_port"].default
    assert isinstance(default, int)
    return default


def container_port(name: str, port: int | str) -> int:
    """A probe's port, named or numeric, as a number."""
    if isinstance(port, int):
        return port
    ports = {p["name"]: p["containerPort"] for p in container(name)["ports"]}
    return int(ports[port])


def drain_timeout_s() -> float:
    default = inspect.signature(consume).parameters["drain_timeout_s"].default
    assert isinstance(default, float)
    return default


def pre_stop_seconds(name: str) -> float:
    command = container(name).get("lifecycle", {}).get("preStop", {}).get("exec", {})
    argv = command.get("command", [])
    return float(argv[1]) if argv[:1] == ["sleep"] else 0.0


# --- files and kustomization -----------------------------------------------------------


def test_every_manifest_parses_into_objects_with_a_kind_and_a_name() -> None:
    assert documents()
    for name, docs in documents().items():
        assert docs, f"{name} is empty"
        for doc in docs:
            assert doc["apiVersion"]
            assert doc["kind"]
            assert doc["metadata"]["name"]


def test_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    listed = kustomization()["resources"]
    assert len(listed) == len(set(listed))
    assert set(listed) == set(documents()) - {EXAMPLE_SECRET_FILE}
    # Applying placeholder secrets would overwrite the real ones.
    assert EXAMPLE_SECRET_FILE not in listed
    assert not objects("Secret")


def test_kustomization_pins_the_image_of_every_deployment() -> None:
    pinned = {image["name"] for image in kustomization()["images"]}
    assert pinned == {container(name)["image"] for name in SERVICES}
    for name in SERVICES:
        assert container(name)["image"] == f"reelflow-{name}"  # built with SERVICE=<name>


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_builds_the_directory() -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    built = [d for d in yaml.safe_load_all(result.stdout) if d]
    kinds = sorted(d["kind"] for d in built)
    assert kinds.count("Deployment") == len(SERVICES)
    assert all(
        d["metadata"].get("namespace") == "reelflow" for d in built if d["kind"] != "Namespace"
    )


# --- deployments -----------------------------------------------------------------------


def test_there_is_one_deployment_and_one_service_per_service() -> None:
    expected = {f"reelflow-{name}" for name in SERVICES}
    assert set(objects("Deployment")) == expected
    # Submitter and poller take no traffic; their Services are for metrics scraping.
    assert set(objects("Service")) == expected


@pytest.mark.parametrize("name", SERVICES)
def test_deployment_pods_and_selector_carry_the_recommended_labels(name: str) -> None:
    spec = deployment(name)["spec"]
    for labels in (deployment(name)["metadata"]["labels"], spec["template"]["metadata"]["labels"]):
        for label in LABELS:
            assert labels.get(label), f"{name}: {label}"
        assert labels["app.kubernetes.io/name"] == f"reelflow-{name}"
        assert labels["app.kubernetes.io/part-of"] == "reelflow"
    selector = spec["selector"]["matchLabels"]
    assert selector.items() <= spec["template"]["metadata"]["labels"].items()
    service = objects("Service")[f"reelflow-{name}"]
    assert service["spec"]["selector"] == selector


@pytest.mark.parametrize("name", SERVICES)
def test_probes_hit_readyz_and_healthz_on_the_services_http_port(name: str) -> None:
    port = http_port(name)
    assert [p["containerPort"] for p in container(name)["ports"]] == [port]
    readiness = container(name)["readinessProbe"]["httpGet"]
    liveness = container(name)["livenessProbe"]["httpGet"]
    assert readiness["path"] == "/readyz"
    assert liveness["path"] == "/healthz"
    assert container_port(name, readiness["port"]) == port
    assert container_port(name, liveness["port"]) == port
    annotations = deployment(name)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)


@pytest.mark.parametrize("name", SERVICES)
def test_the_service_forwards_to_the_http_port(name: str) -> None:
    (service_port,) = objects("Service")[f"reelflow-{name}"]["spec"]["ports"]
    assert service_port["port"] == http_port(name)
    assert container_port(name, service_port["targetPort"]) == http_port(name)


@pytest.mark.parametrize("name", SERVICES)
def test_settings_come_from_the_config_map(name: str) -> None:
    env_from = container(name)["envFrom"]
    assert {"configMapRef": {"name": CONFIG_MAP}} in env_from
    assert CONFIG_MAP in objects("ConfigMap")


def test_every_config_map_key_is_a_setting_of_some_service() -> None:
    known = set().union(*(env_names(settings) for settings in SETTINGS.values()))
    keys = set(objects("ConfigMap")[CONFIG_MAP]["data"])
    assert keys
    assert not keys - known, f"no service reads {sorted(keys - known)}"


def test_no_secret_is_in_the_config_map() -> None:
    secret_variables = {
        variable
        for name, fields in SECRET_SETTINGS.items()
        for variable, field in env_names(SETTINGS[name]).items()
        if field in fields
    }
    assert not set(objects("ConfigMap")[CONFIG_MAP]["data"]) & secret_variables


@pytest.mark.parametrize("name", SERVICES)
def test_every_variable_of_a_deployment_is_one_of_its_settings(name: str) -> None:
    known = env_names(SETTINGS[name])
    for entry in container(name).get("env", []):
        assert entry["name"].upper() in known, f"{name} does not read {entry['name']}"


@pytest.mark.parametrize("name", SERVICES)
def test_secrets_come_by_secret_key_ref_from_keys_the_example_defines(name: str) -> None:
    (example,) = documents()[EXAMPLE_SECRET_FILE]
    assert example["metadata"]["name"] == SECRET
    example_keys = set(example["stringData"])
    names = env_names(SETTINGS[name])
    from_secret = set()
    for entry in container(name).get("env", []):
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None:
            assert ref["name"] == SECRET
            assert ref["key"] in example_keys
            from_secret.add(names[entry["name"].upper()])
        else:
            assert names[entry["name"].upper()] not in SECRET_SETTINGS[name]
    assert from_secret == SECRET_SETTINGS[name]


@pytest.mark.parametrize("name", SERVICES)
def test_grace_period_outlasts_pre_stop_and_drain(name: str) -> None:
    grace = deployment(name)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > pre_stop_seconds(name) + drain_timeout_s()


@pytest.mark.parametrize("name", SERVICES)
def test_every_container_has_requests_and_limits(name: str) -> None:
    resources = container(name)["resources"]
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[bound]), f"{name}: {bound}"


@pytest.mark.parametrize("name", SERVICES)
def test_pods_run_as_the_images_non_root_user(name: str) -> None:
    pod = deployment(name)["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == 10001  # USER in deploy/docker/Dockerfile
    assert container(name)["securityContext"]["allowPrivilegeEscalation"] is False


def test_notifier_runs_at_least_two_replicas() -> None:
    assert deployment("notifier")["spec"]["replicas"] >= 2


# --- ingress ---------------------------------------------------------------------------


def ingress_routes() -> dict[str, tuple[str, dict[str, Any]]]:
    """Path to (backend Service, the Ingress's annotations)."""
    routes = {}
    for ingress in objects("Ingress").values():
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                port = backend["port"]
                service = objects("Service")[backend["name"]]
                assert port in ({"name": p["name"]} for p in service["spec"]["ports"])
                routes[path["path"]] = (backend["name"], ingress["metadata"]["annotations"])
    return routes


def test_ingress_sends_rest_to_the_api_and_websockets_to_the_notifier() -> None:
    routes = ingress_routes()
    assert routes["/v1"][0] == "reelflow-api"
    assert routes["/v1/ws"][0] == "reelflow-notifier"


def test_ingress_timeouts_fit_long_polls_and_websockets() -> None:
    routes = ingress_routes()
    api = routes["/v1"][1]
    max_wait = ApiSettings.model_fields["max_wait_s"].default
    assert float(api["nginx.ingress.kubernetes.io/proxy-read-timeout"]) > max_wait
    ws = routes["/v1/ws"][1]
    ping = NotifierSettings.model_fields["ws_ping_interval_s"].default
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert float(ws[f"nginx.ingress.kubernetes.io/{timeout}"]) >= 3600 > ping


def test_public_base_url_is_the_ingress_host() -> None:
    hosts = {
        rule["host"] for ingress in objects("Ingress").values() for rule in ingress["spec"]["rules"]
    }
    public = objects("ConfigMap")[CONFIG_MAP]["data"]["REELFLOW_PUBLIC_BASE_URL"]
    assert hosts == {public.removeprefix("https://")}
