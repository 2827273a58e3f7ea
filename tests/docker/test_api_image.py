"""The api image's dependency set: docker/requirements-api.txt plus the package without deps."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.docker.conftest import DOCKER_DIR, REPO

# Installed in the worker image only; the api image must not need them.
WORKER_ONLY = ("torch", "ray", "mlflow", "optuna", "numpy")
# What the api process imports: the `extrap` console script, the FastAPI app, its settings.
API_MODULES = ("service.cli.main", "service.server.api.main", "service.settings", "search_spaces")
PROJECT_PACKAGES = ("service", "trainers", "search_spaces")
# Runs in a fresh interpreter: importing what the api image lacks fails as it would there.
_IMPORT_CHECK = """
import importlib.abc, json, sys
missing = set(json.loads(sys.argv[1]))
class ApiImageOnly(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        top = fullname.partition(".")[0]
        if top in missing:
            raise ModuleNotFoundError(f"{top} is not in the api image", name=top)
        return None
sys.meta_path.insert(0, ApiImageOnly())
for module in sys.argv[2:]:
    __import__(module)
"""


def _api_requirements() -> list[Requirement]:
    lines = (DOCKER_DIR / "requirements-api.txt").read_text().splitlines()
    return [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]


def _package_requirements() -> dict[str, Requirement]:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    requirements = map(Requirement, pyproject["project"]["dependencies"])
    return {canonicalize_name(requirement.name): requirement for requirement in requirements}


def _closure(requirements: list[Requirement]) -> set[str]:
    """The distributions ``requirements`` install, from this environment's metadata."""
    found: set[str] = set()
    pending = [(canonicalize_name(item.name), frozenset(item.extras)) for item in requirements]
    while pending:
        name, extras = pending.pop()
        if name in found and not extras:
            continue
        found.add(name)
        for line in importlib.metadata.requires(name) or []:
            requirement = Requirement(line)
            marker = requirement.marker
            if marker is None or any(marker.evaluate({"extra": e}) for e in extras or {""}):
                pending.append((canonicalize_name(requirement.name), frozenset(requirement.extras)))
    return found


def test_api_pins_satisfy_the_package_ranges() -> None:
    package = _package_requirements()
    for requirement in _api_requirements():
        (pin,) = requirement.specifier
        assert pin.operator == "==", f"{requirement}: pin an exact version"
        declared = package.get(canonicalize_name(requirement.name))
        if declared is not None:
            assert declared.specifier.contains(pin.version), f"{requirement} vs {declared}"
            assert requirement.extras == declared.extras, requirement.name


def test_api_requirements_leave_out_the_worker_stack() -> None:
    names = _closure(_api_requirements())
    assert not names & set(WORKER_ONLY), sorted(names & set(WORKER_ONLY))


def test_api_modules_import_with_the_api_requirements_only() -> None:
    """Modules installed here by any other distribution (torch, Ray, ...) are made unimportable."""
    distributions = _closure(_api_requirements())
    missing = {
        module
        for module, owners in importlib.metadata.packages_distributions().items()
        if not {canonicalize_name(owner) for owner in owners} & distributions
    } - set(PROJECT_PACKAGES)
    assert set(WORKER_ONLY) <= missing
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_CHECK, json.dumps(sorted(missing)), *API_MODULES],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stderr.strip().splitlines()[-1]
