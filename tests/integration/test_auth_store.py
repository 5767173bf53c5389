"""API keys on a real database: stored hashed, one tenant each, idempotent to issue."""

from __future__ import annotations

import pytest

from reelflow_common.mongo import Database
from reelflow_common.store import ApiKeyStore, KeyOfAnotherTenant, hash_key

pytestmark = pytest.mark.integration


@pytest.fixture
async def keys(mongo_db: Database) -> ApiKeyStore:
    store = ApiKeyStore(mongo_db)
    await store.ensure_indexes()
    return store


async def test_an_issued_key_finds_its_tenant_and_is_not_stored_in_clear(
    keys: ApiKeyStore, mongo_db: Database
) -> None:
    tenant = await keys.create_tenant("acme")

    key = await keys.issue_key(tenant, name="ci")

    assert key.startswith("rf_")
    assert len(key) > 40
    assert await keys.tenant_for_key(key) == tenant
    assert await keys.tenant_for_key(key + "x") is None
    assert await keys.tenant_for_key("") is None
    stored = await mongo_db["api_keys"].find_one({})
    assert stored is not None
    assert stored["_id"] == hash_key(key)
    assert key not in str(stored)


async def test_issuing_the_same_key_twice_to_one_tenant_changes_nothing(
    keys: ApiKeyStore, mongo_db: Database
) -> None:
    tenant = await keys.create_tenant("acme")

    first = await keys.issue_key(tenant, key="rf_fixed")
    second = await keys.issue_key(tenant, key="rf_fixed")

    assert first == second == "rf_fixed"
    assert await mongo_db["api_keys"].count_documents({}) == 1


async def test_a_key_of_another_tenant_cannot_be_issued(keys: ApiKeyStore) -> None:
    acme = await keys.create_tenant("acme")
    other = await keys.create_tenant("other")
    await keys.issue_key(acme, key="rf_fixed")

    with pytest.raises(KeyOfAnotherTenant):
        await keys.issue_key(other, key="rf_fixed")
    assert await keys.tenant_for_key("rf_fixed") == acme


async def test_new_keys_differ(keys: ApiKeyStore) -> None:
    tenant = await keys.create_tenant("acme")

    assert await keys.issue_key(tenant) != await keys.issue_key(tenant)


async def test_the_dev_key_lands_on_one_dev_tenant_across_runs(
    keys: ApiKeyStore, mongo_db: Database
) -> None:
    tenant, key = await keys.ensure_dev_key("rf_dev")
    same_tenant, same_key = await keys.ensure_dev_key("rf_dev")
    _, fresh_key = await keys.ensure_dev_key(None)

    assert (same_tenant, same_key) == (tenant, key) == (tenant, "rf_dev")
    assert fresh_key.startswith("rf_")
    assert await keys.tenant_for_key(fresh_key) == tenant
    assert await mongo_db["tenants"].count_documents({"name": "dev"}) == 1
