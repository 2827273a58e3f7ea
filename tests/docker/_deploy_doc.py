"""Commands docs/deploy.md tells users to run, read from its fenced code blocks."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEPLOY_DOC = REPO / "docs" / "deploy.md"


def code_lines(path: Path = DEPLOY_DOC) -> list[str]:
    """Every non-comment line of the doc's fenced code blocks."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", path.read_text(), flags=re.S)
    return [
        line.strip()
        for block in blocks
        for line in block.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def ray_start_command(role_flag: str) -> list[str]:
    """The documented ``ray start`` command carrying ``role_flag`` (``--head``, ``--address``)."""
    commands = [
        shlex.split(line)
        for line in code_lines()
        if line.startswith("ray start") and role_flag in line
    ]
    assert len(commands) == 1, f"docs/deploy.md: expected one `ray start {role_flag}` command"
    return commands[0]
