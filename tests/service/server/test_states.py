"""The state machine, as a table: every allowed and refused sweep and trial transition."""

from __future__ import annotations

import pytest

from service.server.states import (
    SWEEP_TRANSITIONS,
    IllegalTransition,
    check_sweep_transition,
    check_trial_transition,
)
from service.wire import SweepState, TrialStatus

S, T = SweepState, TrialStatus

ALLOWED = [
    (S.QUEUED, S.STARTING),
    (S.QUEUED, S.CANCELLED),
    (S.STARTING, S.RUNNING),
    (S.STARTING, S.STARTING),
    (S.STARTING, S.QUEUED),
    (S.RUNNING, S.STARTING),
    (S.RUNNING, S.CANCELLING),
    (S.RUNNING, S.SUCCEEDED),
    (S.RUNNING, S.FAILED),
    (S.CANCELLING, S.CANCELLED),
    (S.SUCCEEDED, S.QUEUED),
    (S.FAILED, S.QUEUED),
    (S.CANCELLED, S.QUEUED),
]


@pytest.mark.parametrize(("current", "target"), ALLOWED)
def test_allowed(current: SweepState, target: SweepState) -> None:
    check_sweep_transition(current, target)


REFUSED = [
    (current, target)
    for current in SweepState
    for target in SweepState
    if target not in SWEEP_TRANSITIONS[current]
]


@pytest.mark.parametrize(("current", "target"), REFUSED)
def test_refused_names_the_current_state(current: SweepState, target: SweepState) -> None:
    with pytest.raises(IllegalTransition) as raised:
        check_sweep_transition(current, target)
    assert raised.value.current == current
    assert f"is {current.value}" in raised.value.message


def test_every_final_state_can_only_be_resumed() -> None:
    for state in (S.SUCCEEDED, S.FAILED, S.CANCELLED):
        assert SWEEP_TRANSITIONS[state] == {S.QUEUED}


@pytest.mark.parametrize(
    ("current", "target", "ok"),
    [
        (T.PENDING, T.RUNNING, True),
        (T.RUNNING, T.COMPLETED, True),
        (T.RUNNING, T.DIVERGED, True),
        (T.FAILED, T.RUNNING, True),
        (T.COMPLETED, T.RUNNING, False),
        (T.PRUNED, T.COMPLETED, False),
        (T.DIVERGED, T.FAILED, False),
    ],
)
def test_trial_transitions(current: TrialStatus, target: TrialStatus, ok: bool) -> None:
    if ok:
        check_trial_transition(current, target)
    else:
        with pytest.raises(IllegalTransition):
            check_trial_transition(current, target)
