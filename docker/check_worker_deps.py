#!/usr/bin/env python3
"""Check that the worker image's Python dependencies resolve against its CUDA build of torch.

The worker image is ``TORCH_IMAGE`` (``pytorch/pytorch:<torch>-cuda<X.Y>-cudnn<N>-runtime``) plus
``pip install --constraint torch==<TORCH_VERSION> extrap_tune-*.whl`` (``docker/Dockerfile``).
Three checks, most exact first; none installs anything:

``--docker``
    Inside ``TORCH_IMAGE``: ``pip install --dry-run`` of the package on the image's own Python and
    torch, and a failure if pip would replace that torch. Needs a Docker engine (pulls the image).
default
    Here, for the image's platform (``--python-version``, ``--glibc``): torch
    ``<TORCH_VERSION>+cu<XY>`` from the PyTorch CUDA index, everything else from PyPI.
``--pypi``
    The same with ``torch==<TORCH_VERSION>`` from PyPI (the same release, PyPI's own CUDA build),
    for machines that reach PyPI but not download.pytorch.org.

Without ``--docker`` no CUDA library is downloaded: pip fetches the torch wheel alone
(``--no-deps``, ~0.5-1 GB) to read its requirements, then a stub wheel carrying the same
requirements minus the CUDA runtime wheels (``nvidia-*``, ``cuda-*``, ``triton``, several GB,
which no other dependency constrains) stands in for torch while pip resolves the rest.

Example:
    $ python docker/check_worker_deps.py --pypi --python-version 3.12
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "docker" / "Dockerfile"
PYPI_INDEX = "https://pypi.org/simple"
CUDA_INDEX = "https://download.pytorch.org/whl/{cuda_tag}"
# torch's CUDA runtime wheels: pinned by torch alone, multi-GB, left out of the stub.
_CUDA_RUNTIME = re.compile(r"^(nvidia-|cuda-|triton\b)", re.IGNORECASE)
_IMAGE_TAG = re.compile(r":(?P<torch>\d+\.\d+\.\d+)-cuda(?P<major>\d+)\.(?P<minor>\d+)-")


def dockerfile_args(path: Path = DOCKERFILE) -> dict[str, str]:
    """Default values of the Dockerfile's ``ARG NAME=value`` lines."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = re.match(r"\s*ARG\s+(\w+)=(\S+)", line)
        if match:
            found.setdefault(match[1], match[2].strip("\"'"))
    return found


def _pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", *args]
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def _target_flags(python_version: str, glibc: str, target: Path) -> list[str]:
    """pip flags selecting wheels for CPython ``python_version`` on glibc ``glibc`` x86_64.

    pip takes platform options only with ``--target``; ``--dry-run`` leaves it empty.
    """
    newest = int(glibc.split(".")[1])
    platforms = [f"manylinux_2_{minor}_x86_64" for minor in range(newest, 16, -1)]
    platforms += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
    flags = ["--target", str(target), "--python-version", python_version, "--implementation", "cp"]
    flags += ["--only-binary=:all:"]
    for platform in platforms:
        flags += ["--platform", platform]
    return flags


def _report(path: Path) -> list[dict[str, Any]]:
    installs: list[dict[str, Any]] = json.loads(path.read_text())["install"]
    return installs


def _stub_wheel(name: str, version: str, requires: list[str], directory: Path) -> Path:
    """A wheel that installs nothing and declares ``requires``."""
    dist_info = f"{name}-{version}.dist-info"
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    metadata += [f"Requires-Dist: {requirement}" for requirement in requires]
    files = {
        f"{dist_info}/METADATA": "\n".join(metadata) + "\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: check_worker_deps\n"
        "Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{dist_info}/RECORD"] = (
        "".join(f"{item},,\n" for item in files) + f"{dist_info}/RECORD,,\n"
    )
    with zipfile.ZipFile(wheel, "w") as archive:
        for item, text in files.items():
            archive.writestr(item, text)
    return wheel


def check_locally(
    *, torch_spec: str, index: str, python_version: str, glibc: str, workdir: Path
) -> int:
    """Resolve the package's dependencies with a stub standing in for ``torch_spec``."""
    flags = _target_flags(python_version, glibc, workdir / "target")
    torch_report = workdir / "torch.json"
    index_flags = ["--index-url", index]
    if index != PYPI_INDEX:
        index_flags += ["--extra-index-url", PYPI_INDEX]
    _pip(
        "install", "--dry-run", "--ignore-installed", "--no-deps", "--quiet",
        "--report", str(torch_report), *flags, *index_flags, torch_spec,
    )  # fmt: skip
    (torch,) = _report(torch_report)
    version = torch["metadata"]["version"]
    requires = torch["metadata"].get("requires_dist", [])
    kept = [item for item in requires if not _CUDA_RUNTIME.match(item)]
    print(f"torch {version} from {torch['download_info']['url']}")
    print("  left out of the resolve (CUDA runtime wheels):")
    for item in sorted(set(requires) - set(kept)):
        print(f"    {item}")
    stub = _stub_wheel("torch", version, kept, workdir)

    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    report = workdir / "worker.json"
    _pip(
        "install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report),
        *flags, "--index-url", PYPI_INDEX, f"torch @ {stub.as_uri()}", *dependencies,
    )  # fmt: skip
    installs = _report(report)
    resolved = {item["metadata"]["name"].lower(): item for item in installs}
    torch_url = resolved["torch"]["download_info"]["url"]
    if torch_url != stub.as_uri():
        print(f"FAIL: pip chose another torch: {torch_url}")
        return 1
    print(f"OK: {len(installs)} distributions resolve with torch {version} "
          f"for CPython {python_version}, glibc {glibc}, x86_64:")  # fmt: skip
    for name in sorted(resolved):
        print(f"  {name}=={resolved[name]['metadata']['version']}")
    return 0


_IN_IMAGE = r"""
set -eu
mkdir /tmp/src
cp -r /src/pyproject.toml /src/README.md /src/service /src/trainers /src/search_spaces /tmp/src/
python --version
python -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
echo "torch==$TORCH_VERSION" > /tmp/torch-constraint.txt
pip install --dry-run --quiet --report /tmp/report.json \
    --constraint /tmp/torch-constraint.txt /tmp/src
python - <<'PY'
import json
installs = json.load(open("/tmp/report.json"))["install"]
names = sorted(f"{i['metadata']['name']}=={i['metadata']['version']}" for i in installs)
print("would install:", *names, sep="\n  ")
replaced = [n for n in names if n.lower().startswith(("torch==", "nvidia-", "triton=="))]
if replaced:
    raise SystemExit(f"FAIL: pip would replace the image's CUDA stack: {replaced}")
print("OK: the image's torch is kept")
PY
"""


def check_in_image(*, image: str, torch_version: str) -> int:
    """``pip install --dry-run`` of the package inside ``image``."""
    if shutil.which("docker") is None:
        print("FAIL: --docker needs the docker CLI and a running engine")
        return 2
    command = [
        "docker", "run", "--rm", "--entrypoint", "bash",
        "--env", f"TORCH_VERSION={torch_version}",
        "--volume", f"{REPO}:/src:ro", image, "-c", _IN_IMAGE,
    ]  # fmt: skip
    print("+", " ".join(command[:-1]), "<script>", flush=True)
    return subprocess.run(command, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--docker", action="store_true", help="resolve inside TORCH_IMAGE")
    where.add_argument("--pypi", action="store_true", help="take torch from PyPI")
    parser.add_argument("--python-version", default="3.11", help="the image's Python (3.11)")
    parser.add_argument("--glibc", default="2.35", help="the image's glibc (Ubuntu 22.04: 2.35)")
    args = parser.parse_args(argv)

    build_args = dockerfile_args()
    image, torch_version = build_args["TORCH_IMAGE"], build_args["TORCH_VERSION"]
    tag = _IMAGE_TAG.search(image)
    if tag is None:
        print(f"FAIL: cannot read the torch and CUDA versions from TORCH_IMAGE={image}")
        return 2
    if tag["torch"] != torch_version:
        print(f"FAIL: TORCH_IMAGE={image} but TORCH_VERSION={torch_version}")
        return 1
    cuda_tag = f"cu{tag['major']}{tag['minor']}"
    print(f"worker image: {image} (torch {torch_version}, {cuda_tag})")
    if args.docker:
        return check_in_image(image=image, torch_version=torch_version)

    if args.pypi:
        torch_spec, index = f"torch=={torch_version}", PYPI_INDEX
    else:
        torch_spec = f"torch=={torch_version}+{cuda_tag}"
        index = CUDA_INDEX.format(cuda_tag=cuda_tag)
    with tempfile.TemporaryDirectory(prefix="check-worker-deps-") as workdir:
        try:
            return check_locally(
                torch_spec=torch_spec,
                index=index,
                python_version=args.python_version,
                glibc=args.glibc,
                workdir=Path(workdir),
            )
        except subprocess.CalledProcessError as error:
            print(f"FAIL: pip exited with {error.returncode}")
            if not args.pypi:
                print(f"(if {index} is unreachable from here, rerun with --pypi)")
            return 1


if __name__ == "__main__":
    sys.exit(main())
