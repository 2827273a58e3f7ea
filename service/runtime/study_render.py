"""A service study's render job: its plot and its MLflow parent run, once every cell has ended.

The service starts it as a Ray job (``python -m service.runtime.study_render --study-id ID
--api-url URL``, the study's render token in ``EXTRAP_DRIVER_TOKEN``) when the last cell of a
study ends: the API carries no matplotlib. It reads the study's rows from
``GET /internal/v1/studies/{id}``, writes ``table.md``, ``table.csv``, ``plot.png``,
``study.yaml`` and ``cells.json`` into ``<storage>/<study id>/outputs/`` with the local
runner's :func:`service.runtime.study.render_outputs`, logs them to the study's MLflow parent
run with :func:`service.runtime.study.log_study_run`, and reports
``POST /internal/v1/studies/{id}/rendered``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from pathlib import Path

import httpx

from search_spaces.study import load_study
from service.runtime.study import log_study_run, render_outputs
from service.wire.studies import STUDY_OUTPUTS_DIR, StudyRenderPublic

__all__ = ["main", "render"]

log = logging.getLogger(__name__)


def render(client: httpx.Client, study_id: str) -> str:
    """Draw and log the study's outputs and report them; returns the MLflow parent run id."""
    response = client.get(f"/internal/v1/studies/{study_id}")
    response.raise_for_status()
    found = StudyRenderPublic.model_validate_json(response.content)
    study = load_study(found.spec)
    with tempfile.TemporaryDirectory(prefix="extrap-study-") as scratch:
        if "://" in found.storage_path:  # object storage: only MLflow keeps the outputs
            output_dir = Path(scratch)
        else:
            output_dir = Path(found.storage_path) / study_id / STUDY_OUTPUTS_DIR
        render_outputs(study, found.cells, output_dir)
        (output_dir / "cells.json").write_text(
            json.dumps([row.model_dump(mode="json") for row in found.cells], indent=1)
        )
        run_id = log_study_run(
            study, study_id, output_dir, tracking_uri=found.mlflow_tracking_uri, state=found.state
        )
    reported = client.post(
        f"/internal/v1/studies/{study_id}/rendered",
        json={"state": found.state, "mlflow_run_id": run_id},
    )
    reported.raise_for_status()
    log.info("study %s: outputs drawn (%s), MLflow parent run %s", study_id, found.state, run_id)
    return run_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.runtime.study_render", description=__doc__
    )
    parser.add_argument("--study-id", required=True)
    parser.add_argument("--api-url", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    token = os.environ.get("EXTRAP_DRIVER_TOKEN")
    if not token:
        log.error("EXTRAP_DRIVER_TOKEN is not set: the service passes it in the job's env")
        return 2
    with httpx.Client(
        base_url=args.api_url.rstrip("/"),
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx.Timeout(60.0, connect=5.0),
    ) as client:
        try:
            render(client, args.study_id)
        except httpx.HTTPError as error:
            log.error("study %s: could not render: %s", args.study_id, error)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
