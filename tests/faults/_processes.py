"""Processes a fault test starts and owns, and the signals it sends them.

Each is started in a session of its own (``start_new_session=True``): the session holds
that process and what it starts. Ray's workers put themselves in process groups of their own
and, seen here, some leave the session too, so "everything of this node" is the session and
every descendant of its processes; stopping is SIGTERM to the leader, then SIGKILL to whatever
of that is left. Nothing here stops anything by name (no ``ray stop``, no ``pkill``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

__all__ = ["Owned", "child_env", "session_pids", "spawn", "wait_for"]

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def _process_table() -> dict[int, tuple[int, int]]:
    """Every live (not zombie) process: pid -> (parent pid, session id)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp session ...: comm may hold spaces, so split after ")"
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            table[int(entry.name)] = (int(fields[1]), int(fields[3]))
    return table


def session_pids(session_id: int) -> list[int]:
    """The live processes of a session and their descendants: a process that left the
    session (``setsid``) is still its starter's, as Ray's workers may be."""
    table = _process_table()
    found = {pid for pid, (_, session) in table.items() if session == session_id}
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    todo = list(found)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return sorted(found)


def child_env(**extra: str) -> dict[str, str]:
    """This environment without the session's Ray connection (RAY_ADDRESS, its token), with
    the repository importable, plus ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    env.update(extra)
    return env


@dataclass
class Owned:
    """A process this test started in a session of its own, and its log."""

    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def members(self) -> list[int]:
        """Every live process of its session (the leader included while it runs)."""
        self.process.poll()  # reap the leader if it is gone
        return session_pids(self.pid)

    def log(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL the whole session at once: a machine that is lost."""
        for pid in self.members():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._reap(10.0)

    def stop(self, grace_s: float = 30.0, *, everyone: bool = False) -> None:
        """SIGTERM the leader (``everyone``: every process of its session); after
        ``grace_s``, SIGKILL whatever of its session is left."""
        if self.alive():
            for pid in self.members() if everyone else [self.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(grace_s)
        self.kill()

    def _reap(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.members():
                return
            time.sleep(0.1)


def spawn(
    argv: list[str],
    *,
    log_path: Path,
    env: Mapping[str, str],
    cwd: Path | None = None,
) -> Owned:
    """Start ``argv`` in a session of its own, stdout and stderr to ``log_path``."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            argv,
            cwd=cwd or REPO,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Owned(process, log_path)


def wait_for(
    probe: Callable[[], T | Literal[False] | None],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = 0.5,
    while_alive: Owned | None = None,
) -> T:
    """Poll ``probe`` until it returns something (not None, not False); fail after
    ``timeout_s`` naming ``what``, or as soon as ``while_alive`` exits."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if while_alive is not None and not while_alive.alive():
            raise AssertionError(
                f"waiting for {what}: {while_alive.process.args!r} exited with "
                f"{while_alive.process.returncode}:\n{while_alive.log()}"
            )
        if time.monotonic() > deadline:
            log = f"\nlog:\n{while_alive.log()}" if while_alive is not None else ""
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}{log}")
        time.sleep(interval_s)
