"""A small Dockerfile reader: stages, their instructions, exec-form commands, ARG defaults."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


@dataclass
class Stage:
    name: str
    base: str
    args: dict[str, str] = field(default_factory=dict)
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [item for item in self.instructions if item.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def effective(self, keyword: str) -> str:
        """The arguments of the stage's last ``keyword`` (the one in force); fails if none."""
        instruction = self.last(keyword)
        assert instruction is not None, f"stage {self.name!r} has no {keyword}"
        return instruction.arguments


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: dict[str, Stage]

    def stage(self, name: str) -> Stage:
        assert name in self.stages, f"docker/Dockerfile has no stage {name!r}"
        return self.stages[name]


def _logical_lines(text: str) -> list[str]:
    """Continuation lines joined; comment lines (also inside continuations) dropped."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    return lines


def _arg_default(arguments: str) -> tuple[str, str] | None:
    name, sep, default = arguments.partition("=")
    return (name.strip(), default.strip().strip("\"'")) if sep else None


def substitute(value: str, args: dict[str, str]) -> str:
    """``${NAME}`` and ``$NAME`` replaced by the ARG defaults in ``args``."""
    return re.sub(
        r"\$\{(\w+)\}|\$(\w+)", lambda match: args.get(match[1] or match[2], match[0]), value
    )


def parse(path: Path) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in _logical_lines(path.read_text()):
        keyword, _, arguments = line.partition(" ")
        keyword, arguments = keyword.upper(), arguments.strip()
        if keyword == "FROM":
            words = [word for word in arguments.split() if not word.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else words[0]
            current = Stage(name=name, base=substitute(words[0], global_args))
            stages[name] = current
        elif current is None:
            if keyword == "ARG" and (default := _arg_default(arguments)):
                global_args[default[0]] = default[1]
        else:
            if keyword == "ARG" and (default := _arg_default(arguments)):
                current.args[default[0]] = default[1]
            current.instructions.append(Instruction(keyword, arguments))
    return Dockerfile(global_args=global_args, stages=stages)


def exec_form(arguments: str) -> list[str]:
    """The JSON array of an exec-form CMD/ENTRYPOINT (or HEALTHCHECK's CMD part)."""
    if arguments.upper().startswith("CMD "):
        arguments = arguments[4:]
    elif " CMD " in arguments:  # HEALTHCHECK --interval=... CMD [...]
        arguments = arguments.split(" CMD ", 1)[1]
    command = json.loads(arguments)
    assert isinstance(command, list) and all(isinstance(word, str) for word in command)
    return command
