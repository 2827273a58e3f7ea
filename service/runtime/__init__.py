"""The sweep runtime: what runs on the Ray cluster for one sweep.

The driver (``python -m service.runtime.driver``, a Ray Job of the service, or ``extrap run``
in-process), its Ray Tune + Optuna experiment, the trials and their worker groups, and the
MLflow tracking. Imports the spec, the trainers and the wire types; never the server.
"""
