"""The API refuses expired and revoked keys; its cache delays a revocation by at most its TTL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from reelflow_api.settings import Settings
from reelflow_common.store.timefmt import utcnow
from tests.integration.api_helpers import assert_problem, running_api

pytestmark = pytest.mark.integration


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_expired_and_revoked_keys_get_401_and_a_valid_one_200(
    settings_for: Callable[..., Any], mongo_db: Any, amqp_connection: Any
) -> None:
    settings = settings_for(Settings, auth_cache_ttl_s=0)
    async with running_api(settings, mongo_db, amqp_connection) as api:
        tenant = await api.keys.create_tenant("acme")
        valid, _ = await api.keys.create_key(tenant, expires_at=utcnow() + timedelta(days=1))
        expired, _ = await api.keys.create_key(tenant, expires_at=utcnow() - timedelta(seconds=1))
        revoked, info = await api.keys.create_key(tenant)
        assert (await api.client.get("/v1/projects", headers=bearer(revoked))).status_code == 200

        await api.keys.revoke_key(info.key_id)

        assert (await api.client.get("/v1/projects", headers=bearer(valid))).status_code == 200
        for key in (expired, revoked):
            answer = await api.client.get("/v1/projects", headers=bearer(key))
            assert assert_problem(answer, 401)["detail"] == "Unknown API key."
            assert answer.headers["www-authenticate"] == "Bearer"


async def test_a_revoked_key_still_works_within_the_cache_ttl(
    settings_for: Callable[..., Any], mongo_db: Any, amqp_connection: Any
) -> None:
    # The documented price of answering without a database read: revocation takes
    # effect within REELFLOW_AUTH_CACHE_TTL_S, not at once.
    settings = settings_for(Settings, auth_cache_ttl_s=300)
    async with running_api(settings, mongo_db, amqp_connection) as api:
        tenant = await api.keys.create_tenant("acme")
        key, info = await api.keys.create_key(tenant)
        assert (await api.client.get("/v1/projects", headers=bearer(key))).status_code == 200

        await api.keys.revoke_key(info.key_id)

        assert (await api.client.get("/v1/projects", headers=bearer(key))).status_code == 200
