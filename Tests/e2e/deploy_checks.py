"""What every Kubernetes object under deploy/ must satisfy, whether it comes from
a kustomize overlay (test_deploy_kubernetes.py) or the Helm chart
(test_deploy_helm.py).

A rendered set of objects is checked three ways:
- against the Kubernetes schemas (PyPI's kubernetes-validate, offline), and by
  hand for the one CRD used (the Prometheus Operator's ServiceMonitor);
- for the invariants that make a pod work: probes on health_check's port and
  path, the config file where --config says, every ${file:…} a key of a mounted
  Secret, the disk log and dead letters on a writable volume big enough under a
  read-only root, a grace period above shutdown_timeout, egress to the SIEM;
- by simulating the pod: the ConfigMap, Secret and volumes laid out under a
  temporary root, `sluice validate` on the config, and for exporters this build
  has, the container's own arguments run by the real binary, probed on its
  health port and scraped on its metrics port.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

import runtime_helpers as rt
from conftest import SLUICE_BIN, _retry_while_rebuilt

# Native sidecars (initContainers with restartPolicy: Always) are on by default
# from Kubernetes 1.29; the manifests are checked against that version's schemas
# and the newest kubernetes-validate has.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())

# Exporter types whose engineers are still building them (issue 14): a
# config naming them is checked by `sluice validate` for everything else, and must
# fail only on the type. Once a type is in `sluice components` it is checked whole.
PENDING_EXPORTERS: set[str] = set()

DEFAULT_SHUTDOWN_SECONDS = 25
MIB = 1 << 20


# ----------------------------------------------------------------------------
# Schemas


def validate_schemas(objects: list[dict], versions: tuple[str, ...] = KUBERNETES_VERSIONS) -> None:
    for obj in objects:
        where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        if obj.get("apiVersion") == "monitoring.coreos.com/v1":
            check_service_monitor(obj, objects)
            continue
        for version in versions:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(f"{where} is not valid Kubernetes {version}: {error.message} at {list(error.path)}", pytrace=False)


def check_service_monitor(monitor: dict, objects: list[dict]) -> None:
    """The Operator's CRD is not in kubernetes-validate: the fields it needs, and
    that it selects a Service whose named port leads to Sluice's metrics port."""
    assert monitor["kind"] == "ServiceMonitor", monitor["kind"]
    assert set(monitor) <= {"apiVersion", "kind", "metadata", "spec"}
    spec = monitor["spec"]
    assert set(spec) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}, set(spec)
    wanted = spec["selector"]["matchLabels"]
    services = [o for o in objects if o["kind"] == "Service" and wanted.items() <= o["metadata"].get("labels", {}).items()]
    assert services, f"ServiceMonitor {monitor['metadata']['name']} selects no Service in the same set ({wanted})"
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}, set(endpoint)
        assert endpoint.get("path", "/metrics") == "/metrics"
        for service in services:
            port = next((p for p in service["spec"]["ports"] if p.get("name") == endpoint["port"]), None)
            assert port is not None, f"Service {service['metadata']['name']} has no port named {endpoint['port']}"
            pods = selected_workloads(service["spec"]["selector"], objects)
            assert pods, f"Service {service['metadata']['name']} selects no workload"
            for workload in pods:
                container = sluice_container(workload)
                assert resolve_port(container, port["targetPort"]) == Pod(workload, objects).metrics_port


def selected_workloads(selector: dict, objects: list[dict]) -> list[dict]:
    return [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")
            and selector.items() <= o["spec"]["template"]["metadata"]["labels"].items()]


# ----------------------------------------------------------------------------
# The pod


def sluice_container(workload: dict) -> dict:
    spec = workload["spec"]["template"]["spec"]
    found = [c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == "sluice"]
    assert len(found) == 1, f"{workload['metadata']['name']}: expected one container named sluice"
    return found[0]


def resolve_port(container: dict, port) -> int:
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    assert port in named, f"port {port!r} is not a named port of {container['name']} ({sorted(named)})"
    return named[port]


@functools.cache
def run_options() -> frozenset[str]:
    """The long options `sluice run --help` lists."""
    result = _retry_while_rebuilt(lambda: subprocess.run([str(SLUICE_BIN), "run", "--help"], capture_output=True, text=True, timeout=60))
    assert result.returncode == 0, result.stderr
    return frozenset(re.findall(r"^\s+(--[a-z][a-z-]*)", result.stdout, re.MULTILINE))


def parse_args(args: list[str], options: set[str]) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    it = iter(args)
    for arg in it:
        name, _, inline = arg.partition("=")
        assert name in options, f"argument {arg!r} is not an option of `sluice run` ({sorted(options)})"
        parsed.setdefault(name, []).append(inline or next(it))
    return parsed


def host_port(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]"), int(port)


def byte_size(text) -> int:
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"(\d+)\s*(|B|KiB|MiB|GiB|KB|MB|GB|Ki|Mi|Gi)", str(text).strip())
    assert match, f"not a size: {text!r}"
    unit = {"": 1, "B": 1, "KiB": 1 << 10, "Ki": 1 << 10, "MiB": MIB, "Mi": MIB, "GiB": 1 << 30, "Gi": 1 << 30,
            "KB": 1000, "MB": 1000**2, "GB": 1000**3}[match.group(2)]
    return int(match.group(1)) * unit


def seconds(text) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", str(text))
    assert match, f"not a duration: {text!r}"
    return float(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[match.group(2)]


FILE_REFERENCE = re.compile(r"\$\{file:([^}]+)\}")


@dataclass
class Pod:
    """A workload's pod template, its Sluice container and the configuration that
    container reads, resolved through the objects rendered with it."""

    workload: dict
    objects: list[dict]

    def __post_init__(self):
        self.name = f"{self.workload['kind']}/{self.workload['metadata']['name']}"
        self.spec = self.workload["spec"]["template"]["spec"]
        self.container = sluice_container(self.workload)
        self.volumes = {v["name"]: v for v in self.spec.get("volumes", [])}
        # A StatefulSet's claim per pod, as the volume it becomes.
        for claim in self.workload["spec"].get("volumeClaimTemplates", []):
            self.volumes[claim["metadata"]["name"]] = {"name": claim["metadata"]["name"], "persistentVolumeClaim": claim["spec"]}
        self.mounts = self.container.get("volumeMounts", [])

    # --- where files come from

    def mount_of(self, path: str) -> dict | None:
        """The volume mount `path` lies under (the deepest)."""
        best = None
        for mount in self.mounts:
            root = mount["mountPath"].rstrip("/") + "/"
            if (path + "/").startswith(root) and (best is None or len(root) > len(best["mountPath"])):
                best = mount
        return best

    def source_of(self, path: str) -> tuple[str, dict]:
        """The ConfigMap or Secret object a file in a mounted volume comes from."""
        mount = self.mount_of(path)
        assert mount is not None, f"{self.name}: {path} is on no volume of the sluice container"
        volume = self.volumes[mount["name"]]
        if "configMap" in volume:
            kind, name = "ConfigMap", volume["configMap"]["name"]
        elif "secret" in volume:
            kind, name = "Secret", volume["secret"]["secretName"]
        else:
            pytest.fail(f"{self.name}: {path} is on volume {mount['name']}, which is neither a ConfigMap nor a Secret", pytrace=False)
        found = [o for o in self.objects if o["kind"] == kind and o["metadata"]["name"] == name]
        assert found, f"{self.name}: {kind} {name} (mounted at {mount['mountPath']}) is not among the objects"
        return os.path.relpath(path, mount["mountPath"]), found[0]

    @staticmethod
    def keys(obj: dict) -> dict[str, str]:
        return {**(obj.get("data") or {}), **(obj.get("stringData") or {})}

    # --- the configuration

    @property
    def args(self) -> dict[str, list[str]]:
        return parse_args(self.container.get("args", []), run_options())

    @property
    def config_path(self) -> str:
        return self.args.get("--config", ["collector.yaml"])[-1]

    @property
    def data_directory(self) -> str:
        return self.args.get("--data-directory", ["data"])[-1]

    @property
    def config_text(self) -> str:
        key, source = self.source_of(self.config_path)
        assert source["kind"] == "ConfigMap", f"{self.name}: --config {self.config_path} should come from a ConfigMap"
        assert key in self.keys(source), f"{self.name}: ConfigMap {source['metadata']['name']} has no key {key} (--config {self.config_path})"
        return self.keys(source)[key]

    @property
    def config(self) -> dict:
        return yaml.safe_load(self.config_text)

    def extension(self, type_name: str) -> dict | None:
        for key, value in (self.config.get("extensions") or {}).items():
            if key.split("/")[0] == type_name and key in self.config["service"].get("extensions", []):
                return value or {}
        return None

    @property
    def health(self) -> tuple[str, int, str]:
        check = self.extension("health_check")
        assert check is not None, f"{self.name}: no health_check extension in service.extensions"
        host, port = host_port(check.get("endpoint", "0.0.0.0:13133"))
        path = check.get("path", "/")
        return host, port, path if path.startswith("/") else "/" + path

    @property
    def metrics_address(self) -> tuple[str, int]:
        metrics = ((self.config.get("service") or {}).get("telemetry") or {}).get("metrics") or {}
        return host_port(metrics.get("address", "0.0.0.0:8888"))

    @property
    def metrics_port(self) -> int:
        return self.metrics_address[1]

    @property
    def shutdown_seconds(self) -> float:
        timeout = (self.config.get("service") or {}).get("shutdown_timeout")
        return seconds(timeout) if timeout is not None else DEFAULT_SHUTDOWN_SECONDS

    @property
    def exporters(self) -> dict[str, dict]:
        used = {e for p in self.config["service"]["pipelines"].values() for e in p.get("exporters", [])}
        return {k: (v or {}) for k, v in self.config["exporters"].items() if k in used}

    def disk_pipelines(self) -> int:
        on_disk = {k for k, v in self.exporters.items() if (v.get("sending_queue") or {}).get("storage")}
        return sum(1 for p in self.config["service"]["pipelines"].values() if on_disk & set(p.get("exporters", [])))

    def is_sidecar(self) -> bool:
        return len(self.spec["containers"]) + len(self.spec.get("initContainers", [])) > 1


# ----------------------------------------------------------------------------
# Invariants


def check_pod(pod: Pod) -> None:
    c, spec, name = pod.container, pod.spec, pod.name
    config = pod.config

    # Every ${file:…} the configuration reads is a key of the Secret mounted there.
    for reference in FILE_REFERENCE.findall(pod.config_text):
        key, source = pod.source_of(reference)
        assert key in pod.keys(source), f"{name}: ${{file:{reference}}} but {source['kind']} {source['metadata']['name']} has no key {key}"
    for extension in (config.get("extensions") or {}).values():
        if extension and "filename" in extension:
            key, source = pod.source_of(extension["filename"])
            assert key in pod.keys(source), f"{name}: {extension['filename']} is not a key of {source['metadata']['name']}"

    # Probes: on health_check's port and path, which listens where the kubelet
    # reaches it (the pod IP, not the loopback).
    host, port, path = pod.health
    assert host in ("0.0.0.0", "::", ""), f"{name}: health_check listens on {host}; the kubelet probes the pod IP"
    probes = [c[p] for p in ("readinessProbe", "livenessProbe", "startupProbe") if p in c]
    assert "readinessProbe" in c and "livenessProbe" in c, f"{name}: sluice needs readiness and liveness probes"
    for probe in probes:
        assert resolve_port(c, probe["httpGet"]["port"]) == port, f"{name}: a probe's port is not health_check's {port}"
        assert probe["httpGet"].get("path", "/") == path, f"{name}: a probe's path is not health_check's {path}"

    # Metrics: where the annotation and the named port say, on every address.
    metrics_host, metrics_port = pod.metrics_address
    assert metrics_host in ("0.0.0.0", "::"), f"{name}: metrics on {metrics_host} cannot be scraped through the pod IP"
    annotations = pod.workload["spec"]["template"]["metadata"].get("annotations", {})
    assert annotations.get("prometheus.io/scrape") == "true"
    assert int(annotations["prometheus.io/port"]) == metrics_port
    assert resolve_port(c, "metrics") == metrics_port

    # Receivers: a sidecar listens on the loopback and its neighbour sends there;
    # a tier listens on every address.
    protocols = config["receivers"]["otlp"]["protocols"]
    for protocol, settings in protocols.items():
        receiver_host, receiver_port = host_port(settings["endpoint"])
        assert receiver_port == resolve_port(c, f"otlp-{protocol}"), f"{name}: the otlp-{protocol} port is not the receiver's"
        if pod.is_sidecar():
            assert receiver_host == "127.0.0.1", f"{name}: a sidecar's receiver should listen on the loopback only"
        else:
            assert receiver_host == "0.0.0.0", f"{name}: the tier's receiver must listen on the pod IP"
    if pod.is_sidecar():
        neighbours = [x for x in spec["containers"] if x["name"] != "sluice"]
        for neighbour in neighbours:
            env = {e["name"]: e.get("value") for e in neighbour.get("env", [])}
            if "OTEL_EXPORTER_OTLP_ENDPOINT" in env:
                target = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
                assert (target.hostname, target.port) == ("127.0.0.1", host_port(protocols["http"]["endpoint"])[1])

    # Security context: non-root, read-only root, no capabilities, RuntimeDefault.
    pod_context, context = spec.get("securityContext", {}), c.get("securityContext", {})
    assert context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is True
    assert context.get("runAsUser", pod_context.get("runAsUser", 0)) != 0
    assert context.get("readOnlyRootFilesystem") is True, f"{name}: the root filesystem should be read-only"
    assert context.get("allowPrivilegeEscalation") is False
    assert context.get("capabilities", {}).get("drop") == ["ALL"]
    assert context.get("seccompProfile", pod_context.get("seccompProfile", {})).get("type") == "RuntimeDefault"

    # The disk log and the dead letters are on a writable volume that holds them.
    storage = pod.extension("file_storage")
    storage_directory = storage.get("directory", pod.data_directory + "/storage") if storage is not None else None
    directories = [pod.data_directory] + ([storage_directory] if storage_directory else [])
    directories += [os.path.dirname(s["path"]) for k, s in pod.exporters.items() if k.split("/")[0] == "file"]
    for directory in directories:
        assert directory.startswith("/"), f"{name}: {directory} is relative to a read-only root"
        mount = pod.mount_of(directory)
        assert mount is not None, f"{name}: {directory} is on the read-only root filesystem"
        assert not mount.get("readOnly", False), f"{name}: {directory} is on a read-only mount"
        volume = pod.volumes.get(mount["name"], {})
        assert "emptyDir" in volume or "persistentVolumeClaim" in volume, \
            f"{name}: {directory} is on {mount['name']}, not an emptyDir or a PersistentVolumeClaim"
    if storage is not None and pod.disk_pipelines():
        max_size = byte_size(storage.get("max_size", "1GiB"))
        needed = pod.disk_pipelines() * (max_size + min(64 * MIB, max_size // 4))
        volume = pod.volumes.get(pod.mount_of(storage_directory)["name"])
        claim = volume.get("persistentVolumeClaim", {}).get("resources", {}).get("requests", {}).get("storage")
        if "emptyDir" in volume or claim:
            limit = byte_size(claim or volume["emptyDir"]["sizeLimit"])
            assert limit > needed, f"{name}: emptyDir sizeLimit {limit} cannot hold {pod.disk_pipelines()} disk logs of {max_size} (+ a segment each): {needed}"

    # Stopping: Sluice drains for shutdown_timeout (after its preStop wait) inside the grace period.
    grace = spec.get("terminationGracePeriodSeconds", 30)
    wait = 0
    pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    if pre_stop and pre_stop[0].endswith("sleep"):
        wait = float(pre_stop[1])
    assert grace > pod.shutdown_seconds + wait, f"{name}: terminationGracePeriodSeconds {grace} <= shutdown_timeout {pod.shutdown_seconds} + preStop {wait}"

    # Requests and limits; memory_limiter by percentage needs a memory limit.
    resources = c.get("resources", {})
    assert {"cpu", "memory"} <= set(resources.get("requests", {})), f"{name}: requests for cpu and memory"
    assert "memory" in resources.get("limits", {}), f"{name}: a memory limit"
    limiter = (config.get("processors") or {}).get("memory_limiter") or {}
    if "limit_mib" in limiter:
        assert limiter["limit_mib"] * MIB < byte_size(resources["limits"]["memory"])

    # The Kubernetes attributes through the downward API.
    env = {e["name"]: e for e in c.get("env", [])}
    for variable, path in (("K8S_POD_NAME", "metadata.name"), ("K8S_NAMESPACE_NAME", "metadata.namespace"), ("K8S_NODE_NAME", "spec.nodeName")):
        assert env.get(variable, {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == path, f"{name}: {variable} from {path}"
    for variable in re.findall(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)", pod.config_text):
        assert variable in env, f"{name}: the config reads ${{env:{variable}}}, which the container does not set"

    # Native sidecar: started (and ready) before the app, stopped after it.
    if c in spec.get("initContainers", []):
        assert c.get("restartPolicy") == "Always", f"{name}: an init container sidecar needs restartPolicy: Always"
        assert "startupProbe" in c, f"{name}: a native sidecar should hold the app back until it is ready"

    check_egress(pod)


def check_egress(pod: Pod) -> None:
    """Some NetworkPolicy selects the pod for Egress, and together they allow DNS
    and each exporter's destination port, and nothing else."""
    labels = pod.workload["spec"]["template"]["metadata"]["labels"]
    policies = [o for o in pod.objects if o["kind"] == "NetworkPolicy" and "Egress" in o["spec"].get("policyTypes", [])
                and o["spec"]["podSelector"].get("matchLabels", {}).items() <= labels.items()]
    assert policies, f"{pod.name}: no NetworkPolicy limits its egress"
    allowed = {p["port"] for policy in policies for rule in policy["spec"].get("egress", []) for p in rule.get("ports", [])}
    for rule in (r for policy in policies for r in policy["spec"].get("egress", [])):
        assert rule.get("ports"), f"{pod.name}: an egress rule without ports allows everything"
    wanted = {53}
    for exporter_id, settings in pod.exporters.items():
        if exporter_id.split("/")[0] not in LOCAL_EXPORTERS:
            wanted.add(destination_port(exporter_id, settings))
    assert allowed == wanted, f"{pod.name}: egress allows ports {sorted(allowed)}; the exporters need {sorted(wanted)} (and DNS)"


LOCAL_EXPORTERS = {"file", "debug", "nop"}


def destination_port(exporter_id: str, settings: dict) -> int:
    kind = exporter_id.split("/")[0]
    endpoint = settings.get("endpoint") or (settings.get("endpoints") or [None])[0]
    if kind in ("otlp_grpc", "otlp"):   # host:port, no scheme
        return host_port(endpoint)[1]
    if endpoint:
        url = urlsplit(endpoint)
        return url.port or (443 if url.scheme == "https" else 80)
    assert kind in PENDING_EXPORTERS | {"awscloudwatchlogs", "datadog"}, f"exporter {exporter_id} has no endpoint"
    return 443   # SaaS APIs (CloudWatch, Datadog, Azure) on their default HTTPS endpoints


# ----------------------------------------------------------------------------
# The pod, simulated


class PodRoot:
    """The pod's files under a temporary root: each ConfigMap and Secret key in
    its mounted folder (empty Secret values filled with a test value), each
    emptyDir an empty folder."""

    def __init__(self, pod: Pod, root: Path):
        self.pod, self.root = pod, root
        for mount in pod.mounts:
            volume = pod.volumes[mount["name"]]
            target = root / mount["mountPath"].lstrip("/")
            target.mkdir(parents=True, exist_ok=True)
            for kind, key in (("ConfigMap", "configMap"), ("Secret", "secret")):
                if key in volume:
                    name = volume[key].get("name") or volume[key].get("secretName")
                    source = next(o for o in pod.objects if o["kind"] == kind and o["metadata"]["name"] == name)
                    for file, value in pod.keys(source).items():
                        if kind == "Secret" and "data" in source and file in source["data"]:
                            import base64
                            value = base64.b64decode(value).decode()
                        (target / file).write_text(value or f"test-{file}-value")

    def path(self, inside: str) -> str:
        return str(self.root / inside.lstrip("/"))

    def rewrite(self, text: str) -> str:
        """The config with each mount's path moved under the root."""
        for mount in sorted(self.pod.mounts, key=lambda m: -len(m["mountPath"])):
            text = re.sub(re.escape(mount["mountPath"]) + r"(?=[/\s\"'}]|$)", self.path(mount["mountPath"]), text, flags=re.MULTILINE)
        return text


def validate_config(pod: Pod, root: Path) -> None:
    """`sluice validate` on the config the pod reads, files where the pod has them.
    A type still being built (PENDING_EXPORTERS) may be the only complaint."""
    pod_root = PodRoot(pod, root)
    config_file = Path(pod_root.path(pod.config_path))
    config_file.write_text(pod_root.rewrite(pod.config_text))
    env = {**os.environ, **{e["name"]: f"test-{e['name'].lower()}" for e in pod.container.get("env", []) if "valueFrom" in e}}
    result = _retry_while_rebuilt(lambda: subprocess.run([str(SLUICE_BIN), "validate", "--config", str(config_file)],
                                                         capture_output=True, text=True, timeout=60, env=env))
    pending = {k.split("/")[0] for k in pod.config.get("exporters", {})} & PENDING_EXPORTERS
    built = set(rt.sluice_components()["exporters"])
    if pending - built:
        problems = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 1 and problems, result.stdout + result.stderr
        for line in problems:
            assert any(f"unknown exporter type '{t}'" in line for t in pending - built), f"{pod.name}: {line}"
    else:
        assert result.returncode == 0, f"{pod.name}: sluice validate refused the config:\n{result.stderr}"
        for warning in ("no effect", "deprecated"):
            assert warning not in result.stderr, f"{pod.name}: the config sets a key that does nothing or an old name:\n{result.stderr}"


def run_pod(pod: Pod, root: Path, track) -> None:
    """The container's own arguments, run by the real binary with the pod's files,
    its ports moved to free ones on the loopback: the probes' URL answers 200
    and the annotation's port serves Sluice's metrics."""
    pod_root = PodRoot(pod, root)
    ports = rt.Ports()
    text = pod_root.rewrite(pod.config_text)
    for number in sorted({p["containerPort"] for p in pod.container.get("ports", [])}):
        text = re.sub(rf"(?:0\.0\.0\.0|127\.0\.0\.1):{number}\b", f"127.0.0.1:{ports[str(number)]}", text)
    # Exporters send to an address that refuses at once (nothing listens there).
    closed = rt.free_port()
    text = re.sub(r"https?://[A-Za-z0-9.-]+\.example\.com(:\d+)?", f"http://127.0.0.1:{closed}", text)
    text = re.sub(r"endpoint: [a-z0-9.-]+\.svc\.cluster\.local:\d+", f"endpoint: 127.0.0.1:{closed}", text)
    config_file = Path(pod_root.path(pod.config_path))
    config_file.write_text(text)
    args = [pod_root.path(a) if a.startswith("/") else a for a in pod.container.get("args", [])]
    env = {**os.environ, **{e["name"]: f"test-{e['name'].lower()}" for e in pod.container.get("env", []) if "valueFrom" in e}}
    stderr_path = root / "sluice.stderr.log"
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen([str(SLUICE_BIN), *args], stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, env=env, cwd=root)
    track_popen(track, process)
    _, health_port, path = pod.health
    health_url = f"http://127.0.0.1:{ports[str(health_port)]}{path}"

    def healthy():
        assert process.poll() is None, f"{pod.name}: sluice exited ({process.returncode}) with the container's arguments {shlex.join(args)}:\n{stderr_path.read_text()[-3000:]}"
        try:
            return rt.get(health_url, timeout=5).status == 200
        except OSError:
            return False

    rt.wait_until(healthy, timeout=60, what=f"{pod.name}: health_check at {health_url}")
    samples = rt.scrape(f"http://127.0.0.1:{ports[str(pod.metrics_port)]}/metrics")
    names = {s[0] for s in samples}
    assert "sluice_exporter_up" in names and "sluice_process_resident_memory_bytes" in names
    if pod.extension("file_storage") is not None and pod.disk_pipelines():
        storage = pod.extension("file_storage").get("directory", pod.data_directory + "/storage")
        rt.wait_until(lambda: any(Path(pod_root.path(storage)).rglob("*")), timeout=30, what="the disk log's files")
    process.send_signal(15)
    assert process.wait(timeout=pod.shutdown_seconds + 30) == 0, stderr_path.read_text()[-3000:]


def track_popen(track, process: subprocess.Popen) -> None:
    """Registers a bare Popen with the suite's process tracker (killed at teardown)."""

    class Tracked:
        def kill(self):
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)

    track(Tracked())


def all_pods(objects: list[dict]) -> list[Pod]:
    return [Pod(o, objects) for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
