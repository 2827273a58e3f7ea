"""Schemathesis against the live service with a user's token: every operation, its answers
checked against the OpenAPI document (no 5xx, documented statuses, content types and bodies).

``make test`` runs a short pass (the fuzzing phase: at least 300 requests a database);
``make fuzz`` a long one (every phase, the coverage phase's edge cases included: at least
2,000). Both fail on any failed check, and on any protected sweep the fuzzer managed
to change.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.conftest import FuzzTarget, _snapshot

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]
SCHEMATHESIS = str(Path(sys.executable).with_name("st"))
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    )
)


def _fuzz(target: FuzzTarget, *, phases: str, max_examples: int, seed: int) -> tuple[int, str]:
    """One ``st run``; the requests it made and its output."""
    api = target.api
    before = target.requests_served()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SCHEMATHESIS_HOOKS": "tests.fuzz._hooks",
        "EXTRAP_FUZZ_TARGETS": json.dumps(target.targets()),
        "EXTRAP_FUZZ_SEED": str(seed),
    }
    done = subprocess.run(
        [
            SCHEMATHESIS,
            "run",
            f"{api.url}/openapi.json",
            "--header",
            f"Authorization: Bearer {target.token}",
            "--checks",
            CHECKS,
            "--phases",
            phases,
            "--max-examples",
            str(max_examples),
            "--seed",
            str(seed),
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--suppress-health-check",
            "all",
            "--no-color",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1700,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-12000:]
    return target.requests_served() - before, output


def _protected_intact(target: FuzzTarget) -> None:
    for sweep_id, before in target.protected.items():
        assert _snapshot(target.api, sweep_id) == before, sweep_id
    own = target.api.client.get(f"/v1/sweeps/{target.own_running}", headers=target.api.admin)
    assert own.status_code == 200, "the fuzzer deleted a running sweep"


def test_a_short_fuzz_finds_no_failure(fuzz_target: FuzzTarget) -> None:
    requests, output = _fuzz(fuzz_target, phases="examples,fuzzing", max_examples=15, seed=14)
    print(f"\nschemathesis: {requests} requests\n{output[-1500:]}")
    assert requests >= 300, output[-3000:]
    _protected_intact(fuzz_target)


@pytest.mark.fuzz_long
def test_a_long_fuzz_finds_no_failure(fuzz_target: FuzzTarget) -> None:
    requests, output = _fuzz(
        fuzz_target, phases="examples,coverage,fuzzing", max_examples=150, seed=20260
    )
    print(f"\nschemathesis: {requests} requests\n{output[-1500:]}")
    assert requests >= 2000, output[-3000:]
    _protected_intact(fuzz_target)
