"""The deployment files in deploy/: checked with the real tools where this machine has
them (promtool, systemd-analyze, kubectl kustomize, kubernetes-validate's bundled
schemas), and for the references between them (ports, paths, uids, labels) that no
single tool sees. Offline and fast; the image itself is built by tests/e2e (opt-in)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from resolver.background import SYSCALLS, YIELD_SYSCALL
from resolver.config import config_from_mapping, load_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"
GRAFANA_DIR = DEPLOY / "grafana"
K8S_DIR = DEPLOY / "kubernetes"
UNIT = DEPLOY / "systemd" / "aiwall.service"
DATASOURCE_UID = "aiwall-prometheus"
ALERTS = {
    "AiwallDown",
    "AiwallUpstreamFailing",
    "AiwallListRefreshStale",
    "AiwallListShrinkRejected",
    "AiwallBypassAttemptsRising",
    "AiwallCatalogStale",
    "AiwallReplicasDisagree",
}


def tool(name: str, *fallbacks: str) -> str:
    found = shutil.which(name) or next((f for f in fallbacks if Path(f).exists()), None)
    if found is None:
        pytest.fail(f"{name} missing: run tests/tools/install-system-deps.sh")
    return found


def run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# --- Prometheus: rules, rule unit tests, scrape config ----------------------------------


def test_alert_rules_pass_promtool_check() -> None:
    result = run(
        tool("promtool", "/usr/bin/promtool"), "check", "rules", "alerts.yml", cwd=PROMETHEUS_DIR
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_alert_rules_unit_tests_pass_and_cover_every_alert() -> None:
    tests = load_yaml(PROMETHEUS_DIR / "alerts_test.yml")
    covered = {
        case["alertname"]
        for test in tests["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]  # a firing case, not only a quiet one
    }
    assert covered == ALERTS
    rules = load_yaml(PROMETHEUS_DIR / "alerts.yml")
    assert {rule["alert"] for group in rules["groups"] for rule in group["rules"]} == ALERTS
    result = run(
        tool("promtool", "/usr/bin/promtool"),
        "test",
        "rules",
        "alerts_test.yml",
        cwd=PROMETHEUS_DIR,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_prometheus_config_passes_promtool_and_scrapes_the_compose_service() -> None:
    result = run(
        tool("promtool", "/usr/bin/promtool"),
        "check",
        "config",
        "prometheus.yml",
        cwd=PROMETHEUS_DIR,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "aiwall"  # AiwallDown and the docs rely on it
    (target,) = job["static_configs"][0]["targets"]
    host, _, port = target.rpartition(":")
    compose = load_yaml(DEPLOY / "compose.yaml")
    assert host in compose["services"]
    container = load_config(DEPLOY / "container.yaml")
    assert container.listen.http is not None
    assert (container.listen.http.host, container.listen.http.port) == ("0.0.0.0", int(port))


# --- Grafana: dashboard and provisioning ------------------------------------------------


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GRAFANA_DIR / "aiwall.json").read_text(encoding="utf-8"))
    return data


def all_panels(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in data["panels"]:
        yield panel
        yield from panel.get("panels", [])


def test_dashboard_uses_the_provisioned_datasource_everywhere() -> None:
    provisioned = load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")
    (source,) = provisioned["datasources"]
    assert source["uid"] == DATASOURCE_UID
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    data = dashboard()
    # Import-style inputs are not resolved by file provisioning (grafana/grafana#10786).
    assert "__inputs" not in data
    text = json.dumps(data)
    assert "${DS" not in text
    refs = [p["datasource"] for p in all_panels(data) if p["type"] != "row"]
    refs += [t["datasource"] for p in all_panels(data) for t in p.get("targets", [])]
    refs += [v["datasource"] for v in data["templating"]["list"] if "datasource" in v]
    assert refs
    assert all(ref == {"type": "prometheus", "uid": DATASOURCE_UID} for ref in refs)


def test_dashboard_panels_cover_the_issue_and_fit_the_grid() -> None:
    data = dashboard()
    assert data["uid"] == "aiwall"
    panels = [p for p in all_panels(data) if p["type"] != "row"]
    titles = {p["title"] for p in panels}
    assert {
        "Queries/s by outcome",
        "Blocked/s by service and category",
        "Top blocked services",
        "Cache hit ratio",
        "Upstream latency p50 / p99",
        "Upstream errors/s",
        "Policy entries by source",
        "Age of the last good list refresh",
        "CPU",
        "Memory",
    } <= titles
    ids = [p["id"] for p in all_panels(data)]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in all_panels(data):
        pos = panel["gridPos"]
        assert 0 <= pos["x"] < pos["x"] + pos["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
    (table,) = [p for p in panels if p["type"] == "table"]
    assert table["targets"][0]["instant"] is True
    assert table["targets"][0]["format"] == "table"
    (variable,) = data["templating"]["list"]
    assert variable["name"] == "instance"
    assert variable["allValue"] == ".*"


def test_dashboard_queries_parse_as_promql(tmp_path: Path) -> None:
    """promtool parses every expression (as recording rules), Grafana variables
    substituted; that the queries return data is tests/e2e/test_dashboard_queries.py."""
    rules = []
    for panel in all_panels(dashboard()):
        for target in panel.get("targets", []):
            expr = (
                target["expr"]
                .replace("$__rate_interval", "1m")
                .replace("$__range", "1h")
                .replace("$instance", ".*")
            )
            assert "$" not in expr, f"{panel['title']}: unknown variable in {target['expr']}"
            assert 'instance=~"$instance"' in target["expr"], panel["title"]
            rules.append({"record": f"panel:{len(rules)}", "expr": expr})
    assert len(rules) >= 20
    checked = tmp_path / "dashboard-rules.yml"
    checked.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = run(tool("promtool", "/usr/bin/promtool"), "check", "rules", str(checked))
    assert result.returncode == 0, result.stdout + result.stderr
    # promtool really parses: a broken expression fails the same check.
    rules.append({"record": "panel:broken", "expr": "sum by (outcome (rate(x[1m]))"})
    checked.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    assert (
        run(tool("promtool", "/usr/bin/promtool"), "check", "rules", str(checked)).returncode != 0
    )


def test_grafana_dashboard_provider_loads_the_mounted_dashboard() -> None:
    provider = load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "aiwall.yml")
    (entry,) = provider["providers"]
    assert entry["type"] == "file"
    mounts = compose_mounts("grafana")
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    dashboard_mount = mounts["./grafana/aiwall.json"]
    assert Path(dashboard_mount).parent == Path(entry["options"]["path"])


# --- Compose --------------------------------------------------------------------------


def compose_mounts(service: str) -> dict[str, str]:
    """Bind mounts (source relative to deploy/) -> target, read-only flags dropped."""
    compose = load_yaml(DEPLOY / "compose.yaml")
    mounts = {}
    for volume in compose["services"][service].get("volumes", []):
        source, target, *_ = volume.split(":")
        mounts[source] = target
    return mounts


def test_compose_services_ports_volumes_and_paths() -> None:
    compose = load_yaml(DEPLOY / "compose.yaml")
    assert set(compose["services"]) == {"aiwall", "prometheus", "grafana"}
    aiwall = compose["services"]["aiwall"]
    build = aiwall["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    published = {":".join(p.rsplit(":", 2)[-2:]) for p in aiwall["ports"]}  # no bind address
    assert published == {"53:5353/udp", "53:5353/tcp"}
    container = load_config(DEPLOY / "container.yaml")
    assert [a.port for a in container.listen.dns] == [5353]
    mounts = compose_mounts("aiwall")
    assert mounts["./container.yaml"] == "/etc/aiwall/aiwall.yaml"
    assert mounts["aiwall-state"] == container.state.directory == "/var/lib/aiwall"
    assert aiwall["read_only"] is True
    assert aiwall["cap_drop"] == ["ALL"]
    named = set(compose["volumes"])
    for name, _service in compose["services"].items():
        for source in compose_mounts(name):
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} missing"
            else:
                assert source in named, f"{name}: volume {source} not declared"
    prometheus = compose["services"]["prometheus"]
    assert compose_mounts("prometheus")["./prometheus"] == "/etc/prometheus"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    # Pinned images, no :latest.
    for name in ("prometheus", "grafana"):
        image = compose["services"][name]["image"]
        assert re.search(r":v?\d+\.\d+\.\d+$", image), image


# --- Container image --------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    lines = (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines()
    joined: list[str] = []
    current = ""
    for line in lines:
        if line.lstrip().startswith("#") or not line.strip():
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            joined.append(current.strip())
            current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined]


def test_dockerfile_is_multi_stage_slim_non_root_with_dns_healthcheck() -> None:
    instructions = dockerfile_instructions()
    stages = [args for op, args in instructions if op == "FROM"]
    assert len(stages) >= 2
    args = {
        a.split("=", 1)[0]: a.split("=", 1)[1] for op, a in instructions if op == "ARG" and "=" in a
    }
    assert args["BASE_IMAGE"].endswith("-slim")
    final = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM") :]
    ops = {op: args for op, args in final}  # the last of each in the final stage
    user, _, group = ops["USER"].partition(":")
    assert user.isdigit()
    assert int(user) >= 1000
    assert group.isdigit()
    assert set(ops["EXPOSE"].split()) >= {"5353/udp", "5353/tcp", "9153/tcp"}
    assert json.loads(ops["VOLUME"]) == ["/var/lib/aiwall"]
    health = ops["HEALTHCHECK"]
    assert json.loads(health[health.index("CMD") + 3 :])[:2] == ["aiwall", "healthcheck"]
    assert json.loads(ops["ENTRYPOINT"]) == ["aiwall"]
    assert json.loads(ops["CMD"])[:1] == ["serve"]
    env = " ".join(a for op, a in final if op == "ENV")
    assert "AIWALL_CATALOG_DIR=/usr/share/aiwall/blocklists/catalog" in env
    copies = [a for op, a in final if op == "COPY"]
    assert "blocklists /usr/share/aiwall/blocklists" in copies
    assert "deploy/container.yaml /etc/aiwall/aiwall.yaml" in copies


def test_dockerignore_keeps_what_the_dockerfile_copies() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    sources = set()
    for op, args in dockerfile_instructions():
        if op == "COPY" and not args.startswith("--from"):
            sources.update(p.rstrip("/") for p in args.split()[:-1])
    sources.discard(".")
    assert sources
    assert sources <= kept
    assert all((ROOT / source).exists() for source in sources)


def test_container_config_is_valid_and_reachable_from_outside() -> None:
    config = load_config(DEPLOY / "container.yaml")
    assert all(a.wildcard for a in config.listen.dns)
    assert str(config.listen.http) == "0.0.0.0:9153"
    result = run(
        sys.executable,
        "-m",
        "resolver",
        "validate-config",
        str(DEPLOY / "container.yaml"),
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


# --- systemd ---------------------------------------------------------------------------


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_systemd_unit_is_hardened() -> None:
    s = unit_settings()
    assert s["DynamicUser"] == ["yes"]
    assert s["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert s["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert s["ProtectSystem"] == ["strict"]
    assert s["StateDirectory"] == ["aiwall"]
    for key in ("ProtectHome", "NoNewPrivileges", "PrivateTmp"):
        assert s[key] == ["yes"], key
    assert s["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert s["Restart"] == ["on-failure"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    argv = shlex.split(s["ExecStart"][0])
    assert argv[1:3] == ["serve", "--config"]
    assert any("AIWALL_CATALOG_DIR=" in e for e in s["Environment"])


def test_systemd_config_uses_port_53_and_the_state_directory() -> None:
    """deploy/systemd/aiwall.yaml, installed as the unit's --config: port 53 (what
    CAP_NET_BIND_SERVICE is for) and state.directory where StateDirectory= points, the
    one writable place under ProtectSystem=strict."""
    s = unit_settings()
    installed = Path(shlex.split(s["ExecStart"][0])[3])
    assert installed == Path("/etc/aiwall/aiwall.yaml")
    config = load_config(DEPLOY / "systemd" / "aiwall.yaml")
    assert {a.port for a in config.listen.dns} == {53}
    assert Path(config.state.directory) == Path("/var/lib") / s["StateDirectory"][0]
    assert config.listen.http is not None
    assert config.listen.http.host == "127.0.0.1"


def syscalls(analyze: str, items: list[str]) -> set[str]:
    """System call names, the filter's @groups expanded as systemd-analyze defines them."""
    names: set[str] = set()
    for item in items:
        if not item.startswith("@"):
            names.add(item)
            continue
        listing = run(analyze, "syscall-filter", item)
        assert listing.returncode == 0, listing.stderr
        members = [line.strip() for line in listing.stdout.splitlines()[1:]]
        names |= syscalls(analyze, [m for m in members if m and not m.startswith("#")])
    return names


def allowed_by_the_unit(analyze: str) -> set[str]:
    """The system calls the unit's ``SystemCallFilter=`` lines allow: the first line (an
    allow list) sets the default, each later one adds to it or (``~``) takes from it."""
    filters = unit_settings()["SystemCallFilter"]
    assert not filters[0].startswith("~")
    allowed: set[str] = set()
    for value in filters:
        names = syscalls(analyze, value.removeprefix("~").split())
        allowed = allowed - names if value.startswith("~") else allowed | names
    return allowed


def test_systemd_units_syscall_filter_lets_the_helpers_step_aside_and_no_more() -> None:
    """The unit denies @resources, which holds the calls the audit writer and the
    reload builders make to lower their priority (``resolver.background``); it lets
    those back in, and nothing else of it. Refused, they cost the priority, not the helpers
    (tests/integration/test_sandboxed_scheduling.py)."""
    analyze = tool("systemd-analyze", "/usr/bin/systemd-analyze")
    allowed = allowed_by_the_unit(analyze)
    assert set(SYSCALLS) <= allowed
    assert YIELD_SYSCALL in allowed  # the audit writer's ``give_way``
    assert allowed & syscalls(analyze, ["@resources"]) <= set(SYSCALLS)
    assert not allowed & syscalls(analyze, ["@privileged"])


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze", "/usr/bin/systemd-analyze")
    # verify checks that ExecStart's program exists: point it at a stand-in.
    stand_in = tmp_path / "aiwall"
    stand_in.write_text("#!/bin/sh\n")
    stand_in.chmod(0o755)
    unit = tmp_path / "aiwall.service"
    unit.write_text(
        UNIT.read_text(encoding="utf-8").replace("/opt/aiwall/bin/aiwall", str(stand_in))
    )
    result = run(analyze, "verify", str(unit))
    assert result.returncode == 0, result.stderr
    # systemd-analyze reports unknown keys and bad values on stderr but still exits 0.
    assert "aiwall.service" not in result.stderr, result.stderr
    security = run(analyze, "security", "--offline=yes", str(UNIT))
    match = re.search(r"Overall exposure level for aiwall\.service: ([\d.]+)", security.stdout)
    assert match, security.stdout + security.stderr
    assert float(match.group(1)) <= 2.0, security.stdout  # "OK" is < 4.5; we aim at 2


# --- Kubernetes -------------------------------------------------------------------------


def k8s_documents() -> list[dict[str, Any]]:
    """The base rendered by ``kubectl kustomize`` when kubectl is here; else the same
    resources with the generated ConfigMap and image rewritten as kustomize would."""
    kubectl = shutil.which("kubectl")
    if kubectl is not None:
        result = run(kubectl, "kustomize", str(K8S_DIR))
        assert result.returncode == 0, result.stderr
        return [d for d in yaml.safe_load_all(result.stdout) if d]
    kustomization = load_yaml(K8S_DIR / "kustomization.yaml")
    documents = [
        doc
        for resource in kustomization["resources"]
        for doc in yaml.safe_load_all((K8S_DIR / resource).read_text(encoding="utf-8"))
        if doc
    ]
    for generator in kustomization["configMapGenerator"]:
        documents.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": generator["name"]},
                "data": {f: (K8S_DIR / f).read_text(encoding="utf-8") for f in generator["files"]},
            }
        )
    for doc in documents:
        if doc["kind"] != "Namespace":
            doc["metadata"]["namespace"] = kustomization["namespace"]
    return documents


def one(documents: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    (found,) = [
        d
        for d in documents
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    return found


@pytest.fixture(scope="module")
def k8s() -> list[dict[str, Any]]:
    return k8s_documents()


@pytest.mark.parametrize("version", ["1.26.0", kubernetes_validate.latest_version()])
def test_kubernetes_resources_match_the_bundled_schemas(
    k8s: list[dict[str, Any]], version: str
) -> None:
    """kubernetes-validate ships the OpenAPI schemas: strict, offline."""
    kinds = set()
    for document in k8s:
        if document["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: test_service_monitor_matches_the_operator_crd
        kubernetes_validate.validate(document, version, strict=True)
        kinds.add(document["kind"])
    assert kinds == {"Namespace", "ConfigMap", "Service", "StatefulSet", "PodDisruptionBudget"}


def test_kubernetes_schemas_reject_a_broken_resource(k8s: list[dict[str, Any]]) -> None:
    broken = json.loads(json.dumps(one(k8s, "StatefulSet")))
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "dns"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.26.0", strict=True)


def test_statefulset_is_replicated_probed_limited_and_locked_down(
    k8s: list[dict[str, Any]],
) -> None:
    deployment = one(k8s, "StatefulSet")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's USER
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    ports = {p["name"]: (p["containerPort"], p["protocol"]) for p in container["ports"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    configmap = one(k8s, "ConfigMap")
    config = config_from_mapping(yaml.safe_load(configmap["data"]["aiwall.yaml"]))
    # The probes and Prometheus reach the HTTP listener: all interfaces, the "http" port.
    assert str(config.listen.http) == f"0.0.0.0:{ports['http'][0]}"
    dns_ports = {(a.host, a.port) for a in config.listen.dns}
    assert dns_ports == {("0.0.0.0", ports["dns-udp"][0])}
    assert ports["dns-udp"] == (5353, "UDP")
    assert ports["dns-tcp"] == (5353, "TCP")
    assert 1 <= config.workers <= int(container["resources"]["limits"]["cpu"])
    # The ConfigMap is the one mounted, where the container's --config points.
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    config_path = Path(container["args"][container["args"].index("--config") + 1])
    assert (
        volumes[mounts[str(config_path.parent)]]["configMap"]["name"]
        == configmap["metadata"]["name"]
    )
    assert config_path.name in configmap["data"]
    # The state directory is writable under a read-only root, and outlives the pod: a
    # volume per replica, never an emptyDir (a first start with a list server down would
    # serve without that list).
    assert mounts[config.state.directory] == "state"
    assert "state" not in volumes
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "state"
    assert one(k8s, "Service", spec["serviceName"])["spec"]["clusterIP"] == "None"


def test_services_pdb_and_monitor_select_the_pods(k8s: list[dict[str, Any]]) -> None:
    pod_labels = one(k8s, "StatefulSet")["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str]) -> bool:
        return selector.items() <= pod_labels.items()

    dns = one(k8s, "Service", "aiwall")
    assert selects(dns["spec"]["selector"])
    assert {(p["port"], p["protocol"], p["targetPort"]) for p in dns["spec"]["ports"]} == {
        (53, "UDP", 5353),
        (53, "TCP", 5353),
    }
    metrics = one(k8s, "Service", "aiwall-metrics")
    assert selects(metrics["spec"]["selector"])
    pdb = one(k8s, "PodDisruptionBudget")
    assert selects(pdb["spec"]["selector"]["matchLabels"])
    assert pdb["spec"]["minAvailable"] == 1 < one(k8s, "StatefulSet")["spec"]["replicas"]
    monitor = one(k8s, "ServiceMonitor")
    wanted = monitor["spec"]["selector"]["matchLabels"]
    assert wanted.items() <= metrics["metadata"]["labels"].items()
    assert not wanted.items() <= dns["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in metrics["spec"]["ports"]}
    # job="aiwall", as the alert rules expect.
    assert metrics["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "aiwall"


# The part of the Prometheus Operator's ServiceMonitor CRD (monitoring.coreos.com/v1)
# that this base uses, with the CRD's own types and interval pattern.
DURATION = (
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}},
        },
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "jobLabel": {"type": "string"},
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        }
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": DURATION},
                            "scrapeTimeout": {"type": "string", "pattern": DURATION},
                        },
                    },
                },
            },
        },
    },
}


def test_service_monitor_matches_the_operator_crd(k8s: list[dict[str, Any]]) -> None:
    monitor = one(k8s, "ServiceMonitor")
    jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)
    broken = json.loads(json.dumps(monitor))
    broken["spec"]["endpoints"][0]["interval"] = "15 seconds"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SERVICE_MONITOR_SCHEMA)
