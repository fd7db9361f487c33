"""deploy/helm/sluice: rendered with each values file by Helm's own engine (Helm
v4's Go SDK through PyPI's helm-python-sdk, Tests/e2e/requirements.txt: what
`helm template` runs), the values checked against values.schema.json, and every
rendered object put through the checks of deploy_checks.py, the same as the
kustomize overlays."""

from __future__ import annotations

import functools

import helm_python as helm
import pytest
import yaml

import deploy_checks as dc
from conftest import REPO_ROOT

CHART = REPO_ROOT / "deploy" / "helm" / "sluice"
VALUES = sorted(p.name for p in CHART.glob("values-*.yaml"))
RUNNABLE = ("values.yaml", "values-splunk.yaml", "values-elastic.yaml", "values-forward.yaml", "values-gateway.yaml")


class NoDuplicateKeys(yaml.SafeLoader):
    """A mapping with a key twice is refused by the API server's strict decoding;
    PyYAML would keep the last one silently."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            assert key not in seen, f"duplicate key {key!r} at line {key_node.start_mark.line + 1}"
            seen.add(key)
        return super().construct_mapping(node, deep)


def values_of(name: str) -> dict:
    return {} if name == "values.yaml" else yaml.safe_load((CHART / name).read_text())


@functools.cache
def rendered(name: str) -> dict[str, str]:
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(values_of(name))
        namespace = "sluice" if "gateway" in name else "apps"
        return dict(chart.render(values_of(name), name="sluice" if "gateway" in name else "ai-gateway", namespace=namespace))


def objects_of(name: str) -> list[dict]:
    out = []
    for template, text in rendered(name).items():
        if template.endswith("NOTES.txt"):
            continue
        out += [doc for doc in yaml.load_all(text, Loader=NoDuplicateKeys) if doc]
    return out


def test_every_destination_has_values():
    assert set(VALUES) == {f"values-{d}.yaml" for d in ("splunk", "elastic", "cloudwatch", "datadog", "sentinel", "forward", "gateway")}


def test_chart_lints_clean():
    report = helm.lint(str(CHART))
    assert report["errors"] == [], report
    assert all(m["severity"] <= 1 for m in report["messages"]), report["messages"]   # 1 = INFO


@pytest.mark.parametrize("values", ["values.yaml", *VALUES])
def test_rendered_chart_is_valid_and_holds_the_invariants(values, tmp_path):
    objects = objects_of(values)
    dc.validate_schemas(objects)
    pods = dc.all_pods(objects)
    assert len(pods) == 1, [o["kind"] for o in objects]
    dc.check_pod(pods[0])
    dc.validate_config(pods[0], tmp_path)
    kinds = {o["kind"] for o in objects}
    if values_of(values).get("mode") == "gateway":
        assert {"HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"} <= kinds
        hpa = next(o for o in objects if o["kind"] == "HorizontalPodAutoscaler")
        assert (hpa["spec"]["scaleTargetRef"]["kind"], hpa["spec"]["scaleTargetRef"]["name"]) == (pods[0].workload["kind"], pods[0].workload["metadata"]["name"])
    else:
        assert [c["name"] for c in pods[0].spec["initContainers"]] == ["sluice"]


@pytest.mark.parametrize("values", RUNNABLE)
def test_the_rendered_pod_runs(values, tmp_path, track_sluice):
    dc.run_pod(dc.all_pods(objects_of(values))[0], tmp_path, track_sluice)


def test_notes_snippet_is_the_sidecar_the_chart_deploys():
    """What `helm get notes` tells a user to paste into their own Deployment is the
    very container and volumes of the Deployment the chart renders."""
    notes = rendered("values-splunk.yaml")["sluice/templates/NOTES.txt"]
    snippet = notes.split("# --- sluice sidecar snippet ---")[1].split("# --- end ---")[0]
    pasted = yaml.load(snippet, Loader=NoDuplicateKeys)
    pod = dc.all_pods(objects_of("values-splunk.yaml"))[0]
    assert pasted["initContainers"] == [pod.container]
    assert pasted["volumes"] == pod.spec["volumes"]
    assert f"terminationGracePeriodSeconds of at least\n{pod.spec['terminationGracePeriodSeconds']}" in notes


def test_schema_refuses_values_the_chart_cannot_use():
    with helm.Chart.load(str(CHART)) as chart:
        for bad in ({"mode": "daemonset"}, {"signals": []}, {"diskLog": {"maxSize": "lots"}},
                    {"networkPolicy": {"egress": [{"cidr": "10.0.0.0/8"}]}}, {"exporter": {}}):
            with pytest.raises(helm.HelmValuesError):
                chart.validate_schema(bad)


def test_config_override_reaches_collector_yaml():
    """`config` is merged over what the chart builds: a user's processor setting wins."""
    with helm.Chart.load(str(CHART)) as chart:
        out = chart.render({"config": {"processors": {"batch": {"send_batch_size": 42}}}}, name="x", namespace="apps")
    config_map = yaml.safe_load(out["sluice/templates/configmap.yaml"])
    config = yaml.safe_load(config_map["data"]["collector.yaml"])
    assert config["processors"]["batch"] == {"send_batch_size": 42, "timeout": "1s"}


def test_forwarding_values_reach_the_gateway_values():
    """values-forward.yaml sends to the Service values-gateway.yaml renders (release
    sluice in namespace sluice, as their comments say), with the token key the tier
    checks, through egress the tier's pods match and ingress that admits the sidecars."""
    sidecar_objects, tier_objects = objects_of("values-forward.yaml"), objects_of("values-gateway.yaml")
    sidecar, tier = dc.all_pods(sidecar_objects)[0], dc.all_pods(tier_objects)[0]
    service = next(o for o in tier_objects if o["kind"] == "Service")
    host, port = dc.host_port(sidecar.config["exporters"]["otlp_grpc"]["endpoint"])
    assert host == f"{service['metadata']['name']}.sluice.svc.cluster.local"
    assert port in {p["port"] for p in service["spec"]["ports"]}
    header = sidecar.config["exporters"]["otlp_grpc"]["headers"]["authorization"]
    assert dc.FILE_REFERENCE.search(header).group(1).rsplit("/", 1)[1] == tier.config["extensions"]["bearertokenauth"]["filename"].rsplit("/", 1)[1]
    egress = next(o for o in sidecar_objects if o["kind"] == "NetworkPolicy")["spec"]["egress"]
    tier_labels = tier.workload["spec"]["template"]["metadata"]["labels"]
    assert any(t.get("podSelector", {}).get("matchLabels", {}).items() <= tier_labels.items() and t.get("podSelector")
               and t["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == "sluice"
               for rule in egress for t in rule["to"])
    ingress = next(o for o in tier_objects if o["kind"] == "NetworkPolicy")["spec"]["ingress"]
    sidecar_labels = sidecar.workload["spec"]["template"]["metadata"]["labels"]
    assert any(f.get("podSelector") and f["podSelector"]["matchLabels"].items() <= sidecar_labels.items() for rule in ingress for f in rule["from"])


def test_own_deployment_gets_everything_but_the_workload():
    """app.enabled: false (Sluice goes into a Deployment of the user's own): the chart
    renders the config, Secret, Service, ServiceMonitor and NetworkPolicy for pods
    with the labels NOTES names, and no workload of its own."""
    with helm.Chart.load(str(CHART)) as chart:
        out = chart.render({**values_of("values-splunk.yaml"), "app": {"enabled": False}}, name="ai-gateway", namespace="apps")
    objects = [doc for name, text in out.items() if not name.endswith("NOTES.txt") for doc in yaml.load_all(text, Loader=NoDuplicateKeys) if doc]
    assert not dc.all_pods(objects)
    assert {"ConfigMap", "Secret", "Service", "ServiceMonitor", "NetworkPolicy"} <= {o["kind"] for o in objects}
    # The ServiceMonitor's check follows the Service to a workload; here there is none.
    dc.validate_schemas([o for o in objects if o["kind"] != "ServiceMonitor"])
    selector = next(o for o in objects if o["kind"] == "NetworkPolicy")["spec"]["podSelector"]["matchLabels"]
    notes = out["sluice/templates/NOTES.txt"]
    for key, value in selector.items():
        assert f"{key}: {value}" in notes, f"NOTES does not tell the user to label the pods {key}: {value}"
