"""The Lambda code's dependency lists agree with pyproject.toml and stay light.

tools/requirements-py313.txt is the Python 3.13 test environment (`make test-py313`); the layer's
requirements.txt, when there is one, is what `sam build` ships to Lambda. Both pin exactly, with
pyproject.toml's versions, and neither carries the training stack.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PY313 = ROOT / "tools" / "requirements-py313.txt"
LAYER = ROOT / "layers" / "shepherd" / "requirements.txt"
HEAVY = {"sagemaker", "scikit-learn", "pandas", "scipy", "matplotlib", "moto", "localcloud"}
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*(?P<version>[^\s;#]+)\s*$")


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(path: Path) -> dict[str, str]:
    """name -> version of a requirements file; every line must pin exactly."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = PIN.match(line)
        assert match, f"{path.name}:{number}: {line!r} is not pinned as name==version"
        pins[_normalize(match["name"])] = match["version"]
    return pins


def _pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        specs += extra
    pins = {}
    for spec in specs:
        match = PIN.match(spec)
        if match:
            pins[_normalize(match["name"])] = match["version"]
    return pins


def test_py313_requirements_use_pyprojects_versions():
    pyproject = _pyproject_pins()
    wrong = {
        name: (version, pyproject[name])
        for name, version in _requirements(PY313).items()
        if name in pyproject and pyproject[name] != version
    }
    assert wrong == {}, "tools/requirements-py313.txt (left) differs from pyproject.toml (right)"


def test_py313_requirements_leave_the_training_stack_out():
    assert set(_requirements(PY313)) & (HEAVY - {"moto"}) == set()


@pytest.mark.skipif(not LAYER.exists(), reason="the layer has no requirements.txt")
def test_layer_ships_what_the_py313_tests_run_with():
    # Given what `sam build` installs into the layer and what the Python 3.13 tests install
    layer, tested = _requirements(LAYER), _requirements(PY313)
    # Then every shipped package is tested, at the version shipped
    assert {name: version for name, version in layer.items() if tested.get(name) != version} == {}
    # And nothing heavy (nor a test tool) ships to Lambda
    assert set(layer) & HEAVY == set()
