"""The HTTP server process: the REST API, its store, auth, dispatch to Ray and recovery.

Runs as ``extrap serve`` (uvicorn). Imports the wire types, the spec (``search_spaces``) and
the settings; never torch, Ray, MLflow or Optuna (a test and an import-linter contract check).
"""
