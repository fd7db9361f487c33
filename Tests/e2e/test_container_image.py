"""deploy/Dockerfile: the runtime stage installs exactly the Debian packages that
hold the shared libraries the binary links (and ca-certificates), runs as a
non-root user, exposes the ports its default configuration listens on, and that
configuration passes `sluice validate`.

No container runtime here: the libraries are read from `ldd` of the binary this
suite tests (.build/debug/sluice, built on the same Debian release as the
runtime stage) and mapped to packages with `dpkg -S`. The debug build links the
Swift runtime and Foundation as shared libraries from the toolchain; the image's
release build links them in (--static-swift-stdlib, checked below), so those are
the only libraries allowed to come from no package."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import yaml

from conftest import REPO_ROOT, SLUICE_BIN

DOCKERFILE = REPO_ROOT / "deploy" / "Dockerfile"
EXTRA = {"ca-certificates"}   # not linked: the system CA bundle for exporters' TLS


def stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), per stage."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            out.append([])
        out[-1].append(line)
    return out


def installed_by(stage: list[str]) -> set[str]:
    packages = set()
    for line in stage:
        if line.startswith("RUN "):
            for command in re.split(r"&&|;", line[4:]):
                words = shlex.split(command)
                if "apt-get" in words and "install" in words:
                    packages |= {w for w in words[words.index("install") + 1:] if not w.startswith("-")}
    return packages


def linked_libraries(binary: Path) -> list[tuple[str, str]]:
    result = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    libraries = []
    for line in result.stdout.splitlines():
        match = re.match(r"\s*(\S+)(?: => (\S+))? \(0x", line)
        assert match, f"unexpected ldd line: {line!r}"
        name, path = match.group(1), match.group(2) or match.group(1)
        assert path != "not", f"{name} not found"
        libraries.append((name, path))
    return libraries


def package_of(path: str) -> str | None:
    for candidate in (path, str(Path(path).resolve())):
        result = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True, timeout=60)
        if result.returncode == 0:
            return result.stdout.split(":")[0].strip()
    return None


def test_runtime_stage_installs_the_packages_of_every_linked_library():
    assert shutil.which("dpkg"), "the libraries are mapped to packages with dpkg -S: this suite runs on Debian, as the image does"
    build, runtime = stages()[0], stages()[-1]
    assert build[0].split()[1].startswith("swift:") and build[0].split()[1].endswith("-bookworm")
    assert runtime[0].split()[1] == "debian:bookworm-slim", "the runtime's Debian release must be the build's"
    assert "--static-swift-stdlib" in " ".join(build)
    swift = shutil.which("swift")
    toolchain_libs = Path(swift).resolve().parent.parent / "lib" / "swift" / "linux" if swift else None
    needed, from_toolchain = set(), []
    for name, path in linked_libraries(SLUICE_BIN):
        if name.startswith("linux-vdso"):
            continue
        if toolchain_libs and Path(path).resolve().is_relative_to(toolchain_libs.resolve()):
            from_toolchain.append(name)
            continue
        package = package_of(path)
        assert package, f"{name} ({path}) belongs to no Debian package: the image cannot install it"
        needed.add(package)
    # The Swift runtime, and nothing else, is what --static-swift-stdlib links in.
    assert all(re.match(r"lib(swift|_?Foundation|dispatch|BlocksRuntime|_FoundationICU)", n) for n in from_toolchain), from_toolchain
    installed = installed_by(runtime)
    assert needed - installed == set(), f"the runtime stage does not install {sorted(needed - installed)}"
    assert installed - needed - EXTRA == set(), f"the runtime stage installs {sorted(installed - needed - EXTRA)}, which the binary does not link"
    # What the build stage needs to link against them: the -dev packages of the Makefile.
    makefile = (REPO_ROOT / "Makefile").read_text()
    dev = {p for p in re.search(r"^APT_PACKAGES := (.+)$", makefile, re.MULTILINE).group(1).split() if p.endswith("-dev") and p.startswith("lib") and "clang" not in p}
    assert dev <= installed_by(build), f"the build stage lacks {sorted(dev - installed_by(build))}"


def test_image_runs_as_non_root_with_its_ports_and_default_config():
    runtime = stages()[-1]
    user = next(line.split()[1] for line in runtime if line.startswith("USER "))
    assert user.split(":")[0] not in ("0", "root")
    exposed = {int(p) for line in runtime if line.startswith("EXPOSE ") for p in line.split()[1:]}
    assert exposed == {4317, 4318, 8888, 13133}
    copied = {line.split()[-1]: line.split()[-2] for line in runtime if line.startswith("COPY ") and "--from" not in line}
    cmd = next(line for line in runtime if line.startswith("CMD "))
    args = yaml.safe_load(cmd[4:])
    config_in_image = args[args.index("--config") + 1]
    source = REPO_ROOT / copied[config_in_image]
    config = yaml.safe_load(source.read_text())
    listening = {int(e.rsplit(":", 1)[1]) for e in (
        config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"], config["receivers"]["otlp"]["protocols"]["http"]["endpoint"],
        config["extensions"]["health_check"]["endpoint"], config["service"]["telemetry"]["metrics"]["address"])}
    assert listening == exposed
    # A container's ports are reached through its own address: not the loopback.
    for endpoint in (config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"], config["service"]["telemetry"]["metrics"]["address"]):
        assert endpoint.startswith("0.0.0.0:")
    # Everything the default config writes is under the volume the image declares.
    volume = next(yaml.safe_load(line[7:]) for line in runtime if line.startswith("VOLUME "))[0]
    data_directory = args[args.index("--data-directory") + 1]
    assert data_directory.startswith(volume)
    for exporter in config["exporters"].values():
        assert exporter["path"].startswith(volume + "/")
    result = subprocess.run([str(SLUICE_BIN), "validate", "--config", str(source)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
