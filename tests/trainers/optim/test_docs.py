"""docs/optimizer.md's examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[3] / "docs" / "optimizer.md"


def test_optimizer_doc_python_examples_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks, "docs/optimizer.md has no python example"
    for number, code in enumerate(blocks):
        exec(compile(code, f"docs/optimizer.md[python block {number}]", "exec"), {})
