"""The example specs in examples/ validate."""

from __future__ import annotations

from pathlib import Path

import pytest

from search_spaces import load_spec

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))


def test_the_examples_are_there() -> None:
    names = {path.stem for path in EXAMPLES}

    assert {"mnist1d-cpu", "resnet20-cifar10", "lstm-ptb", "transformer-mt"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_validates(path: Path) -> None:
    spec = load_spec(path)

    assert spec.name


def test_cpu_example_is_small_enough_for_a_laptop() -> None:
    spec = load_spec(EXAMPLES[0].parent / "mnist1d-cpu.yaml")

    assert spec.job.gpus_per_worker == 0
    assert spec.job.workers * spec.job.cpus_per_worker <= 2
    assert spec.search.max_concurrent_trials == 1
    # trials x epochs x training samples: 4 x 10 x 8000 ran `make demo` in ~2 minutes here
    train_samples = 0.8 * spec.job.workload_options.get("num_samples", 5000)
    assert spec.search.num_trials * spec.job.epochs * train_samples <= 400_000
    assert spec.search.scheduler.kind == "asha"
