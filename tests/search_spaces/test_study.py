"""The study spec: its cells, its rules, and field-path errors."""

from __future__ import annotations

from typing import Any

import pytest

from search_spaces import SpecError
from search_spaces.study import load_study


def _study(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "scaling",
        "base": {
            "job": {"workload": "mnist1d", "workers": 2, "global_batch_size": 128, "epochs": 1},
            "objective": "val_accuracy",
        },
        "batch_sizes": [512, 128],
        "arms": [{"preset": "sgd-baseline"}, {"preset": "extrap-gradient"}, {"preset": "past"}],
        "budget": {"num_trials": 4, "epochs": 10, "scheduler": "asha"},
        "confirm": {"top_k": 2, "seeds": 3},
    }
    data.update(overrides)
    return data


def _errors(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SpecError) as caught:
        load_study(data)
    return {error.path: error.message for error in caught.value.errors}


def test_cells_follow_the_rules_of_a_study() -> None:
    cells = {cell.key: cell for cell in load_study(_study()).cells()}
    assert sorted(cells) == sorted(
        f"b{b}-{arm}-e{e}"
        for b in (128, 512)
        for arm, e in (
            ("sgd-baseline", 10),
            ("sgd-baseline", 20),  # one-pass arms also run at twice the epochs
            ("extrap-gradient", 10),
            ("past", 10),
            ("past", 20),
        )
    )
    cell = cells["b512-extrap-gradient-e10"]
    assert cell.passes == 2 and cell.comparisons == ("equal_epochs", "equal_compute")
    assert cells["b512-past-e20"].comparisons == ("equal_compute",)
    spec = cell.spec
    assert spec.job.global_batch_size == 512 and spec.job.epochs == 10
    assert spec.job.schedule.reference_batch_size == 128  # one lr search at every batch size
    assert spec.job.schedule.warmup_epochs == pytest.approx(0.5)  # 5% of the run
    assert cells["b512-past-e20"].spec.job.schedule.warmup_epochs == pytest.approx(1.0)
    assert "warmup_epochs" not in spec.space  # the study fixes it
    assert spec.search.num_trials == 4 and spec.search.confirm is not None
    assert spec.search.scheduler.kind == "asha"
    assert spec.mlflow_experiment == "scaling"  # every cell in the study's experiment


def test_equal_epochs_only_gives_one_cell_per_arm_and_batch() -> None:
    cells = load_study(_study(compute="equal_epochs")).cells()
    assert len(cells) == 2 * 3 and {c.epochs for c in cells} == {10}


@pytest.mark.parametrize(
    ("overrides", "path", "fragment"),
    [
        ({"arms": [{"preset": "no-such-arm"}]}, "arms.0.preset", "unknown preset"),
        ({"arms": [{"preset": "extrap-paper"}]}, "arms.0", "mixes variants of different cost"),
        ({"batch_sizes": [128, 129]}, "batch_sizes.1", "does not divide evenly"),
        ({"batch_sizes": []}, "batch_sizes", "at least 1"),
        ({"arms": []}, "arms", "at least 1"),
        ({"batch_sizes": [128, 128]}, "batch_sizes.1", "listed twice"),
        ({"arms": [{"preset": "past"}, {"preset": "past"}]}, "arms.1.name", "its own name"),
        (
            {"arms": [{"preset": "past", "space": {"gamma_ratio": {"low": 2, "high": 1}}}]},
            "arms.0.space.gamma_ratio.low",
            "above high",
        ),
        ({"budget": {"epochs": 0}}, "budget.epochs", "greater than or equal to 1"),
        ({"base": {"path": "base.yaml"}}, "base.path", "inline the base spec"),
    ],
)
def test_a_bad_study_gets_a_field_path_error(
    overrides: dict[str, Any], path: str, fragment: str
) -> None:
    errors = _errors(_study(**overrides))
    assert path in errors, errors
    assert fragment in errors[path]


def test_a_mixed_arm_names_its_variants() -> None:
    message = _errors(_study(arms=[{"preset": "extrap-paper"}]))["arms.0"]
    assert "past take one" in message and "gradient, gradient+noise two" in message
