"""One validated ``Settings`` for the service, the driver and the CLI (env prefix ``EXTRAP_``).

The embedded default needs no settings at all: everything lives under ``EXTRAP_HOME``
(``~/.extrap``): the SQLite database, the local MLflow store, Tune's storage, the address of the
Ray head the service started. A real deployment sets the URLs.

Example:
    >>> settings = Settings(home="/tmp/extrap-home")
    >>> settings.resolved_database_url
    'sqlite:////tmp/extrap-home/extrap.db'
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    """Service settings; every field reads ``EXTRAP_<NAME>`` from the environment."""

    model_config = SettingsConfigDict(env_prefix="EXTRAP_", extra="ignore")

    home: Path = Field(
        default_factory=lambda: Path.home() / ".extrap",
        description="state directory of the embedded default (database, MLflow, runs, Ray)",
    )
    host: str = Field("127.0.0.1", description="address the API listens on")
    port: int = Field(8000, ge=1, le=65535, description="port the API listens on")
    public_url: str | None = Field(
        None, description="URL under which drivers reach the API (default http://host:port)"
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL; default sqlite:///<home>/extrap.db (PostgreSQL: "
        "postgresql+psycopg://user:pass@host/db)",
    )
    ray_address: str | None = Field(
        None,
        description="Ray dashboard/job-submission address of a cluster head "
        "(http://head:8265); unset: the service starts and owns a local head",
    )
    mlflow_tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; default sqlite:///<home>/mlflow.db"
    )
    mlflow_ui_url: str | None = Field(
        None,
        description="base URL of the MLflow UI, for links (default: the tracking URI "
        "when it is http(s), else http://127.0.0.1:5000)",
    )
    storage_path: str | None = Field(
        None,
        description="Tune/Train storage (shared filesystem path or s3:// URI); default <home>/runs",
    )
    data_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="directories sweeps may read data from (default: the workloads' data dir)",
    )
    admin_token: SecretStr | None = Field(
        None, description="token of the first admin; generated and printed once if unset"
    )
    max_concurrent_sweeps: int = Field(1, ge=1, description="sweeps running at once, in all")
    max_trials_per_sweep: int = Field(500, ge=1)
    max_study_cells: int = Field(
        64, ge=1, description="sweeps one study may queue (its cells: batch sizes x arms x rules)"
    )
    max_concurrent_trials: int = Field(16, ge=1, description="trials at once in one sweep")
    max_body_bytes: int = Field(1_000_000, ge=1024, le=1_000_000_000)
    # Quotas per user (service.server.quotas): caps on what runs (the rest waits in the
    # queue) and a rate limit on submissions (429 beyond it).
    max_running_sweeps_per_user: int = Field(
        4, ge=1, description="sweeps of one user starting/running/cancelling at once"
    )
    max_running_trials_per_user: int = Field(
        16,
        ge=1,
        description="trial slots of one user's running sweeps together (a sweep's slots: its "
        "max_concurrent_trials, capped by max_concurrent_trials and by this)",
    )
    submissions_per_minute: float = Field(
        30.0, gt=0, description="sustained submissions per user per minute (token bucket)"
    )
    submission_burst: int = Field(
        20, ge=1, description="submissions a user may make at once before the rate applies"
    )
    heartbeat_timeout_s: float = Field(60.0, gt=0)
    reconcile_interval_s: float = Field(10.0, gt=0)
    max_driver_restarts: int = Field(3, ge=0)

    @field_validator("data_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        if isinstance(value, str):  # EXTRAP_DATA_ROOTS=/data:/mnt/datasets
            return [part for part in value.split(":") if part]
        return value

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'extrap.db'}"

    @property
    def resolved_mlflow_tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def resolved_storage_path(self) -> str:
        return self.storage_path or str(self.home / "runs")

    @property
    def resolved_public_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def resolved_data_roots(self) -> list[Path]:
        if self.data_roots:
            return [root.resolve() for root in self.data_roots]
        from trainers.workloads import default_data_dir

        return [default_data_dir().resolve()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()
