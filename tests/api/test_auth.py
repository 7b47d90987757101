"""Bearer tokens and scopes: missing / invalid / revoked / insufficient tokens get 401 / 403."""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt
import psycopg
import pytest

from pgsched.api import check_bind
from pgsched.config import Settings
from pgsched.errors import ConfigurationError
from tests.api.conftest import ADMIN_TOKEN, LiveApi, serve_api


def _token(client: httpx.Client, scope: str, name: str = "t") -> dict[str, Any]:
    r = client.post("/tokens", json={"name": f"{name}-{scope}", "scope": scope})
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_requests_without_a_token_get_401_with_a_bearer_challenge(live_api: LiveApi) -> None:
    with live_api.client(token=None) as anon:
        r = anon.get("/jobs")
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["error"]["code"] == "unauthorized"
        assert anon.get("/jobs", headers={"Authorization": "Basic abc"}).status_code == 401
        assert anon.get("/jobs", headers={"Authorization": "Bearer"}).status_code == 401


def test_invalid_tokens_get_401(live_api: LiveApi) -> None:
    for bad in ("nope", "pgsched_1_" + "x" * 43, "pgsched_999_" + "y" * 43, ADMIN_TOKEN + "x", "a.b.c"):
        with live_api.client(token=bad) as c:
            assert c.get("/jobs").status_code == 401, bad


def test_scopes_allow_reads_writes_and_admin_in_order(client: httpx.Client, live_api: LiveApi) -> None:
    read, write, admin = (_token(client, s)["token"] for s in ("read", "write", "admin"))
    with live_api.client(read) as r, live_api.client(write) as w, live_api.client(admin) as a:
        assert r.get("/jobs").status_code == 200
        denied = r.post("/jobs", json={"task": "t"})
        assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"
        assert w.post("/jobs", json={"task": "t"}).status_code == 201
        assert w.get("/tokens").status_code == 403
        assert w.post("/dead/purge").status_code == 403
        assert a.get("/tokens").status_code == 200
        assert a.post("/dead/purge").status_code == 200


def test_a_revoked_token_gets_401_from_then_on(client: httpx.Client, live_api: LiveApi) -> None:
    created = _token(client, "write")
    with live_api.client(created["token"]) as c:
        assert c.get("/jobs").status_code == 200
        revoked = client.delete(f"/tokens/{created['id']}")
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
        assert c.get("/jobs").status_code == 401
    assert client.delete("/tokens/987654").status_code == 404


def test_tokens_are_stored_only_as_hashes(client: httpx.Client, conn: psycopg.Connection[Any]) -> None:
    created = _token(client, "read")
    listed = client.get("/tokens").json()["items"]
    assert [t["id"] for t in listed] == [created["id"]] and "token" not in listed[0]
    row = conn.execute("SELECT secret_hash FROM pgsched.api_tokens").fetchone()
    secret = created["token"].split("_", 2)[2]
    assert secret.encode() not in bytes(row["secret_hash"]) and len(row["secret_hash"]) == 32


def test_health_is_open_but_metrics_and_openapi_need_a_token_unless_configured_public(api_settings: Settings) -> None:
    with serve_api(api_settings) as api, api.client(token=None) as anon, api.client() as admin:
        assert anon.get("/health").status_code == 200
        assert anon.get("/metrics").status_code == 401
        assert anon.get("/openapi.json").status_code == 401
        assert admin.get("/metrics").status_code == 200
        assert admin.get("/openapi.json").status_code == 200
    opened = api_settings.with_(api_public_metrics=True, api_public_openapi=True)
    with serve_api(opened) as api, api.client(token=None) as anon:
        assert anon.get("/metrics").status_code == 200
        assert anon.get("/openapi.json").json()["paths"]["/metrics"]["get"]["security"] == []
    closed = api_settings.with_(api_public_health=False)
    with serve_api(closed) as api, api.client(token=None) as anon:
        assert anon.get("/health").status_code == 401


def test_public_metrics_and_openapi_are_off_by_default_and_on_from_the_environment() -> None:
    assert not Settings.from_env({}).api_public_metrics
    assert not Settings.from_env({}).api_public_openapi
    env = {"PGSCHED_API_PUBLIC_METRICS": "1", "PGSCHED_API_PUBLIC_OPENAPI": "on"}
    assert Settings.from_env(env).api_public_metrics and Settings.from_env(env).api_public_openapi


def test_jwt_hs256_tokens_carry_their_scope(api_settings: Settings) -> None:
    secret = "jwt-secret-for-tests-0123456789abcdef"
    settings = api_settings.with_(api_jwt_secret=secret)
    reader = jwt.encode({"sub": "svc", "scope": "read", "exp": int(time.time()) + 60}, secret, algorithm="HS256")
    writer = jwt.encode({"sub": "svc", "scope": "read write", "exp": int(time.time()) + 60}, secret, algorithm="HS256")
    expired = jwt.encode({"scope": "admin", "exp": int(time.time()) - 60}, secret, algorithm="HS256")
    forged = jwt.encode(
        {"scope": "admin", "exp": int(time.time()) + 60}, "another-secret-0123456789abcdefghij", algorithm="HS256"
    )
    with serve_api(settings) as api:
        with api.client(reader) as c:
            assert c.get("/jobs").status_code == 200
            assert c.post("/jobs", json={"task": "t"}).status_code == 403
        with api.client(writer) as c:
            assert c.post("/jobs", json={"task": "t"}).status_code == 201
        for bad in (expired, forged):
            with api.client(bad) as c:
                assert c.get("/jobs").status_code == 401


def test_auth_off_serves_without_tokens_but_only_on_loopback(api_settings: Settings) -> None:
    open_settings = api_settings.with_(api_auth_enabled=False)
    with serve_api(open_settings) as api, api.client(token=None) as anon:
        assert anon.post("/jobs", json={"task": "t"}).status_code == 201
    check_bind("127.0.0.1", open_settings)
    check_bind("::1", open_settings)
    check_bind("0.0.0.0", api_settings)
    for host in ("0.0.0.0", "192.168.1.10", "example.com", "::"):
        with pytest.raises(ConfigurationError, match="refusing"):
            check_bind(host, open_settings)


def test_jwts_without_exp_or_living_longer_than_the_maximum_are_refused(api_settings: Settings) -> None:
    secret = "jwt-secret-for-tests-0123456789abcdef"
    settings = api_settings.with_(api_jwt_secret=secret, api_jwt_max_lifetime_seconds=3600)
    now = int(time.time())
    claims = {
        "no exp": {"scope": "admin"},
        "ten years": {"scope": "admin", "exp": now + 10 * 365 * 86400},
        "iat to exp too long": {"scope": "admin", "iat": now - 7200, "exp": now + 60},
    }
    fine = jwt.encode({"scope": "admin", "iat": now, "exp": now + 3000}, secret, algorithm="HS256")
    with serve_api(settings) as api:
        for label, body in claims.items():
            with api.client(jwt.encode(body, secret, algorithm="HS256")) as c:
                reply = c.get("/tokens")
                assert reply.status_code == 401, label
        with api.client(fine) as c:
            assert c.get("/tokens").status_code == 200


def test_a_stored_token_with_an_expiry_is_refused_once_it_has_passed(
    client: httpx.Client, live_api: LiveApi, conn: psycopg.Connection[Any]
) -> None:
    created = client.post("/tokens", json={"name": "short", "scope": "read", "expires_in_seconds": 3600})
    assert created.status_code == 201 and created.json()["expires_at"] is not None
    lasting = _token(client, "read", name="lasting")
    assert lasting["expires_at"] is None
    bad = client.post("/tokens", json={"name": "x", "expires_in_seconds": 0})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "expires_in_seconds"
    huge = client.post("/tokens", json={"name": "x", "expires_in_seconds": 10**400})  # past a float's range
    assert huge.status_code == 422 and huge.json()["error"]["field"] == "expires_in_seconds"
    with live_api.client(created.json()["token"]) as c:
        assert c.get("/jobs").status_code == 200
        conn.execute("UPDATE pgsched.api_tokens SET expires_at = now() - interval '1 second' WHERE name = 'short'")
        assert c.get("/jobs").status_code == 401
    with live_api.client(lasting["token"]) as c:
        assert c.get("/jobs").status_code == 200


def test_last_used_at_is_set_on_use_and_moves_at_most_once_a_minute(
    client: httpx.Client, live_api: LiveApi, conn: psycopg.Connection[Any]
) -> None:
    created = _token(client, "read")
    query = "SELECT last_used_at FROM pgsched.api_tokens WHERE id = %s"
    with live_api.client(created["token"]) as c:
        assert c.get("/jobs").status_code == 200
        first = conn.execute(query, (created["id"],)).fetchone()["last_used_at"]
        assert first is not None
        assert c.get("/jobs").status_code == 200
        assert conn.execute(query, (created["id"],)).fetchone()["last_used_at"] == first
        conn.execute("UPDATE pgsched.api_tokens SET last_used_at = now() - interval '61 seconds'")
        assert c.get("/jobs").status_code == 200
        assert conn.execute(query, (created["id"],)).fetchone()["last_used_at"] > first


def test_repeated_failed_auth_from_one_client_gets_429_before_the_database_is_asked(
    api_settings: Settings, dsn: str
) -> None:
    settings = api_settings.with_(api_auth_failure_limit=5, api_auth_failure_window_seconds=60)
    with serve_api(settings) as api, api.client("pgsched_1_" + "x" * 43) as bad, api.client() as good:
        assert [bad.get("/jobs").status_code for _ in range(5)] == [401] * 5
        # With the token table locked, a token lookup would wait (then 503): a 429 proves none ran.
        with psycopg.connect(dsn) as locker:
            locker.execute("LOCK TABLE pgsched.api_tokens IN ACCESS EXCLUSIVE MODE")
            throttled = bad.get("/jobs")
            assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 1
            assert throttled.json()["error"]["code"] == "too_many_failures"
            # the limit is per client address: that address is refused even with a good token now
            assert good.get("/jobs").status_code == 429
