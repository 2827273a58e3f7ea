"""The REST API (FastAPI): ``create_app(settings)`` in :mod:`service.server.api.main`."""
