"""API keys on a real database: stored hashed, one tenant each, labelled, expiring, revocable."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta

import pytest
from pymongo.errors import AutoReconnect

from reelflow_common.mongo import Database
from reelflow_common.store import ApiKeyStore, KeyOfAnotherTenant, hash_key
from reelflow_common.store.auth import CachedApiKeyStore, UnknownApiKey, UnknownTenant
from reelflow_common.store.timefmt import utcnow
from tests.integration.key_reads import key_reads
from tests.waiting import DEADLINE_S, eventually

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

    key = await keys.issue_key(tenant, label="ci")

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


async def test_a_key_is_listed_by_its_id_prefix_and_label_never_in_clear(
    keys: ApiKeyStore,
) -> None:
    acme = await keys.create_tenant("acme")
    other = await keys.create_tenant("other")
    expires = utcnow() + timedelta(days=30)
    key, created = await keys.create_key(acme, label="ci", expires_at=expires)
    await keys.create_key(other)

    (listed,) = await keys.list_keys(acme)

    assert listed == created
    assert listed.key_id == hash_key(key)[:16]
    assert listed.prefix == key[:7]
    assert (listed.label, listed.tenant_id, listed.revoked_at) == ("ci", acme, None)
    assert listed.expires_at == expires
    assert key not in repr(listed)
    assert [tenant.name for tenant in await keys.list_tenants()] == ["acme", "other"]


async def test_an_expired_key_authenticates_as_no_key(keys: ApiKeyStore) -> None:
    tenant = await keys.create_tenant("acme")
    expired, _ = await keys.create_key(tenant, expires_at=utcnow() - timedelta(seconds=1))
    valid, _ = await keys.create_key(tenant, expires_at=utcnow() + timedelta(hours=1))

    assert await keys.tenant_for_key(expired) is None
    assert await keys.tenant_for_key(valid) == tenant


async def test_a_revoked_key_authenticates_as_no_key_and_revoking_again_changes_nothing(
    keys: ApiKeyStore,
) -> None:
    tenant = await keys.create_tenant("acme")
    key, info = await keys.create_key(tenant)
    kept, _ = await keys.create_key(tenant)

    revoked = await keys.revoke_key(info.key_id)
    again = await keys.revoke_key(info.key_id)

    assert revoked.revoked_at is not None
    assert again.revoked_at == revoked.revoked_at
    assert await keys.tenant_for_key(key) is None
    assert await keys.tenant_for_key(kept) == tenant
    listed = {entry.key_id: entry.revoked_at for entry in await keys.list_keys(tenant)}
    assert listed[info.key_id] == revoked.revoked_at


async def test_unknown_tenants_and_key_ids_are_refused(keys: ApiKeyStore) -> None:
    with pytest.raises(UnknownTenant):
        await keys.create_key("no-such-tenant")
    with pytest.raises(UnknownApiKey):
        await keys.revoke_key("0123456789abcdef")
    with pytest.raises(UnknownApiKey):
        await keys.revoke_key("rf_not-an-id")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_cache_answers_without_the_database_until_its_time_is_up(
    keys: ApiKeyStore, mongo_db: Database
) -> None:
    clock = FakeClock()
    cached = CachedApiKeyStore(mongo_db, ttl_s=5, max_entries=100, monotonic=clock)
    tenant = await keys.create_tenant("acme")
    key, info = await keys.create_key(tenant)
    assert await cached.tenant_for_key(key) == tenant
    assert await cached.tenant_for_key("rf_unknown") is None

    await keys.revoke_key(info.key_id)
    await keys.issue_key(tenant, key="rf_unknown")  # now known, but remembered as unknown
    clock.now += 4.9
    assert await cached.tenant_for_key(key) == tenant
    assert await cached.tenant_for_key("rf_unknown") is None

    clock.now += 0.2
    assert await cached.tenant_for_key(key) is None
    assert await cached.tenant_for_key("rf_unknown") == tenant


async def test_the_cache_forgets_the_least_recently_used_key_first(
    keys: ApiKeyStore, mongo_db: Database
) -> None:
    cached = CachedApiKeyStore(mongo_db, ttl_s=60, max_entries=2, monotonic=FakeClock())
    tenant = await keys.create_tenant("acme")
    (first, _), (second, _), (third, _) = [await keys.create_key(tenant) for _ in range(3)]
    for key in (first, second, first, third):  # second is now the least recently used
        assert await cached.tenant_for_key(key) == tenant

    await mongo_db["api_keys"].delete_many({})

    assert await cached.tenant_for_key(first) == tenant
    assert await cached.tenant_for_key(third) == tenant
    assert await cached.tenant_for_key(second) is None  # forgotten, so read again


async def test_a_flood_of_unknown_keys_never_pushes_a_valid_one_out_and_is_bounded_itself(
    keys: ApiKeyStore, mongo_db: Database
) -> None:
    cached = CachedApiKeyStore(
        mongo_db, ttl_s=60, max_entries=2, max_unknown=3, monotonic=FakeClock()
    )
    tenant = await keys.create_tenant("acme")
    (first, _), (second, _) = [await keys.create_key(tenant) for _ in range(2)]
    assert await cached.tenant_for_key(first) == tenant
    assert await cached.tenant_for_key(second) == tenant
    wrong = [f"rf_wrong-{i}" for i in range(10)]
    for key in wrong:
        assert await cached.tenant_for_key(key) is None

    await mongo_db["api_keys"].delete_many({})
    await keys.issue_key(tenant, key=wrong[0])  # the oldest wrong key: forgotten, so read again
    await keys.issue_key(tenant, key=wrong[-1])  # the newest: still remembered as unknown

    assert await cached.tenant_for_key(first) == tenant  # from memory: never pushed out
    assert await cached.tenant_for_key(second) == tenant
    assert await cached.tenant_for_key(wrong[0]) == tenant
    assert await cached.tenant_for_key(wrong[-1]) is None


async def test_the_cache_never_outlives_the_keys_expiry(
    keys: ApiKeyStore, mongo_db: Database
) -> None:
    clock = FakeClock()
    cached = CachedApiKeyStore(mongo_db, ttl_s=3600, max_entries=100, monotonic=clock)
    tenant = await keys.create_tenant("acme")
    key, _ = await keys.create_key(tenant, expires_at=utcnow() + timedelta(seconds=1))
    assert await cached.tenant_for_key(key) == tenant

    await eventually(lambda: _is_none(keys.tenant_for_key(key)), "the key to expire", timeout_s=10)
    clock.now += 1.5  # past the expiry, far within the cache's hour

    assert await cached.tenant_for_key(key) is None


async def test_a_keys_expiry_and_stamps_are_on_the_stores_clock_not_this_machines(
    mongo_db: Database,
) -> None:
    # In the services the store's clock is the database's; here it runs an hour ahead.
    ahead = FakeClock()
    start = utcnow() + timedelta(hours=1)
    cached = CachedApiKeyStore(
        mongo_db,
        ttl_s=3600,
        max_entries=100,
        clock=lambda: start + timedelta(seconds=ahead.now - 1000.0),
        monotonic=ahead,
    )
    tenant = await cached.create_tenant("acme")
    key, info = await cached.create_key(tenant, expires_at=start + timedelta(seconds=30))
    assert info.created_at == start
    assert await cached.tenant_for_key(key) == tenant

    # The cache keeps the key until its expiry on the store's clock (on this machine's,
    # an hour and a half later), however long its ttl_s.
    ahead.now += 31
    assert await cached.tenant_for_key(key) is None
    assert await cached.grant_for_key(key) is None  # and read again, it is expired
    assert (await cached.revoke_key(info.key_id)).revoked_at == start + timedelta(seconds=31)


async def test_callers_of_a_key_not_cached_share_one_read_and_its_answer(
    keys: ApiKeyStore, mongo_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each caller read the key itself: 10,000 sockets of one new key were 10,000 reads.
    clock = FakeClock()
    cached = CachedApiKeyStore(mongo_db, ttl_s=5, max_entries=100, monotonic=clock)
    tenant = await keys.create_tenant("acme")
    key, _ = await keys.create_key(tenant)
    reads = key_reads(cached, monkeypatch, held=lambda _key: True)

    callers = [asyncio.create_task(cached.tenant_for_key(key)) for _ in range(50)]
    wrong = [asyncio.create_task(cached.tenant_for_key("rf_wrong")) for _ in range(50)]
    await eventually(lambda: len(reads.started) >= 2, "the reads to start")
    reads.release.set()
    answers = await asyncio.wait_for(asyncio.gather(*callers, *wrong), DEADLINE_S)
    clock.now += 5  # due to be read again: one read again, however many ask
    again = await asyncio.wait_for(
        asyncio.gather(*(cached.tenant_for_key(key) for _ in range(50))), DEADLINE_S
    )

    assert answers == [tenant] * 50 + [None] * 50
    assert again == [tenant] * 50
    assert (reads.reads_of(key), reads.reads_of("rf_wrong")) == (2, 1)


async def test_a_caller_that_gives_up_leaves_the_shared_read_to_the_others(
    keys: ApiKeyStore, mongo_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Awaited unshielded, cancelling one caller (its client gone) cancelled the others' read.
    cached = CachedApiKeyStore(mongo_db, ttl_s=60, max_entries=100, monotonic=FakeClock())
    tenant = await keys.create_tenant("acme")
    key, _ = await keys.create_key(tenant)
    reads = key_reads(cached, monkeypatch, held=lambda _key: True)

    leaving, staying = [asyncio.create_task(cached.tenant_for_key(key)) for _ in range(2)]
    await eventually(lambda: len(reads.started) >= 1, "the read to start")
    leaving.cancel()
    await asyncio.wait_for(asyncio.wait([leaving]), DEADLINE_S)
    alone = asyncio.create_task(cached.tenant_for_key(key))  # joins the same read
    reads.release.set()
    answers = await asyncio.wait_for(asyncio.gather(staying, alone), DEADLINE_S)
    # Every caller gone: the read still ends, and what it read is remembered.
    reads.release.clear()
    gone = asyncio.create_task(cached.tenant_for_key("rf_wrong"))
    await eventually(lambda: len(reads.started) >= 2, "the wrong key's read to start")
    gone.cancel()
    await asyncio.wait_for(asyncio.wait([gone]), DEADLINE_S)
    reads.release.set()
    await eventually(lambda: "rf_wrong" in reads.finished, "the wrong key's read to end")

    assert leaving.cancelled()
    assert list(answers) == [tenant, tenant]
    assert gone.cancelled()
    assert await cached.tenant_for_key("rf_wrong") is None
    assert reads.started == [key, "rf_wrong"]  # the last answer from memory


async def test_a_failed_read_fails_every_caller_of_it_and_the_next_caller_reads_again(
    keys: ApiKeyStore, mongo_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached = CachedApiKeyStore(mongo_db, ttl_s=60, max_entries=100, monotonic=FakeClock())
    tenant = await keys.create_tenant("acme")
    key, _ = await keys.create_key(tenant)
    reads = key_reads(cached, monkeypatch, held=lambda _key: True)
    reads.fail = AutoReconnect("MongoDB is failing over")

    callers = [asyncio.create_task(cached.tenant_for_key(key)) for _ in range(3)]
    await eventually(lambda: len(reads.started) >= 1, "the read to start")
    reads.release.set()
    failures = await asyncio.wait_for(asyncio.gather(*callers, return_exceptions=True), DEADLINE_S)
    reads.fail = None
    after = await asyncio.wait_for(cached.tenant_for_key(key), DEADLINE_S)

    assert [type(failure) for failure in failures] == [AutoReconnect] * 3
    assert after == tenant  # not the failure again, nor stuck behind it
    assert reads.started == [key, key]


async def _is_none(value: Awaitable[object]) -> bool:
    return await value is None
