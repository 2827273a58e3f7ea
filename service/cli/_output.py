"""Output helpers shared by the CLI's commands: one error path, JSON or rich tables."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import typer

__all__ = ["exit_with_error", "print_json"]


def exit_with_error(message: str, *, code: int = 1) -> NoReturn:
    """One line on stderr, a non-zero exit code."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
