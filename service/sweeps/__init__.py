"""Running sweeps: the Ray Tune driver, its MLflow tracking and its events.

Domain code: nothing here imports FastAPI or the database. ``run_sweep`` is called by
``extrap run`` (no service), by the service's driver process (``python -m service.driver``)
and by tests.
"""
