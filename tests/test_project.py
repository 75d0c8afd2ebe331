"""The installed project matches what pyproject.toml promises."""
from __future__ import annotations

import importlib.metadata
import pathlib
import re
import subprocess
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + project["optional-dependencies"]["dev"]
    pins = {}
    for spec in specs:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", spec.split("#")[0].strip())
        assert m, f"dependency {spec!r} is not pinned with =="
        pins[m.group(1)] = m.group(2)
    return pins


def test_every_dependency_is_pinned_and_installed_at_its_pin():
    pins = _pins()
    assert "torch" in pins and "numpy" in pins
    for name, version in pins.items():
        installed = importlib.metadata.version(name)
        # local builds (torch's "+cpu"/"+cu128") are the same release
        assert installed.split("+")[0] == version, f"{name}: installed {installed}, pinned {version}"


def test_console_scripts_run():
    bindir = pathlib.Path(sys.executable).parent
    out = subprocess.run([bindir / "mimo", "env"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "torch" in out.stdout and "2.13.0" in out.stdout
    out = subprocess.run([bindir / "mimo-server", "env"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "python" in out.stdout


def test_unknown_subcommand_is_a_clear_error():
    bindir = pathlib.Path(sys.executable).parent
    out = subprocess.run([bindir / "mimo", "no-such-command"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "invalid choice" in out.stderr


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make demo" in readme
    assert "make test" in ci
