"""Schemathesis hooks for the fuzz runs (loaded by ``st run`` through ``SCHEMATHESIS_HOOKS``).

- Every ``POST /v1/sweeps`` is a dry run: the fuzzer validates specs, it stores none.
- Half of the generated sweep ids are replaced by real ones (the sacrificial sweeps of every
  state, listed in ``EXTRAP_FUZZ_TARGETS``), and trial ids by their trials', so that the
  fuzzer reaches real objects and not only 404s.
- The event stream of a sweep that has not ended never ends, nor does the followed log of a
  running driver: for those a real id is always a finished sweep kept for the purpose, and
  no other operation reaches those sweeps (a resumed one would stream forever).
"""

from __future__ import annotations

import json
import os
import random
from typing import Any

import schemathesis

_TARGETS: dict[str, Any] = json.loads(os.environ.get("EXTRAP_FUZZ_TARGETS", "{}"))
_SWEEPS: list[str] = _TARGETS.get("sweeps", [])
_STREAMS: list[str] = _TARGETS.get("streams", [])
_TRIALS: dict[str, list[str]] = _TARGETS.get("trials", {})
_TRUE = {"1", "on", "t", "true", "y", "yes"}  # what pydantic reads as a true bool
_random = random.Random(int(os.environ.get("EXTRAP_FUZZ_SEED", "14")))


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    operation = case.operation
    path, method = operation.path, operation.method.upper()
    if method == "POST" and path == "/v1/sweeps":
        case.query = {**(case.query or {}), "dry_run": "true"}
    parameters = case.path_parameters
    if not parameters or "sweep_id" not in parameters:
        return
    streaming = path.endswith("/events") or (
        path.endswith("/logs") and str((case.query or {}).get("follow", "")).lower() in _TRUE
    )
    if streaming and path.startswith("/v1/"):
        if parameters["sweep_id"] in _SWEEPS or (_STREAMS and _random.random() < 0.5):
            parameters["sweep_id"] = _random.choice(_STREAMS)
        return
    if parameters["sweep_id"] in _STREAMS and _SWEEPS:
        # Schemathesis reuses ids it saw in responses (the sweep list names every sweep): a
        # stream sweep resumed by the fuzzer would be live, and its stream would never end.
        parameters["sweep_id"] = _random.choice(_SWEEPS)
    if _SWEEPS and _random.random() < 0.5:
        parameters["sweep_id"] = _random.choice(_SWEEPS)
    trials = _TRIALS.get(parameters["sweep_id"])
    if "trial_id" in parameters and trials and _random.random() < 0.7:
        parameters["trial_id"] = _random.choice(trials)
