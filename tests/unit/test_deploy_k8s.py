"""The Kubernetes manifests: valid against the Kubernetes schemas, and in step with the code.

Each overlay is rendered by kustomize (the one built into kubectl, which the
development machines and CI have) and every object is validated against the
Kubernetes API's OpenAPI schemas, strictly (unknown fields are errors), by
kubernetes-validate (PyPI; it ships the schemas, so nothing is fetched). Then the
rendered objects are read as data: settings names and ports come from the
settings classes, the drain bound from ``consume()``, so a rename in the code
breaks a test, not a rollout.
"""

from __future__ import annotations

import copy
import inspect
import re
import shlex
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any, cast

import kubernetes_validate
import pytest
import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings
from starlette.routing import Mount
from yarl import URL

from reelflow_api.app import OUTLIVING_DRAIN_S, create_app
from reelflow_api.matching import flattened_routes
from reelflow_api.settings import Settings as ApiSettings
from reelflow_common.admin.cli import AdminSettings
from reelflow_common.broker import amqp_connection, consume
from reelflow_common.mongo import CLOSE_TIMEOUT_S as MONGO_CLOSE_TIMEOUT_S
from reelflow_common.ops import OPS_PATHS
from reelflow_notifier.main import server_config as notifier_server_config
from reelflow_notifier.settings import Settings as NotifierSettings
from reelflow_poller.settings import Settings as PollerSettings
from reelflow_submitter.settings import Settings as SubmitterSettings
from tests import ROOT

K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
NAMESPACES = {"dev": "reelflow-dev", "prod": "reelflow"}
#: the Kubernetes version the manifests are checked against: the oldest we support
KUBERNETES_VERSION = "1.30.0"
SETTINGS: dict[str, type[BaseSettings]] = {
    "api": ApiSettings,
    "submitter": SubmitterSettings,
    "poller": PollerSettings,
    "notifier": NotifierSettings,
}
SERVICES = sorted(SETTINGS)
PUBLIC = ("api", "notifier")
WORKERS = ("submitter", "poller")
CONFIG_MAP = "reelflow-config"
#: ingress-nginx's upstream-keepalive-timeout (its controller ConfigMap's default), seconds
INGRESS_NGINX_UPSTREAM_KEEPALIVE_S = 60
SECRET = "reelflow-secrets"
EXAMPLE_SECRET = K8S / "overlays" / "dev" / "secret.example.yaml"
#: the Runware simulator the dev overlay runs in place of Runware
SIMULATOR = "reelflow-runware-sim"
ADMIN_JOB = K8S / "examples" / "admin-job.yaml"
LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
)
# What each service needs from the Secret, by the settings it reads.
STORAGE_SECRETS = {"video_url_secret", "s3_access_key_id", "s3_secret_access_key"}
SECRET_SETTINGS = {
    "api": {"amqp_url", "mongo_url", "webhook_secret", *STORAGE_SECRETS},
    "submitter": {"amqp_url", "mongo_url", "runware_api_key", "webhook_secret"},
    "poller": {"amqp_url", "mongo_url", "runware_api_key", *STORAGE_SECRETS},
    "notifier": {"amqp_url", "mongo_url", "video_url_secret"},
}


# --- rendering and validating ----------------------------------------------------------


@cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    """The overlay as kustomize builds it."""
    return render(K8S / "overlays" / overlay)


def render(directory: Path) -> tuple[dict[str, Any], ...]:
    """A kustomization directory as kustomize builds it."""
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with its built-in kustomize) is needed to render deploy/k8s"
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def objects(kind: str, overlay: str = "prod") -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in rendered(overlay) if doc["kind"] == kind}


def deployment(name: str, overlay: str = "prod") -> dict[str, Any]:
    return objects("Deployment", overlay)[f"reelflow-{name}"]


def pod_spec(name: str, overlay: str = "prod") -> dict[str, Any]:
    return cast(dict[str, Any], deployment(name, overlay)["spec"]["template"]["spec"])


def container(name: str, overlay: str = "prod") -> dict[str, Any]:
    containers = pod_spec(name, overlay)["containers"]
    assert len(containers) == 1
    return cast(dict[str, Any], containers[0])


def pod_labels(name: str) -> dict[str, str]:
    return cast(dict[str, str], deployment(name)["spec"]["template"]["metadata"]["labels"])


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


def example_secret() -> dict[str, Any]:
    return cast(dict[str, Any], yaml.safe_load(EXAMPLE_SECRET.read_text()))


def admin_job() -> dict[str, Any]:
    return cast(dict[str, Any], yaml.safe_load(ADMIN_JOB.read_text()))


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels and In-expressions) selects ``labels``."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", "only In is read here"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


# --- schemas ---------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_is_valid_against_the_kubernetes_schemas(overlay: str) -> None:
    assert rendered(overlay)
    for doc in rendered(overlay):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_examples_are_valid_against_the_kubernetes_schemas() -> None:
    for doc in (admin_job(), example_secret()):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validation_would_notice_a_broken_manifest() -> None:
    broken = copy.deepcopy(deployment("api"))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSecond"] = 5
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    broken = copy.deepcopy(deployment("api"))
    broken["spec"]["revisionHistoryLimit"] = "five"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


# --- overlays --------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_puts_everything_in_its_own_namespace(overlay: str) -> None:
    namespace = NAMESPACES[overlay]
    assert set(objects("Namespace", overlay)) == {namespace}
    for doc in rendered(overlay):
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace, doc["metadata"]["name"]


def test_production_references_the_secret_and_never_defines_it() -> None:
    # Applying placeholder values would overwrite the real ones.
    assert not objects("Secret", "prod")
    assert {SECRET} == {
        entry["valueFrom"]["secretKeyRef"]["name"]
        for name in SERVICES
        for entry in container(name).get("env", [])
        if "valueFrom" in entry
    }


def test_dev_brings_the_example_secret_with_every_key_the_services_read() -> None:
    (secret,) = objects("Secret", "dev").values()
    assert secret["metadata"]["name"] == SECRET
    assert all("dev" in value for value in secret["stringData"].values())  # never real
    wanted = {
        entry["valueFrom"]["secretKeyRef"]["key"]
        for name in SERVICES
        for entry in container(name, "dev").get("env", [])
        if "valueFrom" in entry
    }
    assert wanted == set(secret["stringData"])


def test_dev_reaches_a_broker_and_database_outside_its_default_deny_namespace() -> None:
    # Nothing here runs RabbitMQ or MongoDB: the example names Services in a namespace of
    # their own, as the README says, where reelflow-dev's default-deny does not drop
    # their traffic; the services' egress to their ports goes to any namespace.
    urls = example_secret()["stringData"]
    hosts = {URL(urls[key]).host for key in ("amqp-url", "mongo-url")}
    namespaces = {host.split(".")[1] for host in hosts if host}
    assert len(hosts) == 2
    assert namespaces == {"reelflow-dev-deps"}
    assert NAMESPACES["dev"] not in namespaces
    open_egress = [
        rule
        for policy in objects("NetworkPolicy", "dev").values()
        for rule in policy["spec"].get("egress", [])
        if "to" not in rule
    ]
    ports = {port["port"] for rule in open_egress for port in rule["ports"]}
    assert {5672, 27017} <= ports
    readme = (ROOT / "README.md").read_text()
    assert "`reelflow-dev-deps`" in readme


def test_the_secret_recipes_create_every_key_the_deployments_read() -> None:
    # The production overlay's comment and the README each show how to create the Secret.
    wanted = {
        entry["valueFrom"]["secretKeyRef"]["key"]
        for name in SERVICES
        for entry in container(name).get("env", [])
        if "valueFrom" in entry
    }
    for recipe in (K8S / "overlays" / "prod" / "kustomization.yaml", ROOT / "README.md"):
        created = re.findall(r"--from-literal=([a-z0-9-]+)=", recipe.read_text())
        assert sorted(created) == sorted(wanted), recipe.name


def test_the_tls_secret_the_ingresses_serve_is_created_by_the_recipes() -> None:
    # Nothing in the manifests creates it: the README and the overlay must say how.
    (secret,) = {
        tls["secretName"]
        for ingress in objects("Ingress").values()
        for tls in ingress["spec"]["tls"]
    }
    assert secret not in objects("Secret")
    for recipe in (
        K8S / "overlays" / "prod" / "kustomization.yaml",
        ROOT / "README.md",
        ROOT / "docs" / "OPERATIONS.md",
    ):
        created = re.findall(
            r"kubectl -n reelflow create secret tls ([a-z0-9-]+) ", recipe.read_text()
        )
        assert created, recipe.name
        assert set(created) == {secret}, recipe.name


def test_the_config_maps_pointers_to_the_secret_lead_to_files() -> None:
    comment = (K8S / "base" / "configmap.yaml").read_text()
    pointers = re.findall(r"\S+\.yaml", comment.split("\napiVersion:")[0])
    assert pointers
    for pointer in pointers:
        assert (K8S / "base" / pointer).resolve().is_file(), pointer


def test_dev_works_with_its_example_keys_the_simulator_for_runware_and_no_bucket() -> None:
    data = objects("ConfigMap", "dev")[CONFIG_MAP]["data"]
    (sim_port,) = objects("Service", "dev")[SIMULATOR]["spec"]["ports"]
    assert data["REELFLOW_RUNWARE_BASE_URL"] == f"http://{SIMULATOR}:{sim_port['port']}"
    (api_port,) = objects("Service", "dev")["reelflow-api"]["spec"]["ports"]
    assert data["REELFLOW_PUBLIC_BASE_URL"] == f"http://reelflow-api:{api_port['port']}"
    assert "REELFLOW_PUBLIC_WS_URL" not in data  # the notifier on the dashboard's host
    # The example's bucket keys open no bucket: copies are off, and nothing names one.
    assert data["REELFLOW_STORAGE_BACKEND"] == "none"
    assert not [key for key in data if key.startswith("REELFLOW_S3_")]
    assert "https://" not in "".join(data.values())  # nothing outside the cluster
    # The simulator accepts the key the workers send.
    (sim,) = objects("Deployment", "dev")[SIMULATOR]["spec"]["template"]["spec"]["containers"]
    keys = {entry["name"]: entry.get("valueFrom", {}) for entry in sim["env"]}
    assert keys["RUNWARE_SIM_API_KEYS"] == {
        "secretKeyRef": {"name": SECRET, "key": "runware-api-key"}
    }
    assert [port["containerPort"] for port in sim["ports"]] == [8090]
    assert sim["command"][-2:] == ["--port", "8090"]


def test_dev_lets_the_workers_and_admin_reach_the_simulator_and_it_the_api() -> None:
    policies = [policy["spec"] for policy in objects("NetworkPolicy", "dev").values()]
    sim_labels = objects("Deployment", "dev")[SIMULATOR]["spec"]["template"]["metadata"]["labels"]
    api_labels = deployment("api", "dev")["spec"]["template"]["metadata"]["labels"]

    def allowed(source: dict[str, str], target: dict[str, str], port: int | str) -> bool:
        """Whether ``source`` may send to ``target`` on ``port``: an egress and an ingress rule."""
        egress = any(
            selects(spec["podSelector"], source)
            and any(
                selects(peer["podSelector"], target)
                and {"protocol": "TCP", "port": port} in rule["ports"]
                for rule in spec.get("egress", [])
                for peer in rule.get("to", [])
                if "podSelector" in peer
            )
            for spec in policies
        )
        ingress = any(
            selects(spec["podSelector"], target)
            and any(
                selects(peer["podSelector"], source)
                for rule in spec.get("ingress", [])
                for peer in rule["from"]
                if "podSelector" in peer
            )
            for spec in policies
        )
        return egress and ingress

    admin = admin_job()["spec"]["template"]["metadata"]["labels"]
    for source in (*[pod_labels(name) for name in WORKERS], admin):
        assert allowed(source, sim_labels, 8090), source["app.kubernetes.io/name"]
    assert not allowed(api_labels, sim_labels, 8090)
    assert allowed(sim_labels, api_labels, 8000)


def test_production_images_are_pinned_in_a_registry_and_dev_uses_local_builds() -> None:
    for name in SERVICES:
        image = container(name)["image"]
        assert image == f"registry.example.com/reelflow/reelflow-{name}:0.1.0"
        assert container(name, "dev")["image"] == f"reelflow-{name}:dev"  # built with SERVICE=


# --- deployments -----------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_there_is_one_deployment_service_budget_and_autoscaler_per_service(overlay: str) -> None:
    expected = {f"reelflow-{name}" for name in SERVICES}
    # Submitter and poller take no traffic; their Services are for metrics scraping.
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"):
        extra = {SIMULATOR} if overlay == "dev" and kind in ("Deployment", "Service") else set()
        assert set(objects(kind, overlay)) == expected | extra, kind


@pytest.mark.parametrize("name", SERVICES)
def test_deployment_pods_and_selector_carry_the_recommended_labels(name: str) -> None:
    spec = deployment(name)["spec"]
    for labels in (deployment(name)["metadata"]["labels"], pod_labels(name)):
        for label in LABELS:
            assert labels.get(label), f"{name}: {label}"
        assert labels["app.kubernetes.io/name"] == f"reelflow-{name}"
        assert labels["app.kubernetes.io/part-of"] == "reelflow"
    assert selects(spec["selector"], pod_labels(name))
    assert (
        objects("Service")[f"reelflow-{name}"]["spec"]["selector"]
        == spec["selector"]["matchLabels"]
    )


@pytest.mark.parametrize("name", SERVICES)
def test_the_autoscaler_owns_the_replica_count_and_the_budget_guards_the_pods(name: str) -> None:
    assert "replicas" not in deployment(name)["spec"]  # an apply would reset the HPA's count
    hpa = objects("HorizontalPodAutoscaler")[f"reelflow-{name}"]["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": f"reelflow-{name}",
    }
    assert 2 <= hpa["minReplicas"] < hpa["maxReplicas"]  # a rollout or a lost node keeps one
    assert objects("HorizontalPodAutoscaler", "dev")[f"reelflow-{name}"]["spec"]["minReplicas"] == 1
    # CPU utilisation is measured against the request, so there must be one.
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    assert container(name)["resources"]["requests"]["cpu"]
    budget = objects("PodDisruptionBudget")[f"reelflow-{name}"]["spec"]
    assert selects(budget["selector"], pod_labels(name))
    assert budget["maxUnavailable"] == 1
    # Every replica unready (RabbitMQ or MongoDB down) must not block a node drain.
    assert budget["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


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
    for overlay in OVERLAYS:
        keys = set(objects("ConfigMap", overlay)[CONFIG_MAP]["data"])
        assert keys
        assert not keys - known, f"no service reads {sorted(keys - known)}"
    assert objects("ConfigMap", "dev")[CONFIG_MAP]["data"]["REELFLOW_LOG_LEVEL"] == "DEBUG"


def test_the_config_map_has_the_budgets_fallback_price_to_edit_at_its_default() -> None:
    # The go-live checklist says to set it in the ConfigMap: there is a line to edit.
    (variable,) = [
        v for v, field in env_names(ApiSettings).items() if field == "cost_fallback_usd_per_s"
    ]
    default = ApiSettings.model_fields["cost_fallback_usd_per_s"].default
    for overlay in OVERLAYS:
        assert float(objects("ConfigMap", overlay)[CONFIG_MAP]["data"][variable]) == default
    checklist = (ROOT / "docs" / "OPERATIONS.md").read_text().split("## Go-live checklist")[1]
    assert f"`{variable}`" in checklist
    assert "deploy/k8s/base/configmap.yaml" in checklist


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
    example_keys = set(example_secret()["stringData"])
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
    grace = pod_spec(name)["terminationGracePeriodSeconds"]
    # The api then gives the creates and retries whose requests were cancelled their bound.
    after_drain = OUTLIVING_DRAIN_S if name == "api" else 0.0
    assert grace > pre_stop_seconds(name) + drain_timeout_s() + after_drain


def test_the_notifiers_grace_period_outlasts_its_sockets_and_connections_closing() -> None:
    sockets_s = notifier_server_config(NotifierSettings()).timeout_graceful_shutdown
    assert sockets_s is not None
    broker_s = inspect.signature(amqp_connection).parameters["close_timeout_s"].default
    # Its channel's close has the same bound as its connection's; MongoDB's is shorter.
    closing = pre_stop_seconds("notifier") + sockets_s + 2 * broker_s + MONGO_CLOSE_TIMEOUT_S
    assert pod_spec("notifier")["terminationGracePeriodSeconds"] > closing


def test_the_api_has_as_long_to_stop_as_the_workers() -> None:
    # Its drain is the workers' and more (the creates it cancelled, then closing connections).
    grace = {name: pod_spec(name)["terminationGracePeriodSeconds"] for name in ("api", *WORKERS)}
    assert grace["api"] >= max(grace[name] for name in WORKERS), grace


@pytest.mark.parametrize("name", SERVICES)
def test_replicas_spread_over_nodes_without_blocking_scheduling(name: str) -> None:
    (spread,) = pod_spec(name)["topologySpreadConstraints"]
    assert spread["maxSkew"] == 1
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"
    assert selects(spread["labelSelector"], pod_labels(name))
    others = [pod_labels(other) for other in SERVICES if other != name]
    assert not any(selects(spread["labelSelector"], labels) for labels in others)


@pytest.mark.parametrize("name", SERVICES)
def test_pods_get_no_service_link_variables(name: str) -> None:
    # Settings come only from REELFLOW_* variables; FOO_SERVICE_HOST for every Service is noise.
    assert pod_spec(name)["enableServiceLinks"] is False


@pytest.mark.parametrize("name", SERVICES)
def test_every_container_has_requests_and_limits(name: str) -> None:
    resources = container(name)["resources"]
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[bound]), f"{name}: {bound}"


def quantity(value: str | int) -> float:
    """A Kubernetes resource quantity (``250m``, ``640Mi``, ``1Gi``, ``"1"``) as a number."""
    suffixes = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    text = str(value)
    for suffix, factor in suffixes.items():
        if text.endswith(suffix):
            return float(text.removesuffix(suffix)) * factor
    return float(text)


def benchmarked_notifier_peak_mb() -> str:
    """The notifier's peak RSS with 10,000 WebSockets in MB, as docs/BENCHMARKS.md records it."""
    benchmarks = (ROOT / "docs" / "BENCHMARKS.md").read_text()
    found = re.search(r"\| notifier peak RSS with 10000 WebSockets \| ([0-9.]+) MB \|", benchmarks)
    assert found, "docs/BENCHMARKS.md no longer records the notifier's peak RSS"
    return found[1]


def benchmarked_notifier_peak_bytes() -> float:
    return float(benchmarked_notifier_peak_mb()) * 1e6


def test_the_notifier_holds_the_benchmarked_10000_sockets_within_its_memory() -> None:
    # The API's contract: 10,000 WebSockets per replica in <= 1 GB (10^9 bytes).
    resources = container("notifier")["resources"]
    assert quantity(resources["requests"]["memory"]) > benchmarked_notifier_peak_bytes() * 1.2
    assert quantity(resources["limits"]["memory"]) >= 1e9


def test_the_notifiers_sizing_quotes_the_recorded_peak() -> None:
    # The manifest's comment and OPERATIONS size replicas by it: a new recorded run's
    # figure goes there too.
    peak = f"{benchmarked_notifier_peak_mb()} MB"
    assert peak in (K8S / "base" / "notifier.yaml").read_text()
    sizing = (ROOT / "docs" / "OPERATIONS.md").read_text().split("## Sizing the notifier")[1]
    assert peak in sizing.split("\n## ")[0]


@pytest.mark.parametrize("name", SERVICES)
def test_cpu_requests_leave_the_autoscaler_room_and_limits_stay_at_a_core(name: str) -> None:
    # The autoscalers aim at 70% of the request: at 100m (70m of CPU) they sat at maxReplicas.
    resources = container(name)["resources"]
    assert 0.2 <= quantity(resources["requests"]["cpu"]) <= quantity(resources["limits"]["cpu"])
    assert quantity(resources["limits"]["cpu"]) <= 1
    assert quantity(resources["requests"]["memory"]) <= quantity(resources["limits"]["memory"])


@pytest.mark.parametrize("name", SERVICES)
def test_pods_run_as_the_images_non_root_user_on_a_read_only_root(name: str) -> None:
    pod = pod_spec(name)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # USER in deploy/docker/Dockerfile
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    security = container(name)["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    # The one writable place, for the libraries that want a temporary file.
    (mount,) = container(name)["volumeMounts"]
    assert mount["mountPath"] == "/tmp"  # noqa: S108 (a path in the pod, not here)
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert "emptyDir" in volumes[mount["name"]]


# --- network policy --------------------------------------------------------------------


def policies_selecting(name: str) -> list[dict[str, Any]]:
    return policies_selecting_labels(pod_labels(name))


def policies_selecting_labels(labels: dict[str, str]) -> list[dict[str, Any]]:
    return [
        policy["spec"]
        for policy in objects("NetworkPolicy").values()
        if selects(policy["spec"]["podSelector"], labels)
    ]


def egress_ports(specs: list[dict[str, Any]]) -> set[tuple[str, int]]:
    return {
        (port["protocol"], port["port"])
        for spec in specs
        for rule in spec.get("egress", [])
        for port in rule["ports"]
    }


def test_everything_is_denied_unless_a_policy_allows_it() -> None:
    deny = objects("NetworkPolicy")["reelflow-default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


@pytest.mark.parametrize("name", SERVICES)
def test_only_the_api_and_the_websocket_are_reachable_from_the_ingress(name: str) -> None:
    sources = {
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for spec in policies_selecting(name)
        for rule in spec.get("ingress", [])
        for peer in rule["from"]
    }
    expected = {"ingress-nginx", "monitoring"} if name in PUBLIC else {"monitoring"}
    assert sources == expected
    for spec in policies_selecting(name):
        for rule in spec.get("ingress", []):
            assert rule["ports"] == [{"protocol": "TCP", "port": "http"}]


@pytest.mark.parametrize("name", PUBLIC)
def test_forwarded_headers_are_believed_only_from_the_ingress_pods_network(name: str) -> None:
    # Behind the ingress every request's peer is an ingress pod: without this, logs and
    # traces show its address and scheme, not the client's.
    (variable,) = [
        v for v, field in env_names(SETTINGS[name]).items() if field == "forwarded_allow_ips"
    ]
    site = yaml.safe_load((K8S / "overlays" / "prod" / "site.yaml").read_text())["data"]
    for overlay in OVERLAYS:
        value = objects("ConfigMap", overlay)[CONFIG_MAP]["data"][variable]
        # Not "*": the client's address would be the first X-Forwarded-For entry, which
        # the client writes itself when the ingress passes its header on.
        assert value != "*", overlay
        read = SETTINGS[name](forwarded_allow_ips=value).model_dump()["forwarded_allow_ips"]
        assert read == value, overlay  # valid, and as uvicorn reads it
    assert objects("ConfigMap")[CONFIG_MAP]["data"][variable] == site["ingress-pod-cidr"]
    # Only the ingress controller's pods can send them such headers besides Prometheus.
    sources = {
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for spec in policies_selecting(name)
        for rule in spec.get("ingress", [])
        for peer in rule["from"]
    }
    assert sources == {"ingress-nginx", "monitoring"}  # monitoring: Prometheus scrapes


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_reaches_dns_the_broker_and_the_database_and_only_workers_and_api_https(
    name: str,
) -> None:
    ports = egress_ports(policies_selecting(name))
    expected = {("UDP", 53), ("TCP", 53), ("TCP", 5671), ("TCP", 5672), ("TCP", 27017)}
    expected.add(("TCP", 4318))  # the OpenTelemetry collector (OTLP/HTTP), in "monitoring"
    if name in WORKERS:
        expected.add(("TCP", 443))  # Runware, and the bucket (the poller's copies)
    if name == "api":
        # It presigns the bucket's URLs: with no S3 keys in the Secret, the default AWS
        # credential chain fetches credentials (IRSA: from STS, over HTTPS).
        assert "s3_access_key_id" in SECRET_SETTINGS[name]
        expected.add(("TCP", 443))
    assert ports == expected


#: NodeLocal DNSCache's default address, where pods of clusters that run it send lookups
NODE_LOCAL_DNS = "169.254.20.10/32"


@pytest.mark.parametrize("name", SERVICES)
def test_dns_lookups_reach_kube_dns_and_a_node_local_dns_cache(name: str) -> None:
    dns = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    peers = [
        peer
        for spec in policies_selecting(name)
        for rule in spec.get("egress", [])
        if rule["ports"] == dns
        for peer in rule.get("to", [])
    ]
    assert {"ipBlock": {"cidr": NODE_LOCAL_DNS}} in peers
    kube_dns = [peer for peer in peers if "podSelector" in peer]
    assert [peer["podSelector"] for peer in kube_dns] == [{"matchLabels": {"k8s-app": "kube-dns"}}]


def test_the_admin_job_reaches_what_its_commands_need_runware_included() -> None:
    # reconcile asks Runware and assets copy videos to the bucket, both over HTTPS.
    labels = admin_job()["spec"]["template"]["metadata"]["labels"]
    specs = policies_selecting_labels(labels)
    assert egress_ports(specs) == egress_ports(policies_selecting("poller"))
    assert ("TCP", 443) in egress_ports(specs)


def test_the_ingress_policy_names_the_ingress_controllers_namespace() -> None:
    assert all(
        ingress["spec"]["ingressClassName"] == "nginx" for ingress in objects("Ingress").values()
    )


def policy_peer_namespaces(docs: tuple[dict[str, Any], ...]) -> dict[str, set[str]]:
    """Each NetworkPolicy's name to the namespaces its rules' peers select by name."""
    return {
        doc["metadata"]["name"]: {
            peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            for direction in ("ingress", "egress")
            for rule in doc["spec"].get(direction, [])
            for peer in rule.get("from", rule.get("to", []))
            if "namespaceSelector" in peer
        }
        for doc in docs
        if doc["kind"] == "NetworkPolicy"
    }


def test_production_takes_the_ingress_and_monitoring_namespaces_from_site_yaml(
    tmp_path: Path,
) -> None:
    # With the ingress controller or Prometheus in another namespace than the policies
    # name, every request from outside is dropped, or nothing is scraped: site.yaml,
    # the file an operator edits anyway, decides them.
    site = yaml.safe_load((K8S / "overlays" / "prod" / "site.yaml").read_text())["data"]
    assert policy_peer_namespaces(rendered("prod")) == {
        "reelflow-default-deny": set(),
        "reelflow-from-ingress": {site["ingress-namespace"]},
        "reelflow-from-monitoring": {site["monitoring-namespace"]},
        "reelflow-to-dns-broker-and-database": {"kube-system"},
        "reelflow-to-otel-collector": {site["monitoring-namespace"]},
        "reelflow-workers-to-runware": set(),
        "reelflow-api-to-aws-credentials": set(),
    }
    copy_of_k8s = tmp_path / "k8s"
    shutil.copytree(K8S, copy_of_k8s)
    site_file = copy_of_k8s / "overlays" / "prod" / "site.yaml"
    text = site_file.read_text()
    for key, value in (("ingress-namespace", "edge"), ("monitoring-namespace", "observe")):
        text, replaced = re.subn(rf"^  {key}: .*$", f"  {key}: {value}", text, flags=re.M)
        assert replaced == 1, key
    site_file.write_text(text)
    peers = policy_peer_namespaces(render(copy_of_k8s / "overlays" / "prod"))
    assert peers["reelflow-from-ingress"] == {"edge"}
    assert peers["reelflow-from-monitoring"] == {"observe"}
    assert peers["reelflow-to-otel-collector"] == {"observe"}
    # The go-live checklist and the README's deploy steps send operators there.
    for doc in (ROOT / "README.md", ROOT / "docs" / "OPERATIONS.md"):
        assert "ingress-namespace" in doc.read_text(), doc.name
        assert "monitoring-namespace" in doc.read_text(), doc.name


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


def ingress_match(request_path: str) -> tuple[str, str] | None:
    """The Ingress path and the Service a request for ``request_path`` goes to, as
    Kubernetes matches them: an Exact path, else the longest Prefix by whole segments
    (``/docs`` does not match ``/docs-assets``)."""
    found: tuple[int, str, str] | None = None
    segments = [part for part in request_path.split("/") if part]
    for ingress in objects("Ingress").values():
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                service = path["backend"]["service"]["name"]
                if path["pathType"] == "Exact":
                    if request_path == path["path"]:
                        return path["path"], service
                    continue
                prefix = [part for part in path["path"].split("/") if part]
                if segments[: len(prefix)] == prefix and (found is None or len(prefix) > found[0]):
                    found = (len(prefix), path["path"], service)
    return None if found is None else (found[1], found[2])


def api_public_requests() -> list[str]:
    """A request path for each route the api serves, but the in-cluster ones (probes,
    metrics): its path parameters filled in, a file under each mounted folder."""
    requests = []
    for route in flattened_routes(create_app(ApiSettings()).routes):
        path = str(getattr(route, "path"))  # noqa: B009 (every kind of route has one, untyped)
        if path in OPS_PATHS:
            continue
        sample = re.sub(r"\{[^}]*\}", "x", path)
        requests.append(f"{sample}/x" if isinstance(route, Mount) else sample)
    return requests


def test_ingress_sends_every_public_path_of_the_api_to_it_and_no_in_cluster_one() -> None:
    requests = api_public_requests()
    # The ones the README and docs/API.md send people to are among them.
    assert {"/", "/static/x", "/v1/projects", "/docs", "/docs-assets/x", "/openapi.json"} <= set(
        requests
    )
    for request in requests:
        assert (ingress_match(request) or ("", ""))[1] == "reelflow-api", request
    for request in OPS_PATHS:
        assert ingress_match(request) is None, request


def test_ingress_sends_the_api_only_paths_it_serves() -> None:
    used = {ingress_match(request) for request in api_public_requests()}
    for path, (service, _annotations) in ingress_routes().items():
        if service == "reelflow-api":
            assert (path, service) in used, f"{path} leads to nothing the api serves"
    # The dashboard's page only: any other path would reach the api's 404.
    assert ingress_match("/") == ("/", "reelflow-api")
    assert ingress_match("/anything") is None


def test_ingress_timeouts_fit_long_polls_and_websockets() -> None:
    routes = ingress_routes()
    api = routes["/v1"][1]
    max_wait = ApiSettings.model_fields["max_wait_s"].default
    assert float(api["nginx.ingress.kubernetes.io/proxy-read-timeout"]) > max_wait
    ws = routes["/v1/ws"][1]
    ping = NotifierSettings.model_fields["ws_ping_interval_s"].default
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert float(ws[f"nginx.ingress.kubernetes.io/{timeout}"]) >= 3600 > ping


def test_the_api_keeps_idle_connections_longer_than_the_ingress_reuses_them() -> None:
    # nginx reuses an idle connection to the api for up to upstream-keepalive-timeout; one
    # the api closes first meets a request as it closes: a 502 (nginx retries no POST).
    (variable,) = [
        name
        for name, field in env_names(ApiSettings).items()
        if field == "http_keepalive_timeout_s"
    ]
    for overlay in OVERLAYS:
        data = objects("ConfigMap", overlay)[CONFIG_MAP]["data"]
        assert int(data[variable]) > INGRESS_NGINX_UPSTREAM_KEEPALIVE_S, overlay


def test_public_base_url_is_the_ingress_host() -> None:
    ingresses = objects("Ingress").values()
    hosts = {rule["host"] for ingress in ingresses for rule in ingress["spec"]["rules"]}
    tls_hosts = {
        host for ingress in ingresses for tls in ingress["spec"]["tls"] for host in tls["hosts"]
    }
    data = objects("ConfigMap")[CONFIG_MAP]["data"]
    assert tls_hosts == hosts
    assert hosts == {data["REELFLOW_PUBLIC_BASE_URL"].removeprefix("https://")}
    # The dashboard's browsers reach the notifier through the same Ingress.
    assert hosts == {data["REELFLOW_PUBLIC_WS_URL"].removeprefix("wss://")}
    # The signed video links too.
    assert hosts == {data["REELFLOW_VIDEO_PUBLIC_URL"].removeprefix("https://")}


def test_production_takes_its_domain_and_bucket_from_the_one_file_the_readme_names() -> None:
    site_file = K8S / "overlays" / "prod" / "site.yaml"
    site = yaml.safe_load(site_file.read_text())["data"]
    base = yaml.safe_load((K8S / "base" / "configmap.yaml").read_text())["data"]
    ingresses = objects("Ingress").values()
    data = objects("ConfigMap")[CONFIG_MAP]["data"]

    assert {rule["host"] for ingress in ingresses for rule in ingress["spec"]["rules"]} == {
        site["host"]
    }
    assert data["REELFLOW_PUBLIC_BASE_URL"] == f"https://{site['host']}"
    assert (data["REELFLOW_S3_BUCKET"], data["REELFLOW_S3_REGION"]) == (
        site["s3-bucket"],
        site["s3-region"],
    )
    # Not the base's placeholders, and the site's own object is never applied.
    assert site["host"] not in base["REELFLOW_PUBLIC_BASE_URL"]
    assert site["s3-bucket"] != base["REELFLOW_S3_BUCKET"]
    assert "reelflow-site" not in objects("ConfigMap")
    assert "deploy/k8s/overlays/prod/site.yaml" in (ROOT / "README.md").read_text()


# --- the docs' kubectl commands ----------------------------------------------------


def docs_kubectl_commands() -> list[list[str]]:
    """Every ``kubectl`` command line of the README's and OPERATIONS' sh blocks, joined."""
    docs = (ROOT / "README.md").read_text() + (ROOT / "docs" / "OPERATIONS.md").read_text()
    found = []
    for block in re.findall(r"```sh\n(.*?)```", docs, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for command in [line, *re.findall(r"\$\(([^()]*)\)", line)]:
                if command.startswith("kubectl "):
                    found.append(shlex.split(command, comments=True))
    return found


def test_the_docs_kubectl_commands_name_what_the_manifests_define() -> None:
    commands = docs_kubectl_commands()
    deployments = objects("Deployment")
    images_set = 0
    assert any("rollout" in command for command in commands)
    for command in commands:
        if "-n" in command:
            assert command[command.index("-n") + 1] == NAMESPACES["prod"], command
        for word in command:
            kind, _, name = word.partition("/")
            if kind in ("deployment", "deploy") and "/" not in name:  # not a path
                assert name in deployments, word
        if command[3:5] == ["set", "image"]:
            (target,) = deployments[command[5].partition("/")[2]]["spec"]["template"]["spec"][
                "containers"
            ]
            name, _, image = command[6].partition("=")
            assert name == target["name"], command
            assert image.rpartition(":")[0] == target["image"].rpartition(":")[0], command
            images_set += 1
        if "configmap" in command:
            assert command[command.index("configmap") + 1] == CONFIG_MAP, command
    assert images_set == len(SERVICES)  # the upgrade rolls each Deployment on its own


# --- reelflow-admin --------------------------------------------------------------------


def test_the_admin_job_runs_reelflow_admin_with_the_services_settings() -> None:
    spec = admin_job()["spec"]["template"]["spec"]
    (job,) = spec["containers"]
    assert job["command"] == ["reelflow-admin"]
    assert job["image"] == container("api")["image"]  # any service image has the command
    assert {"configMapRef": {"name": CONFIG_MAP}} in job["envFrom"]
    names = env_names(AdminSettings)
    refs = {names[entry["name"]]: entry["valueFrom"]["secretKeyRef"] for entry in job["env"]}
    assert refs == {
        "amqp_url": {"name": SECRET, "key": "amqp-url"},
        "mongo_url": {"name": SECRET, "key": "mongo-url"},
        "runware_api_key": {"name": SECRET, "key": "runware-api-key"},
        "video_url_secret": {"name": SECRET, "key": "video-url-secret"},
        "s3_access_key_id": {"name": SECRET, "key": "s3-access-key-id"},
        "s3_secret_access_key": {"name": SECRET, "key": "s3-secret-access-key"},
    }
    assert spec["securityContext"] == pod_spec("api")["securityContext"]
    assert job["securityContext"] == container("api")["securityContext"]
    assert spec["restartPolicy"] == "Never"
    assert admin_job()["spec"]["backoffLimit"] == 0


def test_the_admin_job_is_created_with_the_image_the_api_runs() -> None:
    # No overlay rewrites the example's image: its recipe puts the running api's in place
    # of the placeholder, and the placeholder is the one the recipe replaces.
    (job,) = admin_job()["spec"]["template"]["spec"]["containers"]
    text = ADMIN_JOB.read_text()
    recipe = re.search(r"sed \"s\|([^|]+)\|\$IMAGE\|\" deploy/k8s/examples/admin-job.yaml", text)
    assert recipe is not None
    assert recipe[1] == job["image"]
    assert "kubectl -n reelflow get deployment/reelflow-api -o jsonpath=" in text
    assert "'{.spec.template.spec.containers[0].image}'" in text
    assert len(pod_spec("api")["containers"]) == 1  # [0] in the jsonpath is the api


def test_the_readme_builds_and_pushes_the_images_the_prod_overlay_names() -> None:
    readme = (ROOT / "README.md").read_text()
    deploy = readme.split("### Deploy on Kubernetes")[1].split("\n### ")[0]
    for name in SERVICES:
        image = container(name)["image"]
        built = deploy.replace("$service", name)
        assert f"--build-arg SERVICE={name}" in built
        assert f"-t {image} ." in built, name
        assert f"docker push {image}" in built, name


def test_the_admin_job_never_creates_api_keys_into_its_pods_log() -> None:
    # A Job's stdout is its pod's log: a key printed there outlives the command.
    (job,) = admin_job()["spec"]["template"]["spec"]["containers"]
    assert job["args"][:2] != ["key", "create"]
    assert "Do NOT create API keys with this Job" in ADMIN_JOB.read_text()
    assert admin_job()["spec"]["template"]["spec"]["enableServiceLinks"] is False
