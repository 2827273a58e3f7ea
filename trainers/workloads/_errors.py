"""Errors of the workload registry and of the workloads' data loading (no torch here)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["InvalidWorkloadOptionsError", "MissingDataError", "UnknownWorkloadError"]


class UnknownWorkloadError(KeyError, ValueError):
    """A workload name that is neither built in nor provided by a plug-in.

    A ``KeyError`` (it is a failed lookup) and a ``ValueError`` (it is a bad value in a spec,
    so pydantic validators turn it into a validation error).
    """

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(
            f"unknown workload {name!r}; registered workloads: {', '.join(self.known) or 'none'}"
        )

    def __str__(self) -> str:  # KeyError would print repr(message)
        return str(self.args[0])

    def __reduce__(self) -> tuple[type[UnknownWorkloadError], tuple[str, list[str]]]:
        return type(self), (self.name, self.known)  # picklable across processes (Ray, DDP)


class InvalidWorkloadOptionsError(ValueError):
    """Workload options that its ``options_model`` rejects; the message names each option."""

    def __init__(self, workload: str, problems: Sequence[tuple[str, str]]) -> None:
        self.workload = workload
        self.problems = list(problems)
        details = "; ".join(f"option {option!r}: {message}" for option, message in self.problems)
        super().__init__(f"invalid options for workload {workload!r}: {details}")

    def __reduce__(
        self,
    ) -> tuple[type[InvalidWorkloadOptionsError], tuple[str, list[tuple[str, str]]]]:
        return type(self), (self.workload, self.problems)


class MissingDataError(FileNotFoundError):
    """A workload's data files are not where it looks for them."""

    def __init__(
        self, workload: str, data_dir: Path, missing: Sequence[str], source: str = ""
    ) -> None:
        self.workload = workload
        self.data_dir = data_dir
        self.missing = list(missing)
        self.source = source
        lines = [
            f"workload {workload!r} cannot find its data in {data_dir}; missing files:",
            *(f"  {data_dir / relative}" for relative in self.missing),
        ]
        if source:
            lines.append(f"To get them: {source}")
        lines.append(
            "Set the data directory with the job's data_dir or $EXTRAP_DATA_DIR "
            "(default ~/.cache/extrap-tune/data)."
        )
        super().__init__("\n".join(lines))

    def __reduce__(
        self,
    ) -> tuple[type[MissingDataError], tuple[str, Path, list[str], str]]:
        return type(self), (self.workload, self.data_dir, self.missing, self.source)
