"""Which configurations get confirmed, with which seeds, and how the best is summarised."""

from __future__ import annotations

import statistics
from typing import Any

import pytest

from search_spaces import load_spec
from service.runtime.callbacks import LiveSweep, TrialRecord
from service.runtime.confirmation import best_summary, confirmation_seeds, missing_confirmations


def _live(confirm: dict[str, int] | None = None) -> LiveSweep:
    spec = load_spec(
        {
            "name": "c",
            "job": {"workload": "mnist1d", "global_batch_size": 64, "epochs": 2, "seed": 7},
            "space": {"lr": {"low": 0.01, "high": 1.0, "log": True}},
            "search": {"num_trials": 4, **({"confirm": confirm} if confirm else {})},
        }
    )
    return LiveSweep(spec=spec, sweep_id="c", tracker=Any, events=Any)  # type: ignore[arg-type]


def _trial(live: LiveSweep, number: int, lr: float, val: float, **fields: Any) -> TrialRecord:
    record = TrialRecord(f"t{number}", number, {"lr": lr}, status="completed")
    record.last = {"val_accuracy": val, "test_accuracy": val - 0.01}
    for name, value in fields.items():
        setattr(record, name, value)
    live.trials[record.trial_id] = record
    return record


def test_the_top_completed_configurations_are_confirmed_with_fresh_seeds() -> None:
    live = _live({"top_k": 2, "seeds": 2})
    _trial(live, 1, 0.1, 0.70)
    _trial(live, 2, 0.2, 0.90, status="pruned")  # pruned never qualifies
    _trial(live, 3, 0.3, 0.80)
    _trial(live, 4, 0.4, 0.60)
    missing = missing_confirmations(live)
    assert [(m.confirms, m.seed) for m in missing] == [
        ("t3", 1007),
        ("t3", 2007),
        ("t1", 1007),
        ("t1", 2007),
    ]
    assert confirmation_seeds(7, 2) == [1007, 2007]
    assert missing[0].params == {"lr": 0.3}


def test_a_configuration_entering_the_top_after_add_trials_is_confirmed_too() -> None:
    live = _live({"top_k": 1, "seeds": 2})
    _trial(live, 1, 0.1, 0.70)
    for seed in (1007, 2007):  # t1 was confirmed before the resume
        _trial(live, 10 + seed // 1000, 0.1, 0.69, kind="confirmation", confirms="t1", seed=seed)
    assert missing_confirmations(live) == []
    _trial(live, 5, 0.5, 0.75)  # an added trial beats it
    assert [(m.confirms, m.seed) for m in missing_confirmations(live)] == [
        ("t5", 1007),
        ("t5", 2007),
    ]


def test_the_best_has_the_best_mean_over_its_seeds_with_sample_std() -> None:
    live = _live({"top_k": 2, "seeds": 3})
    _trial(live, 1, 0.1, 0.95)  # best in the search, worse when confirmed
    _trial(live, 2, 0.2, 0.90)
    runs = {"t1": [0.80, 0.84, 0.82], "t2": [0.88, 0.86, 0.87]}
    number = 10
    for confirms, values in runs.items():
        for seed, value in zip(confirmation_seeds(7, 3), values, strict=True):
            number += 1
            _trial(live, number, 0.0, value, kind="confirmation", confirms=confirms, seed=seed)
    best = best_summary(live, "accuracy")
    assert best is not None and best["trial_id"] == "t2"
    summary = best["confirmation"]
    assert summary["n"] == 3
    assert summary["validation"]["mean"] == pytest.approx(statistics.mean(runs["t2"]))
    assert summary["validation"]["std"] == pytest.approx(statistics.stdev(runs["t2"]))
    assert summary["test"]["std"] == pytest.approx(statistics.stdev(runs["t2"]))
    # the model: the median-validation run (0.87)
    model = live.trials[best["model_trial_id"]]
    assert model.last["val_accuracy"] == 0.87 and best["note"] is None


def test_without_confirmation_the_best_says_it_rests_on_one_seed() -> None:
    live = _live()
    _trial(live, 1, 0.1, 0.70)
    _trial(live, 2, 0.2, 0.80, status="pruned")  # pruned trials count without confirmation
    best = best_summary(live, "accuracy")
    assert best is not None and best["trial_id"] == "t2" and best["confirmation"] is None
    assert "rests on one seed" in best["note"]
