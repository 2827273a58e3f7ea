"""Sweep and trial transitions: the one place where a change of state is allowed or refused.

A sweep moves ``queued → starting → running → succeeded | failed``; a cancel passes through
``cancelling`` (while its driver is being stopped) to ``cancelled``; a finished sweep can be
resumed (back to ``queued``). Every state change in the service goes through
:func:`check_sweep_transition`, so an illegal one raises :class:`IllegalTransition` (the API
turns it into a 409 that names the current state).

Example:
    >>> check_sweep_transition(SweepState.QUEUED, SweepState.STARTING)
    >>> try:
    ...     check_sweep_transition(SweepState.SUCCEEDED, SweepState.CANCELLING)
    ... except IllegalTransition as exc:
    ...     print(exc)
    cannot cancel a sweep that is succeeded
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from service.wire.states import FINAL_TRIAL_STATUSES, SweepState, TrialStatus

__all__ = [
    "SWEEP_TRANSITIONS",
    "TRIAL_TRANSITIONS",
    "IllegalTransition",
    "check_sweep_transition",
    "check_trial_transition",
]


_S = SweepState
_T = TrialStatus

SWEEP_TRANSITIONS: Mapping[SweepState, frozenset[SweepState]] = MappingProxyType(
    {
        # queued: waiting for a free slot; a cancel needs no driver to stop.
        _S.QUEUED: frozenset({_S.STARTING, _S.CANCELLED}),
        # starting: a driver was submitted. starting → starting is a relaunch, → queued a
        # submission that could not reach Ray (retried later), → succeeded/failed a driver
        # that finished (or could not be launched) before it reported running.
        _S.STARTING: frozenset(
            {_S.STARTING, _S.RUNNING, _S.QUEUED, _S.CANCELLING, _S.SUCCEEDED, _S.FAILED}
        ),
        # running → starting: the driver died and is relaunched with --resume.
        _S.RUNNING: frozenset({_S.STARTING, _S.CANCELLING, _S.SUCCEEDED, _S.FAILED}),
        # cancelling: a driver that finished before the stop took effect keeps its outcome.
        _S.CANCELLING: frozenset({_S.CANCELLED, _S.SUCCEEDED, _S.FAILED}),
        _S.SUCCEEDED: frozenset({_S.QUEUED}),
        _S.FAILED: frozenset({_S.QUEUED}),
        _S.CANCELLED: frozenset({_S.QUEUED}),
    }
)

TRIAL_TRANSITIONS: Mapping[TrialStatus, frozenset[TrialStatus]] = MappingProxyType(
    {
        _T.PENDING: frozenset({_T.RUNNING, *FINAL_TRIAL_STATUSES}),
        # running → running: a resumed driver restarts the trial from its checkpoint.
        _T.RUNNING: frozenset({_T.RUNNING, *FINAL_TRIAL_STATUSES}),
        _T.COMPLETED: frozenset(),
        _T.PRUNED: frozenset(),
        # a failed trial may be retried by a resumed driver (Tune restarts errored trials).
        _T.FAILED: frozenset({_T.RUNNING}),
        _T.DIVERGED: frozenset(),
    }
)

# What the user was trying to do, for the error message ("cannot resume a sweep that is ...").
_VERBS: Mapping[SweepState, str] = MappingProxyType(
    {
        _S.QUEUED: "resume",
        _S.STARTING: "start",
        _S.RUNNING: "run",
        _S.CANCELLING: "cancel",
        _S.CANCELLED: "cancel",
        _S.SUCCEEDED: "finish",
        _S.FAILED: "fail",
    }
)


class IllegalTransition(Exception):
    """A state change the state machine does not allow.

    Attributes:
        current: the state the object is in.
        target: the state that was asked for.
        message: a sentence for the user, naming the current state.
    """

    def __init__(self, current: str, target: str, message: str) -> None:
        self.current = current
        self.target = target
        self.message = message
        super().__init__(message)


def check_sweep_transition(current: SweepState | str, target: SweepState | str) -> None:
    """Raise :class:`IllegalTransition` unless a sweep may go from ``current`` to ``target``."""
    current, target = SweepState(current), SweepState(target)
    if target not in SWEEP_TRANSITIONS[current]:
        verb = _VERBS[target]
        raise IllegalTransition(current, target, f"cannot {verb} a sweep that is {current}")


def check_trial_transition(current: TrialStatus | str, target: TrialStatus | str) -> None:
    """Raise :class:`IllegalTransition` unless a trial may go from ``current`` to ``target``."""
    current, target = TrialStatus(current), TrialStatus(target)
    if target not in TRIAL_TRANSITIONS[current]:
        raise IllegalTransition(
            current, target, f"a trial that is {current} cannot become {target}"
        )
