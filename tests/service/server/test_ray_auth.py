"""Which Ray token the service sends to a cluster: the same places Ray's own clients look."""

from __future__ import annotations

from pathlib import Path

from service.server.dispatch import default_ray_token, ray_auth_headers


def test_environment_token_wins(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("from-file\n")
    env = {"RAY_AUTH_TOKEN": " from-env ", "RAY_AUTH_TOKEN_PATH": str(path)}
    assert default_ray_token(env) == "from-env"


def test_token_file_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("from-file\n")
    assert default_ray_token({"RAY_AUTH_TOKEN_PATH": str(path)}) == "from-file"


def test_missing_file_means_no_token(tmp_path: Path) -> None:
    assert default_ray_token({"RAY_AUTH_TOKEN_PATH": str(tmp_path / "absent")}) is None


def test_headers() -> None:
    assert ray_auth_headers("abc") == {"Authorization": "Bearer abc"}
    assert ray_auth_headers(None) == {}
