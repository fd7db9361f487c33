"""The Collector compatibility corpus: real OpenTelemetry Collector configs, as
published, run through `sluice validate` unchanged.

collector_configs/valid/*.yaml must validate (exit 0); collector_configs/invalid/
*.yaml are configs published broken, and must be refused with exactly the error
lines written in their header. Each file opens with a comment saying where it was
published (repository, commit, path, section) and what, if anything, was added
around a slice to make it a whole config. Header lines the test reads:

    # env: NAME=value      set for that config (the rest of the environment is not passed)
    # expect: <line>       (invalid/ only) one error line, exactly as printed; all of
                           them, in order; warnings ("warning: ...") are not compared
    # xfail: <gap>         Sluice does not accept this config yet; the reason names the
                           gap. Strict: remove the line when the gap is closed.

Sluice is run in the corpus directory with the bare file name, so messages start
with "name.yaml:line".
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import runtime_helpers as rt
from conftest import _retry_while_rebuilt

CORPUS = Path(__file__).resolve().parent / "collector_configs"
VALID = sorted((CORPUS / "valid").glob("*.yaml"))
INVALID = sorted((CORPUS / "invalid").glob("*.yaml"))
VALIDATE_TIMEOUT = 60


def _header(path: Path) -> list[str]:
    """The comment lines before the first line of YAML."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    return lines


def _directives(path: Path, name: str) -> list[str]:
    prefix = f"{name}:"
    return [line[len(prefix):].strip() for line in _header(path) if line.startswith(prefix)]


def _params(paths: list[Path]):
    params = []
    for path in paths:
        gaps = _directives(path, "xfail")
        marks = [pytest.mark.xfail(strict=True, reason="; ".join(gaps))] if gaps else []
        params.append(pytest.param(path, id=path.stem, marks=marks))
    return params


def _validate(path: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    # Only what the config's header asks for, so that the host's AWS_REGION, tokens
    # or ~/.aws never decide the outcome.
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(tmp_path)}
    for assignment in _directives(path, "env"):
        name, _, value = assignment.partition("=")
        env[name.strip()] = value.strip()
    result = _retry_while_rebuilt(
        lambda: subprocess.run(
            [str(rt.SLUICE_BIN), "validate", "--config", path.name],
            cwd=path.parent,
            env=env,
            capture_output=True,
            text=True,
            timeout=VALIDATE_TIMEOUT,
        )
    )
    assert result.returncode in (0, 1), f"sluice validate crashed ({result.returncode}) on {path.name}:\n{result.stderr}"
    return result


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line and not line.startswith("warning: ")]


@pytest.mark.parametrize("path", _params(VALID))
def test_published_config_validates_unchanged(path: Path, tmp_path: Path):
    result = _validate(path, tmp_path)
    assert result.returncode == 0, f"{path.name} refused:\n{result.stderr}"
    assert result.stdout.startswith(f"{path.name}: valid"), result.stdout
    assert _errors(result.stderr) == [], result.stderr


@pytest.mark.parametrize("path", _params(INVALID))
def test_published_broken_config_is_refused_with_its_messages(path: Path, tmp_path: Path):
    expected = _directives(path, "expect")
    assert expected, f"{path.name} has no '# expect:' line"
    result = _validate(path, tmp_path)
    assert result.returncode == 1, f"{path.name} accepted:\n{result.stdout}{result.stderr}"
    assert "valid" not in result.stdout
    assert _errors(result.stderr) == expected, f"stderr:\n{result.stderr}"


def test_corpus_is_large_enough_and_every_config_says_where_it_came_from():
    assert len(VALID) >= 25, f"{len(VALID)} valid configs; the corpus promises at least 25"
    assert INVALID
    for path in VALID + INVALID:
        header = _header(path)
        assert header and header[0].startswith("Source: "), f"{path.name} does not open with '# Source: ...'"
        assert any("https://" in line for line in header), f"{path.name} has no address for its source"
