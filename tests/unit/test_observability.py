"""The alert rules and the Grafana dashboard in deploy/observability/ hold together.

Their structure is checked against a schema, every PromQL expression is parsed
(promql-parser, Prometheus' grammar), and every metric and label they name is
one the services register. ``promtool`` checks the rules too, and runs their
unit tests, where Debian's ``prometheus`` package provides it (``.ci/run``
installs it).
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import jsonschema
import promql_parser
import pytest
import yaml
from prometheus_client import REGISTRY

from reelflow_common.admin.cli import build_parser
from reelflow_common.topology import CHECK_CLIP, SUBMIT_CLIP
from reelflow_devtools.config_table import rows as setting_rows
from tests import ROOT

OBSERVABILITY = ROOT / "deploy" / "observability"
RULES = OBSERVABILITY / "alerts.yaml"
RULE_TESTS = OBSERVABILITY / "alerts.test.yaml"
DASHBOARD = OBSERVABILITY / "grafana-dashboard.json"
OPERATIONS = ROOT / "docs" / "OPERATIONS.md"
RUNBOOK = "Alerts: what to check and what to do"

#: the modules that define the services' metrics (each registers its own at import)
METRIC_MODULES = (
    "reelflow_common.metrics",
    "reelflow_api.middleware",
    "reelflow_api.telemetry",
    "reelflow_notifier.metrics",
    "reelflow_submitter.metrics",
    "reelflow_common.tracking.metrics",
)

#: each service's composition root: what its process imports
SERVICE_MODULES = {
    "api": "reelflow_api.main",
    "notifier": "reelflow_notifier.main",
    "submitter": "reelflow_submitter.main",
    "poller": "reelflow_poller.main",
}

#: series Prometheus itself writes for every target, with the target labels the rules use
PROMETHEUS_SERIES = {"up": frozenset({"job", "instance"})}

#: each service's Kubernetes Service: its scrape job's name (a ServiceMonitor's default)
K8S_BASE = ROOT / "deploy" / "k8s" / "base"

#: Grafana's interval variable, which Prometheus' grammar does not know
GRAFANA_VARIABLES = {"$__rate_interval": "5m"}

DURATION = r"^[0-9]+(ms|s|m|h|d|w|y)$"
RULES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["groups"],
    "additionalProperties": False,
    "properties": {
        "groups": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "rules"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "interval": {"type": "string", "pattern": DURATION},
                    "rules": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["alert", "expr", "labels", "annotations"],
                            "additionalProperties": False,
                            "properties": {
                                "alert": {"type": "string", "pattern": "^Reelflow[A-Za-z]+$"},
                                "expr": {"type": "string", "minLength": 1},
                                "for": {"type": "string", "pattern": DURATION},
                                "labels": {
                                    "type": "object",
                                    "required": ["severity"],
                                    "properties": {
                                        "severity": {"enum": ["critical", "warning", "info"]}
                                    },
                                },
                                "annotations": {
                                    "type": "object",
                                    "required": ["summary", "description"],
                                    "additionalProperties": {"type": "string", "minLength": 1},
                                },
                            },
                        },
                    },
                },
            },
        }
    },
}

DASHBOARD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["title", "uid", "schemaVersion", "panels", "templating"],
    "properties": {
        "uid": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,40}$"},
        "panels": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["id", "type", "title", "gridPos"],
                "properties": {
                    "type": {"enum": ["row", "timeseries", "stat"]},
                    "gridPos": {
                        "type": "object",
                        "required": ["h", "w", "x", "y"],
                        "properties": {
                            "w": {"type": "integer", "minimum": 1, "maximum": 24},
                            "x": {"type": "integer", "minimum": 0, "maximum": 23},
                        },
                    },
                    "targets": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["refId", "expr"],
                            "properties": {"expr": {"type": "string", "minLength": 1}},
                        },
                    },
                },
            },
        },
    },
}


def rules() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(RULES.read_text())
    return loaded


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def rule_expressions() -> list[tuple[str, str]]:
    return [(rule["alert"], rule["expr"]) for group in rules()["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[tuple[str, str]]:
    found = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            found.append((f"{panel['title']} {target['refId']}", expr))
    return found


def exported() -> dict[str, frozenset[str]]:
    """Every series name the services register, with the label names it may carry.

    From the registry's private name table: it is the only place that names a
    labelled metric before its first sample.
    """
    for module in METRIC_MODULES:
        importlib.import_module(module)
    series: dict[str, frozenset[str]] = {}
    for collector, names in REGISTRY._collector_to_names.items():
        labels = frozenset(getattr(collector, "_labelnames", ()))
        for name in names:
            if name.startswith("reelflow_"):
                series[name] = labels | {"le"} if name.endswith("_bucket") else labels
    return series


def selectors(node: Any) -> Iterator[Any]:
    """Every vector selector in a parsed PromQL expression."""
    if isinstance(node, promql_parser.VectorSelector):
        yield node
        return
    for attribute in ("lhs", "rhs", "expr", "vector_selector", "param"):
        child = getattr(node, attribute, None)
        if child is not None:
            yield from selectors(child)
    for arg in getattr(node, "args", None) or []:
        yield from selectors(arg)


def test_the_alert_rules_match_the_rule_file_schema() -> None:
    jsonschema.validate(rules(), RULES_SCHEMA)
    names = [name for name, _expr in rule_expressions()]
    assert len(names) == len(set(names)), "alert names repeat"


def test_the_alerts_the_issue_asks_for_are_there() -> None:
    by_name = dict(rule_expressions())
    for alert, metric in {
        "ReelflowDeadLetters": "reelflow_dead_letters",
        "ReelflowClipsStuckPastLease": "reelflow_projects_past_lease",
        "ReelflowRunwareErrorRate": "reelflow_runware_requests_total",
        "ReelflowConsumerLag": "reelflow_queue_ready_messages",
        "ReelflowWebSocketBacklog": "reelflow_ws_backlog_max_events",
        "ReelflowRunwareThrottling": "reelflow_runware_throttles_total",
        "ReelflowClipsFailing": "reelflow_clips_finished_total",
    }.items():
        assert metric in {s.name for s in selectors(promql_parser.parse(by_name[alert]))}


def service_names() -> set[str]:
    """The names of the Services deploy/k8s/base defines (one per reelflow service)."""
    return {
        doc["metadata"]["name"]
        for path in K8S_BASE.glob("*.yaml")
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc["kind"] == "Service"
    }


def matcher(expr: str, label: str) -> Any:
    (selector,) = selectors(promql_parser.parse(expr))
    (found,) = [m for m in selector.matchers.matchers if m.name == label]
    return found


def test_the_service_down_alert_watches_exactly_the_four_services_scrape_jobs() -> None:
    job = matcher(dict(rule_expressions())["ReelflowServiceDown"], "job")
    names = service_names()
    assert len(names) == 4
    matched = {name for name in names if re.fullmatch(job.value, name)}
    assert matched == names
    assert not re.fullmatch(job.value, "reelflow-runware-sim")


def test_each_service_has_an_absent_alert_on_a_metric_only_it_reports() -> None:
    by_name = dict(rule_expressions())
    series = exported()
    # The api's and the notifier's gauges carry no label: exported from the start.
    for alert, metric, package in (
        ("ReelflowApiAbsent", "reelflow_api_requests_in_flight", "reelflow_api."),
        ("ReelflowNotifierAbsent", "reelflow_ws_connections", "reelflow_notifier."),
    ):
        assert by_name[alert] == f"absent({metric})"
        assert series[metric] == frozenset()
        (collector,) = [c for c, names in REGISTRY._collector_to_names.items() if metric in names]
        homes = [
            module
            for module in METRIC_MODULES
            if any(value is collector for value in vars(importlib.import_module(module)).values())
        ]
        assert homes
        assert all(home.startswith(package) for home in homes), homes
    # The workers: the queue each reads from RabbitMQ, which no other service reports.
    for alert, queue in (
        ("ReelflowSubmitterAbsent", SUBMIT_CLIP),
        ("ReelflowPollerAbsent", CHECK_CLIP),
    ):
        assert matcher(by_name[alert], "queue").value == queue
        assert by_name[alert].startswith("absent(reelflow_queue_ready_messages{")


def registered_by(module: str) -> dict[str, list[dict[str, str]]]:
    """Each reelflow_ metric a fresh process importing ``module`` exports, with the label sets
    of its series (before any is set: what a healthy, idle replica shows)."""
    script = (
        "import importlib, json, sys\n"
        "from prometheus_client import REGISTRY\n"
        f"importlib.import_module({module!r})\n"
        "found = {m.name: [s.labels for s in m.samples] for m in REGISTRY.collect()"
        " if m.name.startswith('reelflow_')}\n"
        "print(json.dumps(found))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    found: dict[str, list[dict[str, str]]] = json.loads(done.stdout)
    return found


@pytest.fixture(scope="module")
def exported_by_service() -> dict[str, dict[str, list[dict[str, str]]]]:
    return {service: registered_by(module) for service, module in SERVICE_MODULES.items()}


def test_a_metric_only_one_service_sets_is_exported_by_that_service_only(
    exported_by_service: dict[str, dict[str, list[dict[str, str]]]],
) -> None:
    # A gauge every service exports at 0 while one sets it reads as that many replicas at 0.
    for metric, owner in {
        "reelflow_projects_past_lease": "poller",
        "reelflow_clips_reconciled": "poller",
        "reelflow_submit_lanes": "submitter",
        "reelflow_lane_ready_messages_max": "submitter",
        "reelflow_runware_throttles": "submitter",
        "reelflow_ws_refusals": "notifier",
    }.items():
        exporters = {service for service, found in exported_by_service.items() if metric in found}
        assert exporters == {owner}, metric


def test_counters_an_alert_or_panel_reads_are_exported_at_zero_before_their_first_event(
    exported_by_service: dict[str, dict[str, list[dict[str, str]]]],
) -> None:
    # Without a series, a panel reads "No data" and rate() has nothing to be 0 of.
    for service, metric, labels in (
        ("poller", "reelflow_clips_reconciled_total", {"action": "recorded"}),
        ("poller", "reelflow_clips_reconciled_total", {"action": "submit_rearmed"}),
        ("submitter", "reelflow_runware_throttles_total", {"source": "local"}),
        ("submitter", "reelflow_runware_throttles_total", {"source": "signal"}),
        ("notifier", "reelflow_ws_refusals_total", {"limit": "connections"}),
        ("notifier", "reelflow_ws_refusals_total", {"limit": "key_watches"}),
        ("notifier", "reelflow_ws_snapshots_total", {"reason": "slow_reader"}),
        ("notifier", "reelflow_fanout_events_total", {"outcome": "dropped"}),
        ("poller", "reelflow_clips_finished_total", {"status": "failed", "code": "other"}),
        ("submitter", "reelflow_clips_finished_total", {"status": "success", "code": ""}),
        ("api", "reelflow_clips_finished_total", {"status": "cancelled", "code": ""}),
    ):
        family = metric.removesuffix("_total")
        assert labels in exported_by_service[service].get(family, []), (service, metric, labels)


def test_the_label_values_started_at_zero_are_every_one_the_code_counts() -> None:
    # The notifier's counters are incremented with literal label values: each must be one
    # started at 0 (a new limit or reason added without it would read "No data").
    from reelflow_notifier.metrics import REFUSAL_LIMITS, SNAPSHOT_REASONS

    notifier = ROOT / "services" / "notifier" / "src" / "reelflow_notifier"
    text = "\n".join(path.read_text() for path in notifier.glob("*.py"))
    assert set(re.findall(r'WS_REFUSALS_TOTAL\.labels\(limit="(\w+)"\)', text)) == set(
        REFUSAL_LIMITS
    )
    reasons = set(re.findall(r'_snapshot\("(\w+)"\)|reason="(\w+)"', text))
    assert {value for pair in reasons for value in pair if value} == set(SNAPSHOT_REASONS)


def test_the_dashboard_matches_its_schema() -> None:
    board = dashboard()
    jsonschema.validate(board, DASHBOARD_SCHEMA)
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    assert all(panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24 for panel in board["panels"])


@pytest.mark.parametrize(
    ("where", "expr"), rule_expressions() + dashboard_expressions(), ids=lambda value: value[:60]
)
def test_every_expression_names_only_metrics_and_labels_the_code_exports(
    where: str, expr: str
) -> None:
    series = exported() | PROMETHEUS_SERIES
    parsed = promql_parser.parse(expr)  # raises on a syntax error

    found = list(selectors(parsed))
    assert found, f"{where}: no metric"
    for selector in found:
        assert selector.name in series, f"{where}: {selector.name} is not exported"
        used = {matcher.name for matcher in selector.matchers.matchers}
        unknown = used - series[selector.name]
        assert not unknown, f"{where}: {selector.name} has no label {sorted(unknown)}"


def test_an_unknown_metric_would_be_caught() -> None:
    # The check above is only worth something if a misspelt name fails it.
    series = exported()
    misspelt = promql_parser.parse("max(reelflow_dead_letter) > 0")

    assert [s.name for s in selectors(misspelt)] == ["reelflow_dead_letter"]
    assert "reelflow_dead_letter" not in series
    assert "reelflow_dead_letters" in series


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian: prometheus)")
def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    assert PROMTOOL is not None
    checked = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [PROMTOOL, "test", "rules", str(RULE_TESTS)],
        capture_output=True,
        text=True,
        check=False,
        cwd=OBSERVABILITY,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def runbook() -> str:
    """docs/OPERATIONS.md's section of what to do for each alert."""
    text = OPERATIONS.read_text()
    start = text.index(f"## {RUNBOOK}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_every_alert_has_an_entry_in_the_runbook_and_every_entry_an_alert() -> None:
    entries = re.findall(r"^### (\S+)$", runbook(), flags=re.M)
    alerts = [name for name, _expr in rule_expressions()]

    assert sorted(entries) == sorted(alerts)
    assert len(entries) == len(set(entries))


def test_an_alert_whose_description_names_no_action_names_the_runbook() -> None:
    for group in rules()["groups"]:
        for rule in group["rules"]:
            if rule["alert"] in (
                "ReelflowConsumerLagGrowing",
                "ReelflowPublishesRefused",
                "ReelflowRunwareSlow",
                "ReelflowChainsLost",
            ):
                description = " ".join(rule["annotations"]["description"].split())
                assert f'docs/OPERATIONS.md, "{RUNBOOK}"' in description, rule["alert"]


def test_the_commands_and_settings_the_runbook_and_alerts_name_exist() -> None:
    # What an on-call person copies at 3 a.m. must run: each reelflow-admin command parses,
    # each REELFLOW_ setting is one the services read.
    texts = [runbook()] + [
        " ".join(rule["annotations"]["description"].split())
        for group in rules()["groups"]
        for rule in group["rules"]
    ]
    parser = build_parser()
    commands = [c for text in texts for c in re.findall(r"`(reelflow-admin [^`]*)`", text)]
    assert len(commands) >= 8
    for command in commands:
        argv = shlex.split(command.replace("{{ $labels.queue }}", "poller.check_clip"))[1:]
        if argv[-1] == "...":
            continue  # how to run it, not a command
        parser.parse_args(argv)
    settings = {
        name for variables, *_rest in setting_rows() for name in re.findall(r"`(\w+)`", variables)
    }
    named = {name for text in texts for name in re.findall(r"\bREELFLOW_[A-Z0-9_]+\b", text)}
    assert named
    assert named <= settings, named - settings
