"""A live view of a sweep built from its events (``extrap run`` and ``extrap watch``).

A bar of finished/total trials, the running trials with their current epoch, the best value
so far, elapsed and estimated remaining time. Fed with the events of
:mod:`service.runtime.events` (the same shape the service streams over SSE).
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

__all__ = ["SweepProgress"]


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class SweepProgress:
    """Renders events; use as a context manager around the sweep."""

    def __init__(
        self,
        *,
        name: str,
        total_trials: int,
        objective: str,
        mode: str,
        epochs: int,
        quiet: bool = False,
        console: Console | None = None,
    ) -> None:
        self.name = name
        self.total = total_trials
        self.objective = objective
        self.mode = mode
        self.epochs = epochs
        self.quiet = quiet
        self.console = console or Console()
        self.running: dict[str, dict[str, Any]] = {}
        self.counts = {"completed": 0, "pruned": 0, "failed": 0, "diverged": 0}
        self.best: tuple[float, int, dict[str, Any]] | None = None
        self.started = time.time()
        self.final: dict[str, Any] | None = None
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"),
            console=self.console,
        )
        self._task = self._progress.add_task(f"sweep {name}", total=total_trials, eta="")
        self._live: Live | None = None

    @classmethod
    def for_spec(cls, spec: Any, *, quiet: bool = False) -> SweepProgress:
        return cls(
            name=spec.name,
            total_trials=spec.search.num_trials,
            objective=spec.objective.metric,
            mode=spec.objective.mode,
            epochs=spec.job.epochs,
            quiet=quiet,
        )

    def __enter__(self) -> SweepProgress:
        if not self.quiet:
            self._live = Live(self._render(), console=self.console, refresh_per_second=4)
            self._live.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(kind, error, traceback)
            if not self.console.is_terminal:
                self.console.line()  # Live leaves its last frame unterminated off a terminal

    @property
    def finished(self) -> int:
        return sum(self.counts.values())

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "trial_started":
            self.running[event["trial_id"]] = {
                "number": event.get("number", 0),
                "params": event.get("params", {}),
                "epoch": 0,
            }
        elif kind == "trial_metrics" and event["trial_id"] in self.running:
            self.running[event["trial_id"]]["epoch"] = event.get("epoch", 0)
        elif kind == "trial_finished":
            trial = self.running.pop(event["trial_id"], {"number": 0, "params": {}})
            status = event.get("status", "completed")
            self.counts[status] = self.counts.get(status, 0) + 1
            value = (event.get("metrics") or {}).get(self.objective)
            if status in ("completed", "pruned") and isinstance(value, int | float):
                sign = 1 if self.mode == "max" else -1
                if self.best is None or sign * value > sign * self.best[0]:
                    self.best = (float(value), trial["number"], trial["params"])
        elif kind == "sweep_finished":
            self.final = event
        self._progress.update(self._task, completed=self.finished, eta=self._eta())
        if self._live is not None:
            self._live.update(self._render())

    def _eta(self) -> str:
        if not self.finished or self.finished >= self.total:
            return ""
        per_trial = (time.time() - self.started) / self.finished
        return f"~{per_trial * (self.total - self.finished):.0f}s left"

    def _render(self) -> Group:
        table = Table("trial", "epoch", "params", title="running", expand=False)
        for trial in sorted(self.running.values(), key=lambda t: t["number"]):
            params = " ".join(f"{k}={_fmt(v)}" for k, v in sorted(trial["params"].items()))
            table.add_row(f"{trial['number']:03d}", f"{trial['epoch']}/{self.epochs}", params)
        counts = "  ".join(f"{k}: {v}" for k, v in self.counts.items())
        best = "best: -"
        if self.best is not None:
            value, number, best_params = self.best
            shown = " ".join(f"{k}={_fmt(v)}" for k, v in sorted(best_params.items()))
            best = f"best {self.objective} ({self.mode}): {value:.4g}  trial {number:03d}  {shown}"
        return Group(self._progress, f"{counts}", best, table)

    def print_summary(self, outcome: Any, tracking_uri: str) -> None:
        console = self.console
        console.print(
            f"[bold]sweep {outcome.state}[/bold]"
            + (f": {outcome.reason}" if outcome.reason else "")
        )
        if outcome.best:
            best = outcome.best
            console.print(
                f"best trial {best['number']:03d}: {self.objective} = {best['value']:.4g}"
            )
            for key, value in sorted(best["params"].items()):
                console.print(f"  {key}: {_fmt(value)}")
        console.print(f"compare the trials in MLflow:  extrap ui   (store: {tracking_uri})")
