"""Tokens and visibility: 401 without a valid token, another user's sweep is 404, admins see
every sweep, driver tokens reach only their own sweep's internal endpoints."""

from __future__ import annotations

from sqlalchemy import select

from service.server.models import ApiToken
from tests.service.conftest import ADMIN_TOKEN, Api, bearer, event


def test_no_token_is_401(api: Api) -> None:
    response = api.client.get("/v1/sweeps")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"


def test_wrong_token_is_401(api: Api) -> None:
    response = api.client.get("/v1/sweeps", headers=bearer("ext_not-a-real-token"))
    assert response.status_code == 401


def test_other_users_sweep_is_404_and_admin_sees_all(api: Api) -> None:
    alice, bob = api.user(), api.user()
    sweep_id = api.submit(alice)
    for method, path in [
        ("GET", f"/v1/sweeps/{sweep_id}"),
        ("POST", f"/v1/sweeps/{sweep_id}/cancel"),
        ("DELETE", f"/v1/sweeps/{sweep_id}"),
        ("GET", f"/v1/sweeps/{sweep_id}/trials"),
        ("GET", f"/v1/sweeps/{sweep_id}/events"),
    ]:
        assert api.client.request(method, path, headers=bob).status_code == 404, path
    assert sweep_id not in {
        s["id"] for s in api.client.get("/v1/sweeps", headers=bob).json()["data"]
    }
    assert api.client.get(f"/v1/sweeps/{sweep_id}", headers=api.admin).status_code == 200
    listed = api.client.get("/v1/sweeps?limit=500", headers=api.admin).json()
    assert sweep_id in {s["id"] for s in listed["data"]}


def test_tokens_are_stored_hashed(api: Api) -> None:
    with api.ctx.db.read() as session:
        hashes = session.execute(select(ApiToken.token_hash)).scalars().all()
    assert ADMIN_TOKEN not in hashes
    assert all(len(h) == 64 for h in hashes)


def test_revoked_token_is_401(api: Api) -> None:
    from service.server.auth import revoke_token

    headers = api.user()
    assert api.client.get("/v1/sweeps", headers=headers).status_code == 200
    with api.ctx.db.write() as session:
        revoke_token(session, token_or_id=headers["Authorization"].split()[1])
    assert api.client.get("/v1/sweeps", headers=headers).status_code == 401


def test_driver_token_reaches_only_its_own_sweep(api: Api) -> None:
    owner = api.user()
    mine, other = api.submit(owner), api.submit(owner)
    driver = api.launch(mine)
    assert api.client.get(f"/internal/v1/sweeps/{mine}/spec", headers=driver).status_code == 200
    for path in (f"/internal/v1/sweeps/{other}/spec", f"/internal/v1/sweeps/{other}/events"):
        method = "GET" if path.endswith("spec") else "POST"
        response = api.client.request(method, path, headers=driver, json={"events": []})
        assert response.status_code == 401, path
    # a driver token is no API token, and an API token is no driver token
    assert api.client.get("/v1/sweeps", headers=driver).status_code == 401
    assert api.client.get(f"/internal/v1/sweeps/{mine}/spec", headers=owner).status_code == 401


def test_relaunch_replaces_the_driver_token(api: Api) -> None:
    from service.wire import SweepState

    sweep_id = api.submit(api.user())
    first = api.launch(sweep_id)
    api.push(sweep_id, first, event("sweep_running"))
    assert api.ctx.launcher is not None
    assert api.ctx.launcher.launch(sweep_id, expected=(SweepState.RUNNING,))
    response = api.client.post(
        f"/internal/v1/sweeps/{sweep_id}/events",
        json={"events": [event("heartbeat")]},
        headers=first,
    )
    assert response.status_code == 401
    second = bearer(api.fake.last_for(sweep_id).env_vars["EXTRAP_DRIVER_TOKEN"])
    assert api.push(sweep_id, second, event("heartbeat"))["state"] == "starting"
    assert "--resume" in api.fake.last_for(sweep_id).entrypoint
