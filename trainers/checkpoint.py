"""A trial's checkpoint: what rank 0 owns and what every rank owns, as files of bytes.

- ``state.pt`` (rank 0): model, optimizer, lr and gamma schedules, epoch, step, history, the
  test figures once known, and the job;
- ``rank-<r>.pt`` (every rank): its RNG states (torch, CUDA, NumPy, Python) and its noise
  generator, so each rank continues its own random streams.

Workers hand these files over as bytes (they may live on other machines than the one that
stores them); restoring the same files gives a run that continues bit for bit.

Example:
    >>> files = capture(run, include_trial=True)  # doctest: +SKIP
    >>> sorted(files)  # doctest: +SKIP
    ['rank-0.pt', 'state.pt']
"""

from __future__ import annotations

import io
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainers.run import TrialRun, unwrap

__all__ = ["STATE_FILE", "capture", "rank_file", "read_files", "restore", "write_files"]

STATE_FILE = "state.pt"


def rank_file(rank: int) -> str:
    """The name of rank ``rank``'s own file."""
    return f"rank-{rank}.pt"


def _dumps(value: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def _loads(data: bytes, device: torch.device | str = "cpu") -> Any:
    return torch.load(io.BytesIO(data), map_location=device, weights_only=False)


def _rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def capture(run: TrialRun, *, include_trial: bool) -> dict[str, bytes]:
    """This rank's checkpoint files (``state.pt`` too when ``include_trial``: rank 0)."""
    optimizer_state = run.optimizer.state_dict()
    files = {
        rank_file(run.rank): _dumps(
            {"rng": _rng_state(), "noise": optimizer_state["noise_generator"]}
        )
    }
    if include_trial:
        files[STATE_FILE] = _dumps(
            {
                "model": unwrap(run.model).state_dict(),
                "optimizer": optimizer_state,
                "lr_scheduler": run.lr_scheduler.state_dict(),
                "gamma_scheduler": run.gamma_scheduler.state_dict(),
                "epoch": run.epoch,
                "step": run.step,
                "gradient_units": run.gradient_units,
                "seconds": run.seconds,
                "history": run.history,
                "final": run.final,
                "job": run.job.model_dump(mode="json"),
            }
        )
    return files


def restore(run: TrialRun, files: Mapping[str, bytes]) -> None:
    """Continue ``run`` from checkpoint files (``state.pt`` and, if present, this rank's).

    A restart with fewer ranks than before keeps rank 0's noise generator for the ranks that
    have no file of their own.
    """
    state = _loads(files[STATE_FILE], run.device)
    unwrap(run.model).load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.lr_scheduler.load_state_dict(state["lr_scheduler"])
    run.gamma_scheduler.load_state_dict(state["gamma_scheduler"])
    run.epoch, run.step = int(state["epoch"]), int(state["step"])
    run.gradient_units = int(state.get("gradient_units", 0))
    run.seconds = float(state.get("seconds", 0.0))
    run.start_step = run.step
    run.history = list(state["history"])
    run.final = dict(state.get("final") or {})
    run.resumed_from = run.epoch
    own = files.get(rank_file(run.rank))
    if own is not None:
        mine = _loads(own)
        _set_rng_state(mine["rng"])
        run.optimizer.load_state_dict({**state["optimizer"], "noise_generator": mine["noise"]})


def write_files(directory: Path, files: Mapping[str, bytes]) -> None:
    """Write checkpoint files into ``directory`` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)


def read_files(directory: Path) -> dict[str, bytes]:
    """The checkpoint files in ``directory``, by name."""
    return {path.name: path.read_bytes() for path in directory.glob("*.pt")}
