"""Output helpers shared by the CLI's commands: one error path, JSON or rich tables.

With ``--json`` a command's standard output is JSON and nothing else, so that
``extrap run spec.yaml --json | jq`` works. :func:`json_stdout` guarantees it for commands that
run code which prints (Ray Tune's status table, a library's banner, child processes that
inherit the descriptor): while it is active, file descriptor 1 itself points at standard
error, and :func:`print_json` writes to the real standard output.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any, NoReturn

import typer

__all__ = ["exit_with_error", "json_stdout", "print_json", "print_json_line"]

_json_stream: IO[str] | None = None


def exit_with_error(message: str, *, code: int = 1) -> NoReturn:
    """One line on stderr, a non-zero exit code."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def print_json(value: Any) -> None:
    """``value`` as JSON on standard output (the real one, inside :func:`json_stdout`)."""
    stream = _json_stream or sys.stdout
    json.dump(value, stream, indent=2, default=str)
    stream.write("\n")
    stream.flush()


def print_json_line(value: Any) -> None:
    """``value`` as one line of JSON (JSON Lines) on the real standard output."""
    stream = _json_stream or sys.stdout
    stream.write(json.dumps(value, default=str) + "\n")
    stream.flush()


@contextmanager
def json_stdout(enabled: bool = True) -> Iterator[None]:
    """While active, everything written to standard output goes to standard error instead
    (Python's ``print``, C libraries, child processes), except :func:`print_json`."""
    global _json_stream
    if not enabled or _json_stream is not None:
        yield
        return
    sys.stdout.flush()
    if not _writes_to_descriptor_1(sys.stdout):
        # Standard output is a Python object (a test runner's capture): swap it alone.
        real, sys.stdout = sys.stdout, sys.stderr
        _json_stream = real
        try:
            yield
        finally:
            sys.stdout, _json_stream = real, None
        return
    saved = os.dup(1)
    _json_stream = os.fdopen(saved, "w", encoding="utf-8", closefd=False)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        _json_stream.flush()
        os.dup2(saved, 1)
        os.close(saved)
        _json_stream = None


def _writes_to_descriptor_1(stream: IO[str]) -> bool:
    try:
        return stream.fileno() == 1
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return False
