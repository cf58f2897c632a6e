"""The Grafana dashboard, Prometheus scrape config and provisioning under ``deploy/``.

Every query of the dashboard must parse as PromQL (``promql-parser``, Prometheus's
grammar in Rust) and select only series that ``WorkerMetrics`` exports, with labels
those series carry, so that renaming a metric or a label in ``agents/metrics.py``
fails here rather than leaving a silently empty panel. The dashboard must also decode
strictly against Grafana's dashboard schema (``deploy/grafana/schemacheck``, a Go
program over grafana-foundation-sdk's generated types), and the files that
``docker-compose.yml`` mounts must exist and agree with each other.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.metrics import MetricWrapperBase

from agents.metrics import WorkerMetrics
from agents.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy/grafana/dashboards/novacron-worker.json"
PROMETHEUS = REPO / "deploy/prometheus/prometheus.yml"
DATASOURCES = REPO / "deploy/grafana/provisioning/datasources/prometheus.yml"
DASHBOARD_PROVIDERS = REPO / "deploy/grafana/provisioning/dashboards/novacron.yml"
SCHEMACHECK = REPO / "deploy/grafana/schemacheck"
COMPOSE = REPO / "docker-compose.yml"

# Labels Prometheus attaches to every scraped series.
TARGET_LABELS = frozenset({"instance", "job"})
# Grafana's own variables; the range ones stand where PromQL wants a duration.
RANGE_VARIABLES = ("$__rate_interval", "${__rate_interval}", "$__interval", "$__range")
GRAFANA_BUILTINS = frozenset({"__rate_interval", "__interval", "__range", "__all"})
# Panel types that ship with Grafana (no plugin install needed).
CORE_PANEL_TYPES = frozenset(
    "row timeseries stat gauge bargauge table text barchart histogram heatmap piechart"
    " statetimeline statushistory logs nodeGraph traces flamegraph xychart trend candlestick"
    " canvas geomap news dashlist alertlist annolist datagrid".split()
)


def exported_series(registry: CollectorRegistry) -> dict[str, frozenset[str]]:
    """Series name -> label names, exactly as the registry exposes them.

    A labelled metric exposes nothing until it has a child, so each one gets a child
    first (in this registry only); then the names and labels come from the samples
    ``collect()`` yields: ``x_total`` and ``x_created`` for a Counter ``x``,
    ``x_bucket`` (with ``le``), ``x_sum``, ``x_count`` for a Histogram, ``x`` for a
    Gauge.
    """
    # prometheus-client offers no public list of a registry's metrics or of a metric's
    # label names; these two attributes have held them since its first releases.
    for collector in list(registry._collector_to_names):
        if isinstance(collector, MetricWrapperBase):
            labelnames = collector._labelnames
            if labelnames:
                collector.labels(*("probe" for _ in labelnames))
    series: dict[str, set[str]] = {}
    for family in registry.collect():
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return {name: frozenset(labels) for name, labels in series.items()}


@pytest.fixture(scope="module")
def worker_series() -> dict[str, frozenset[str]]:
    return exported_series(WorkerMetrics().registry)


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _yaml(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


# --- PromQL against the worker's metrics -----------------------------------------------


@dataclass
class QueryFacts:
    """What one PromQL expression selects and groups by."""

    selectors: list[tuple[str, list[str]]] = field(default_factory=list)  # name, matcher labels
    groupings: list[tuple[list[str], list[str]]] = field(default_factory=list)  # labels, over


def _selected_names(expr: promql_parser.Expr) -> list[str]:
    names: list[str] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            names.append(_selector_name(node))

    promql_parser.walk(expr, visit)
    return names


def _selector_name(node: promql_parser.VectorSelector) -> str:
    if node.name:
        return node.name
    for matcher in node.matchers.matchers:
        if matcher.name == "__name__" and matcher.op == promql_parser.MatchOp.Equal:
            return matcher.value
    return ""


def query_facts(expr_text: str) -> QueryFacts:
    """Parse a dashboard query (Grafana's range variables made a fixed duration)."""
    for variable in RANGE_VARIABLES:
        expr_text = expr_text.replace(variable, "5m")
    expr = promql_parser.parse(expr_text)
    facts = QueryFacts()

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            labels = [m.name for m in node.matchers.matchers if m.name != "__name__"]
            labels += [m.name for group in node.matchers.or_matchers for m in group]
            facts.selectors.append((_selector_name(node), labels))
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            facts.groupings.append((list(node.modifier.labels), _selected_names(node.expr)))
        elif isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None:
            labels = list(node.modifier.group_labels or [])
            if node.modifier.matching is not None:
                labels += node.modifier.matching.labels
            over = _selected_names(node.lhs) + _selected_names(node.rhs)
            facts.groupings.append((labels, over))

    promql_parser.walk(expr, visit)
    return facts


def query_problems(expr_text: str, series: dict[str, frozenset[str]]) -> list[str]:
    """Everything in one query that the worker's metrics do not back."""
    try:
        facts = query_facts(expr_text)
    except ValueError as exc:
        return [f"does not parse ({exc}): {expr_text}"]
    problems = []
    for name, labels in facts.selectors:
        if name not in series:
            problems.append(f"selects {name!r}, which the worker does not export")
            continue
        for label in labels:
            if label not in series[name] | TARGET_LABELS:
                problems.append(f"matches label {label!r}, which {name} does not have")
    for labels, over in facts.groupings:
        known = TARGET_LABELS.union(*(series.get(name, frozenset()) for name in over))
        for label in labels:
            if label not in known:
                problems.append(f"groups by label {label!r}, which none of {over} has")
    if not facts.selectors:
        problems.append(f"selects no series: {expr_text}")
    return problems


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    for panel in board.get("panels", []):
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # a collapsed row holds its panels
    return panels


def dashboard_problems(board: dict[str, Any], series: dict[str, frozenset[str]]) -> list[str]:
    """Every query, legend and variable of the dashboard checked against the series."""
    problems = []
    for panel in _panels(board):
        for target in panel.get("targets", []):
            where = f"panel {panel.get('title')!r} query {target.get('refId')}"
            expr = target.get("expr", "")
            problems += [f"{where} {p}" for p in query_problems(expr, series)]
            try:
                facts = query_facts(expr)
            except ValueError:
                continue
            labels = TARGET_LABELS.union(*(series.get(n, frozenset()) for n, _ in facts.selectors))
            for legend_label in re.findall(r"{{\s*(\w+)\s*}}", target.get("legendFormat", "")):
                if legend_label not in labels:
                    problems.append(f"{where} legend uses {legend_label!r}, not a label here")
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query)
        match = re.fullmatch(r"\s*label_values\(\s*(\w+)\s*,\s*(\w+)\s*\)\s*", text)
        if match is None:
            problems.append(f"variable {variable.get('name')!r}: not label_values(m, l): {text}")
            continue
        name, label = match.groups()
        if name not in series:
            problems.append(
                f"variable {variable.get('name')!r} selects {name!r},"
                " which the worker does not export"
            )
        elif label not in series[name] | TARGET_LABELS:
            problems.append(f"variable {variable.get('name')!r}: {name} has no {label!r}")
    return problems


def test_metric_catalog_is_read_from_the_registry(
    worker_series: dict[str, frozenset[str]],
) -> None:
    assert worker_series["novacron_events_in_total"] == {"topic"}
    assert worker_series["novacron_dead_letters_total"] == {"topic", "error_kind"}
    assert worker_series["novacron_batch_processing_seconds_bucket"] == {"topic", "le"}
    assert worker_series["novacron_redis_roundtrip_seconds_count"] == {"op"}
    assert worker_series["novacron_consumer_lag"] == {"topic", "partition"}
    assert worker_series["novacron_model_info"] == {"role", "name", "version"}
    assert "novacron_events_in" not in worker_series  # a Counter is only seen as _total
    assert "novacron_consumer_lag_total" not in worker_series


def test_every_query_selects_exported_series_and_labels(
    dashboard: dict[str, Any], worker_series: dict[str, frozenset[str]]
) -> None:
    assert dashboard_problems(dashboard, worker_series) == []


def test_every_exported_metric_family_has_a_panel(
    dashboard: dict[str, Any], worker_series: dict[str, frozenset[str]]
) -> None:
    selected = set()
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            selected |= {name for name, _ in query_facts(target["expr"]).selectors}
    # Compare families: novacron_x_bucket and novacron_x_count are one histogram.
    suffixes = re.compile(r"_(total|created|bucket|sum|count)$")
    families = {suffixes.sub("", name) for name in worker_series}
    assert families - {suffixes.sub("", name) for name in selected} == set()


@pytest.mark.parametrize(
    ("old", "new", "reported"),
    [
        ("novacron_events_in_total", "novacron_events_input_total", "does not export"),
        ("by (error_kind)", "by (kind)", "groups by label 'kind'"),
        (
            'novacron_consumer_lag{instance=~"$instance"}',
            'novacron_consumer_lag{part="0"}',
            "matches label 'part'",
        ),
        ("novacron_model_info", "novacron_model_info_total", "does not export"),
        ("{{error_kind}}", "{{kind}}", "legend uses 'kind'"),
        ("[$__rate_interval]", "[$__rate_interval", "does not parse"),
        (
            "label_values(novacron_events_in_total, instance)",
            "label_values(novacron_events_in_total, host)",
            "has no 'host'",
        ),
    ],
)
def test_checker_reports_a_wrong_name_in_the_dashboard(
    dashboard: dict[str, Any],
    worker_series: dict[str, frozenset[str]],
    old: str,
    new: str,
    reported: str,
) -> None:
    text = json.dumps(dashboard)
    assert old.replace('"', '\\"') in text
    mutated = json.loads(text.replace(old.replace('"', '\\"'), new.replace('"', '\\"')))
    problems = dashboard_problems(mutated, worker_series)
    assert any(reported in p for p in problems), problems


def test_checker_reports_a_label_renamed_in_the_worker(dashboard: dict[str, Any]) -> None:
    # agents/metrics.py with dead_letters' error_kind renamed to reason.
    metrics = WorkerMetrics()
    metrics.registry.unregister(metrics.dead_letters)
    Counter(
        "novacron_dead_letters", "Dead letters.", ["topic", "reason"], registry=metrics.registry
    )
    problems = dashboard_problems(dashboard, exported_series(metrics.registry))
    assert any("groups by label 'error_kind'" in p for p in problems), problems
    assert any("legend uses 'error_kind'" in p for p in problems), problems


def test_checker_reports_a_metric_renamed_in_the_worker(dashboard: dict[str, Any]) -> None:
    metrics = WorkerMetrics()
    metrics.registry.unregister(metrics.scaling_actions)
    Counter("novacron_scaling_decisions", "Renamed.", ["action"], registry=metrics.registry)
    problems = dashboard_problems(dashboard, exported_series(metrics.registry))
    assert any("'novacron_scaling_actions_total'" in p for p in problems), problems


# --- Grafana import --------------------------------------------------------------------


def _datasource_problems(
    where: str, sources: list[Any], variables: dict[str, Any], datasource_uid: str
) -> list[str]:
    """Each datasource must be the provisioned Prometheus, directly or by variable."""
    problems = []
    for source in sources:
        if source is None:
            continue
        uid = source.get("uid", "")
        if uid.startswith("$"):
            variable = variables.get(uid.strip("${}"), {})
            uid = variable.get("current", {}).get("value", "")
            if variable.get("type") != "datasource" or variable.get("query") != "prometheus":
                problems.append(f"{where}: {source['uid']} is not a Prometheus datasource variable")
        if uid != datasource_uid or source.get("type") != "prometheus":
            problems.append(f"{where}: datasource {source} is not {datasource_uid!r}")
    return problems


def import_problems(board: dict[str, Any], datasource_uid: str) -> list[str]:
    """What would stop Grafana importing the dashboard, or leave a panel broken."""
    problems = [
        f"missing {key!r}"
        for key in ("uid", "title", "time", "refresh", "panels")
        if key not in board
    ]
    if not isinstance(board.get("schemaVersion"), int) or board["schemaVersion"] < 39:
        problems.append(f"schemaVersion should be 39 or later; got {board.get('schemaVersion')}")
    panels = _panels(board)
    ids = [str(panel.get("id")) for panel in panels]
    problems += [f"panel id {i} is used twice" for i in sorted(set(ids)) if ids.count(i) > 1]
    variables = {v["name"]: v for v in board.get("templating", {}).get("list", [])}
    for variable in variables.values():
        if variable.get("type") == "query":
            where = f"variable {variable['name']!r}"
            sources = [variable.get("datasource")]
            problems += _datasource_problems(where, sources, variables, datasource_uid)
    cells: dict[tuple[int, int], Any] = {}
    for panel in panels:
        name = f"panel {panel.get('id')} {panel.get('title')!r}"
        if panel.get("type") not in CORE_PANEL_TYPES:
            problems.append(f"{name}: type {panel.get('type')!r} is not a core Grafana panel")
        targets = panel.get("targets", [])
        sources = [panel.get("datasource")] + [target.get("datasource") for target in targets]
        problems += _datasource_problems(name, sources, variables, datasource_uid)
        refs = [target.get("refId") for target in targets]
        if len(set(refs)) != len(refs) or None in refs:
            problems.append(f"{name}: refIds must be present and distinct; got {refs}")
        for target in targets:
            for used in re.findall(r"\$\{?(\w+)", target.get("expr", "")):
                if used not in variables and used not in GRAFANA_BUILTINS:
                    problems.append(f"{name}: query uses ${used}, which is not a variable")
        grid = panel.get("gridPos", {})
        if not all(isinstance(grid.get(k), int) for k in ("x", "y", "w", "h")):
            problems.append(f"{name}: gridPos needs integer x, y, w, h; got {grid}")
            continue
        if grid["x"] < 0 or grid["w"] < 1 or grid["h"] < 1 or grid["x"] + grid["w"] > 24:
            problems.append(f"{name}: gridPos {grid} is outside the 24 columns")
        covered = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        for other in sorted({str(cells[cell]) for cell in covered & cells.keys()}):
            problems.append(f"{name} overlaps panel {other}")
        cells.update(dict.fromkeys(covered, panel.get("id")))
    return problems


def _provisioned_uid() -> str:
    uid: str = _yaml(DATASOURCES)["datasources"][0]["uid"]
    return uid


def test_dashboard_imports(dashboard: dict[str, Any]) -> None:
    assert import_problems(dashboard, _provisioned_uid()) == []


def test_dashboard_shows_online_accuracy_and_interval_coverage(dashboard: dict[str, Any]) -> None:
    exprs = " ".join(t["expr"] for p in _panels(dashboard) for t in p.get("targets", []))
    for metric in (
        "novacron_prediction_abs_error_mbps_total",
        "novacron_predictions_within_20pct_total",
        "novacron_predictions_in_interval_total",
        "novacron_predictions_scored_total",
    ):
        assert metric in exprs


@pytest.mark.parametrize(
    ("mutate", "reported"),
    [
        (lambda d: d["panels"][2].update(id=d["panels"][1]["id"]), "is used twice"),
        (lambda d: d["panels"][1]["gridPos"].update(x=20), "outside the 24 columns"),
        (lambda d: d["panels"][2]["gridPos"].update(x=0), "overlaps"),
        (lambda d: d["panels"][1].update(type="graph"), "not a core Grafana panel"),
        (lambda d: d["panels"][1]["datasource"].update(uid="other"), "is not 'novacron"),
        (lambda d: d["templating"]["list"][0]["current"].update(value="x"), "is not 'novacron"),
        (lambda d: d["templating"]["list"][1]["datasource"].update(uid="x"), "variable 'inst"),
        (lambda d: d.update(schemaVersion=27), "schemaVersion"),
        (lambda d: d["panels"][1]["targets"][0].update(expr='rate(x{a="$nope"}[1m])'), "$nope"),
    ],
)
def test_import_checks_report_a_broken_dashboard(
    dashboard: dict[str, Any], mutate: Any, reported: str
) -> None:
    broken = copy.deepcopy(dashboard)
    mutate(broken)
    problems = import_problems(broken, _provisioned_uid())
    assert any(reported in p for p in problems), problems


@pytest.fixture(scope="module")
def schemacheck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Go schema checker, built once (its module comes through the Go proxy)."""
    # /usr/local/go is where the official Go archive unpacks, often not on PATH.
    go = shutil.which("go") or shutil.which("go", path="/usr/local/go/bin")
    if go is None:
        pytest.fail("Checking the dashboard schema needs the Go toolchain (go 1.21+) on PATH.")
    binary = tmp_path_factory.mktemp("schemacheck") / "schemacheck"
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly"}
    subprocess.run(
        [go, "build", "-o", str(binary), "."], cwd=SCHEMACHECK, env=env, check=True, timeout=600
    )
    return binary


def test_dashboard_decodes_strictly_against_grafanas_schema(schemacheck: Path) -> None:
    result = subprocess.run(
        [str(schemacheck), str(DASHBOARD)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok ")


def test_schema_check_rejects_unknown_fields_and_types(
    schemacheck: Path, dashboard: dict[str, Any], tmp_path: Path
) -> None:
    broken = copy.deepcopy(dashboard)
    broken["panels"][1]["gridpos"] = broken["panels"][1].pop("gridPos")
    broken["panels"][7]["targets"][0]["exprr"] = "up"
    broken["refresh"] = 10
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    result = subprocess.run([str(schemacheck), str(path)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "unexpected field 'gridpos'" in result.stdout
    assert "unexpected field 'exprr'" in result.stdout
    assert "refresh: json: cannot unmarshal number" in result.stdout


# --- Prometheus, provisioning and compose ----------------------------------------------


def test_prometheus_scrapes_every_worker_replica_every_5s() -> None:
    config = _yaml(PROMETHEUS)
    assert config["global"]["scrape_interval"] == "5s"
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "novacron-worker"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    (discovery,) = job["dns_sd_configs"]
    assert discovery["names"] == ["worker"]
    assert discovery["type"] == "A"
    assert discovery["port"] == Settings.model_fields["web_port"].default == 6066


def test_provisioned_datasource_is_the_compose_prometheus() -> None:
    (source,) = _yaml(DATASOURCES)["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    # Grafana's $__rate_interval must cover 4 scrapes; it learns the interval here.
    assert source["jsonData"]["timeInterval"] == _yaml(PROMETHEUS)["global"]["scrape_interval"]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _yaml(COMPOSE)


def _mounts(service: dict[str, Any]) -> dict[str, tuple[Path, str]]:
    """Container path -> (repository path, mode) for each bind mount of a service."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *mode = volume.split(":")
        mounts[target] = ((REPO / source).resolve(), mode[0] if mode else "rw")
    return mounts


def test_compose_keeps_the_stack_and_adds_prometheus_and_grafana(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert set(services) == {"kafka", "redis", "worker", "prometheus", "grafana"}
    assert "NOVACRON_WEB_PORT" not in services["worker"]["environment"]  # the default, 6066
    assert services["prometheus"]["ports"] == ["9090:9090"]
    assert services["grafana"]["ports"] == ["3000:3000"]
    for name, repository in (("prometheus", "prom/prometheus"), ("grafana", "grafana/grafana")):
        image, _, tag = services[name]["image"].partition(":")
        assert image == repository
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name} is not pinned: {tag!r}"


def test_compose_mounts_files_of_the_repository_read_only(compose: dict[str, Any]) -> None:
    prometheus = _mounts(compose["services"]["prometheus"])
    grafana = _mounts(compose["services"]["grafana"])
    assert prometheus["/etc/prometheus/prometheus.yml"] == (PROMETHEUS, "ro")
    assert (
        "--config.file=/etc/prometheus/prometheus.yml"
        in compose["services"]["prometheus"]["command"]
    )
    assert grafana["/etc/grafana/provisioning"] == (DATASOURCES.parents[1], "ro")
    for source, _ in (*prometheus.values(), *grafana.values()):
        assert source.exists(), source
    # The provider reads the folder the dashboards are mounted on ...
    (provider,) = _yaml(DASHBOARD_PROVIDERS)["providers"]
    assert provider["type"] == "file"
    folder, mode = grafana[provider["options"]["path"]]
    assert (folder, mode) == (DASHBOARD.parent, "ro")
    # ... and the home dashboard is a file in it.
    home = compose["services"]["grafana"]["environment"][
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"
    ]
    assert (folder / Path(home).relative_to(provider["options"]["path"])) == DASHBOARD
