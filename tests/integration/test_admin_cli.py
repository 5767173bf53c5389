"""``reelflow-admin`` against a real MongoDB and RabbitMQ: what it prints and what it changes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aio_pika
import pexpect
import pytest
import structlog
from pydantic import SecretStr
from pymongo import AsyncMongoClient, MongoClient
from yarl import URL

from reelflow_common.admin.cli import AdminSettings, main
from reelflow_common.store.auth import ApiKeyStore
from reelflow_common.store.timefmt import utcnow
from reelflow_common.topology import (
    CHECK_CLIP,
    HEADER_REQUEUED,
    SUBMIT_CLIP,
    Topology,
    declare_topology,
)
from reelflow_devtools.ports import free_port
from reelflow_devtools.processes import console_script
from tests.waiting import DEADLINE_S, eventually

pytestmark = pytest.mark.integration

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def settings(settings_for: Callable[..., Any]) -> AdminSettings:
    # ``tenant limits`` counts a new ledger's spend again after the api's key cache and a
    # create's insert: no cache here, and a short bound
    built: AdminSettings = settings_for(AdminSettings, auth_cache_ttl_s=0, mongo_timeout_s=2)
    return built


@pytest.fixture
def admin_with(capsys: pytest.CaptureFixture[str]) -> Callable[[AdminSettings], Run]:
    """``reelflow-admin ARGS`` in this process with the settings given: (exit code, stdout,
    stderr)."""

    def with_settings(settings: AdminSettings) -> Run:
        def run(*argv: str) -> tuple[int, str, str]:
            capsys.readouterr()
            # The console script sends log lines to stderr (configure_logging); here they
            # are kept out of the way, as this process's logging is pytest's.
            with structlog.testing.capture_logs():
                code = main(argv, settings=settings)
            out, err = capsys.readouterr()
            return code, out, err

        return run

    return with_settings


@pytest.fixture
def admin(settings: AdminSettings, admin_with: Callable[[AdminSettings], Run]) -> Run:
    """``reelflow-admin ARGS`` in this process: (exit code, stdout, stderr)."""
    return admin_with(settings)


@pytest.fixture
def db(mongo_url: str, mongo_database: str) -> Iterator[Any]:
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_url, tz_aware=True)
    try:
        yield client[mongo_database]
        client.drop_database(mongo_database)
    finally:
        client.close()


def tenant_of(settings: AdminSettings, key: str) -> str | None:
    """What the api and the notifier conclude from the key."""

    async def look_up() -> str | None:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            settings.mongo_url.get_secret_value()
        )
        try:
            return await ApiKeyStore(client[settings.mongo_database]).tenant_for_key(key)
        finally:
            await client.close()

    return asyncio.run(look_up())


# --- tenants and keys ------------------------------------------------------------------


def test_tenant_create_prints_the_id_and_tenant_list_shows_it(admin: Run, db: Any) -> None:
    code, out, err = admin("tenant", "create", "acme")

    assert code == 0, err
    tenant_id = out.strip()
    assert db["tenants"].find_one({"_id": tenant_id})["name"] == "acme"
    assert f"key create --tenant {tenant_id}" in err

    code, out, _ = admin("tenant", "list")
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["TENANT", "NAME", "CREATED"]
    assert row.split()[:2] == [tenant_id, "acme"]


@pytest.mark.parametrize(
    "options", [[], ["--allowed-models", "google:3@3"]], ids=["no limits", "no budget"]
)
def test_a_tenant_created_without_a_budget_is_told_so_and_how_to_set_one(
    admin: Run, options: list[str]
) -> None:
    # Each clip is paid to Runware: a tenant without a budget may spend without end.
    code, out, err = admin("tenant", "create", "acme", *options)

    assert code == 0, err
    assert "no budget" in err
    assert f"tenant limits {out.strip()} --daily-budget-usd" in err


def test_a_tenant_created_with_limits_has_them_from_the_start(admin: Run, db: Any) -> None:
    code, out, err = admin(
        "tenant", "create", "acme", "--daily-budget-usd", "25", "--max-clips-in-flight", "40"
    )

    assert code == 0, err
    tenant_id = out.strip()
    assert "no budget" not in err
    code, shown, err = admin("tenant", "limits", tenant_id)
    assert code == 0, err
    rows = dict(line.split(None, 1) for line in shown.splitlines()[1:] if line.strip())
    assert float(rows["daily_budget_usd"]) == 25.0
    assert int(rows["max_clips_in_flight"]) == 40
    assert rows["monthly_budget_usd"].strip() == "unlimited"


def test_tenant_create_hints_at_key_create_with_the_env_file_it_was_given(
    admin: Run, db: Any
) -> None:
    code, out, err = admin("--env-file", ".run/second/env", "tenant", "create", "acme")

    assert code == 0, err
    assert f"reelflow-admin --env-file .run/second/env key create --tenant {out.strip()}" in err


def test_an_unreachable_database_is_one_line_naming_its_url_said_within_seconds(
    admin_with: Callable[[AdminSettings], Run], settings: AdminSettings
) -> None:
    port = free_port()
    # Secrets in the user part and in the options: neither is printed, the hosts are.
    nobody = (
        f"mongodb://admin:hunter2@127.0.0.1:{port}/?tls=false"
        "&authMechanismProperties=AWS_SESSION_TOKEN:sesame"
    )
    run = admin_with(
        settings.model_copy(update={"mongo_url": SecretStr(nobody), "admin_mongo_wait_s": 0.5})
    )

    started = time.monotonic()
    code, out, err = run("tenant", "list")
    took = time.monotonic() - started

    assert code == 1
    assert out == ""
    assert err.splitlines() == [
        f"reelflow-admin: MongoDB at mongodb://127.0.0.1:{port}/ did not answer within 0.5 s"
        " (ServerSelectionTimeoutError); under make run, add --env-file .run/env (its stack's"
        " settings)"
    ]
    assert took < settings.mongo_timeout_s  # not the services' per-operation bound


def test_a_refused_rabbitmq_login_is_one_line_naming_the_url_and_user_said_at_once(
    admin_with: Callable[[AdminSettings], Run], settings: AdminSettings
) -> None:
    right = URL(settings.amqp_url.get_secret_value())
    wrong = right.with_password("WrongPw9")
    # However long it may wait: a refused login is no outage, waiting does not change it.
    run = admin_with(
        settings.model_copy(update={"amqp_url": SecretStr(str(wrong)), "admin_amqp_wait_s": 60})
    )

    started = time.monotonic()
    code, out, err = run("dlq", "list")
    took = time.monotonic() - started

    assert (code, out) == (1, "")
    [line] = err.splitlines()
    assert line.startswith(
        f"reelflow-admin: RabbitMQ at amqp://{right.host}:{right.port}/ refused the login of"
        f" user {right.user!r} (ProbableAuthenticationError: ACCESS_REFUSED"
    )
    assert line.endswith("; under make run, add --env-file .run/env (its stack's settings)")
    assert "WrongPw9" not in err
    assert took < 30


def test_an_unreachable_rabbitmq_is_one_line_naming_its_url_said_within_its_wait(
    admin_with: Callable[[AdminSettings], Run], settings: AdminSettings
) -> None:
    port = free_port()
    nobody = f"amqp://admin:hunter2@127.0.0.1:{port}/"
    run = admin_with(
        settings.model_copy(update={"amqp_url": SecretStr(nobody), "admin_amqp_wait_s": 1})
    )

    started = time.monotonic()
    code, out, err = run("--env-file", ".run/env", "dlq", "requeue", "--queue", CHECK_CLIP)
    took = time.monotonic() - started

    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"reelflow-admin: RabbitMQ at amqp://127.0.0.1:{port}/ did not take a connection within"
        f" 1 s (Connection refused; AMQPConnectionError: [Errno 111] Connect call failed"
        f" ('127.0.0.1', {port})) (REELFLOW_AMQP_URL, from the environment or .run/env)"
    ]
    assert took < 1 + DEADLINE_S


def test_at_a_terminal_a_wait_for_rabbitmq_or_mongodb_is_said_before_it_fails(
    mongo_url: str, mongo_database: str
) -> None:
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("REELFLOW_")}
    env |= {"REELFLOW_AMQP_URL": f"amqp://guest:hunter2@127.0.0.1:{port}/"}

    lines, status = in_terminal(env | {"REELFLOW_ADMIN_AMQP_WAIT_S": "4"}, "dlq", "list")

    assert status == 1
    assert lines[0] == f"waiting for RabbitMQ at amqp://127.0.0.1:{port}/..."
    assert lines[1].startswith(
        f"reelflow-admin: RabbitMQ at amqp://127.0.0.1:{port}/ did not take a connection within"
        " 4 s (Connection refused; "
    )
    assert len(lines) == 2  # nothing else: no log line per attempt
    env |= {"REELFLOW_MONGO_URL": f"mongodb://127.0.0.1:{port}/"}
    lines, status = in_terminal(env | {"REELFLOW_ADMIN_MONGO_WAIT_S": "3"}, "tenant", "list")
    assert status == 1
    assert lines[0] == f"waiting for MongoDB at mongodb://127.0.0.1:{port}/..."
    assert lines[1].startswith(f"reelflow-admin: MongoDB at mongodb://127.0.0.1:{port}/ did not")


def test_a_created_key_is_printed_once_listed_without_it_and_authenticates(
    admin: Run, db: Any, settings: AdminSettings
) -> None:
    tenant_id = admin("tenant", "create", "acme")[1].strip()

    code, out, err = admin(
        "key", "create", "--tenant", tenant_id, "--label", "ci", "--expires-in", "30d"
    )

    assert code == 0, err
    key = out.strip()
    assert re.fullmatch(r"rf_[\w-]{40,}", key)
    assert "shown this once" in err
    assert tenant_of(settings, key) == tenant_id
    assert key not in str(list(db["api_keys"].find()))

    code, out, _ = admin("key", "list", "--tenant", tenant_id)
    assert code == 0
    assert key not in out
    header, row = out.splitlines()
    assert header.split() == ["KEY_ID", "PREFIX", "LABEL", "CREATED", "EXPIRES", "REVOKED", "STATE"]
    key_id, prefix, label, _created, expires, revoked, state = row.split()
    assert prefix == f"{key[:7]}…"
    assert (label, revoked, state) == ("ci", "-", "valid")
    assert expires.startswith((utcnow() + timedelta(days=30)).date().isoformat())
    assert len(key_id) == 16


def test_key_revoke_makes_the_key_unknown_and_key_list_says_so(
    admin: Run, settings: AdminSettings, db: Any
) -> None:
    tenant_id = admin("tenant", "create", "acme")[1].strip()
    key = admin("key", "create", "--tenant", tenant_id)[1].strip()
    kept = admin("key", "create", "--tenant", tenant_id)[1].strip()
    key_id = next(
        line.split()[0]
        for line in admin("key", "list", "--tenant", tenant_id)[1].splitlines()[1:]
        if line.split()[1] == f"{key[:7]}…"
    )

    code, out, err = admin("key", "revoke", key_id)

    assert code == 0, err
    assert out.startswith(f"{key_id} revoked at ")
    assert "REELFLOW_AUTH_CACHE_TTL_S" in err
    assert tenant_of(settings, key) is None
    assert tenant_of(settings, kept) == tenant_id
    states = {
        line.split()[0]: line.split()[-1]
        for line in admin("key", "list", "--tenant", tenant_id)[1].splitlines()[1:]
    }
    assert states[key_id] == "revoked"
    assert sorted(states.values()) == ["revoked", "valid"]


def test_tenant_limits_shows_sets_and_clears_limits_and_keys_carry_them(
    admin: Run, db: Any, settings: AdminSettings
) -> None:
    tenant_id = admin("tenant", "create", "acme")[1].strip()
    key = admin("key", "create", "--tenant", tenant_id)[1].strip()

    code, out, err = admin(
        "tenant",
        "limits",
        tenant_id,
        "--max-clips-in-flight",
        "20",
        "--allowed-models",
        "google:3@3,klingai:5@3",
        "--daily-budget-usd",
        "12.5",
    )

    assert code == 0, err
    limits_shown, committed, spent = out.split("\n\n")
    shown = dict(line.split(None, 1) for line in limits_shown.splitlines()[1:])
    assert shown["max_clips_in_flight"] == "20"
    assert shown["allowed_models"] == "google:3@3,klingai:5@3"
    assert shown["daily_budget_usd"] == "12.5"
    assert shown["monthly_budget_usd"] == "unlimited"
    # The key issued before carries them: the API reads limits with the key, no other read.
    assert db["api_keys"].find_one({"tenant_id": tenant_id})["limits"]["daily_budget_usd"] == 12.5
    # What the new ledger holds against them: nothing spent yet.
    header, today, month, in_flight = (line.split() for line in committed.splitlines())
    assert header == ["PERIOD", "COMMITTED", "LIMIT", "LEFT"]
    assert today[1:] == ["$0.00", "$12.50", "$12.50"]
    assert month[1:] == ["$0.00", "unlimited", "-"]
    assert in_flight == ["in", "flight", "0", "20", "-"]
    # What it spent (nothing yet), as /v1/usage sums it: said with a budget or without.
    day, this_month = today[0], month[0]
    assert spent.strip() == f"spent {day} $0.00, {this_month} $0.00"

    code, out, _ = admin("tenant", "limits", tenant_id, "--daily-budget-usd", "none")
    assert code == 0
    shown = dict(line.split(None, 1) for line in out.split("\n\n")[0].splitlines()[1:])
    assert shown["daily_budget_usd"] == "unlimited"
    assert shown["max_clips_in_flight"] == "20"
    assert tenant_of(settings, key) == tenant_id
    assert admin("tenant", "limits", "no-such-tenant")[0] == 1
    with pytest.raises(SystemExit):
        admin("tenant", "limits", tenant_id, "--max-clips-in-flight", "many")


def test_tenant_recount_refuses_an_unknown_tenant_and_counts_nothing_without_a_ledger(
    admin: Run, db: Any
) -> None:
    code, out, err = admin("tenant", "recount", "no-such-tenant")

    assert code == 1
    assert out == ""
    assert "no tenant 'no-such-tenant'" in err

    tenant_id = admin("tenant", "create", "acme")[1].strip()
    code, out, err = admin("tenant", "recount", tenant_id, "--dry-run")
    assert code == 0, err
    assert "has no ledger" in out
    assert db["tenant_ledgers"].count_documents({}) == 0


def test_unknown_tenants_keys_and_durations_are_refused(admin: Run, db: Any) -> None:
    code, _, err = admin("key", "create", "--tenant", "no-such-tenant")
    assert code == 1
    assert "no tenant 'no-such-tenant'" in err
    assert db["api_keys"].count_documents({}) == 0

    code, _, err = admin("key", "list", "--tenant", "no-such-tenant")
    assert (code, "no tenant" in err) == (1, True)
    # Each says where the right ids are.
    assert "no tenant 'no-such-tenant'; reelflow-admin tenant list shows the tenants" in err
    code, _, err = admin("project", "list", "--tenant", "no-such-tenant")
    assert (code, "; reelflow-admin tenant list shows the tenants" in err) == (1, True)

    code, _, err = admin("key", "revoke", "0123456789abcdef")
    assert (code, "no API key" in err) == (1, True)
    assert "; reelflow-admin key list --tenant TENANT_ID shows a tenant's keys" in err

    with pytest.raises(SystemExit) as exited:
        admin("key", "create", "--tenant", "x", "--expires-in", "soon")
    assert exited.value.code == 2


def test_the_console_script_reads_the_services_settings_from_the_environment(
    mongo_url: str, mongo_database: str, db: Any
) -> None:
    env = os.environ | {"REELFLOW_MONGO_URL": mongo_url, "REELFLOW_MONGO_DATABASE": mongo_database}
    created = subprocess.run(
        [console_script("reelflow-admin"), "tenant", "create", "globex"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    listed = subprocess.run(
        [console_script("reelflow-admin"), "tenant", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert f"{created.stdout.strip()}  globex" in listed.stdout


def test_the_console_script_reads_an_env_file_under_the_environment(
    mongo_url: str, mongo_database: str, db: Any, tmp_path: Path
) -> None:
    env_file = tmp_path / "env"  # as make run writes it: its database, and one to lose to
    env_file.write_text(f"REELFLOW_MONGO_URL={mongo_url}\nREELFLOW_MONGO_DATABASE=not-this-one\n")
    env = {name: value for name, value in os.environ.items() if not name.startswith("REELFLOW_")}
    env |= {"REELFLOW_MONGO_DATABASE": mongo_database}

    # Run as make run's users do, .venv/bin/reelflow-admin from the checkout, not on PATH.
    script = Path(console_script("reelflow-admin"))
    checkout = script.parent.parent.parent
    path = [p for p in env.get("PATH", "").split(os.pathsep) if Path(p) != script.parent]
    env["PATH"] = os.pathsep.join(path)

    def admin(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(script.relative_to(checkout)), *args],
            env=env,
            cwd=checkout,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    created = admin("--env-file", str(env_file), "tenant", "create", "initech")
    missing = admin("--env-file", str(tmp_path / "gone"), "tenant", "list")

    assert created.returncode == 0, created.stderr
    assert db["tenants"].find_one({"_id": created.stdout.strip()})["name"] == "initech"
    # Its hints name the command as it was run, so that they work copied.
    typed = str(script.resolve().relative_to(checkout.resolve()))
    assert f"{typed} --env-file {env_file} key create --tenant" in created.stderr
    assert missing.returncode == 1
    assert f"{tmp_path / 'gone'} does not exist: make run writes it" in missing.stderr
    assert "Traceback" not in missing.stderr


# --- dead letters ----------------------------------------------------------------------


async def _dead_letter(settings: AdminSettings, work_queue: str, bodies: list[bytes]) -> None:
    """Put ``bodies`` on the work queue and reject each: the broker moves them to its DLQ."""
    topology = Topology.from_settings(settings)
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        await declare_topology(channel, topology)
        for index, body in enumerate(bodies):
            await channel.default_exchange.publish(
                aio_pika.Message(
                    body,
                    message_id=f"m{index}",
                    type="SubmitClip",
                    headers={"project_id": "p1", "x-reelflow-retries": 7},
                ),
                routing_key=topology.queue(work_queue),
            )
        queue = await channel.get_queue(topology.queue(work_queue))
        for _ in bodies:
            message = await queue.get(timeout=DEADLINE_S)
            assert message is not None
            await message.reject(requeue=False)


async def _depths(settings: AdminSettings, *names: str) -> list[int]:
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        counts = []
        for name in names:
            queue = await channel.declare_queue(name, passive=True)
            counts.append(queue.declaration_result.message_count or 0)
        return counts


async def _take_all(
    settings: AdminSettings, name: str
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(name)
        taken = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            taken.append(message)
        return taken


def wait_for_depth(settings: AdminSettings, name: str, count: int) -> None:
    """Until ``name`` holds ``count`` (the broker dead-letters and applies acks a moment later)."""

    async def reached() -> bool:
        return (await _depths(settings, name))[0] == count

    asyncio.run(eventually(reached, f"{name} holding {count} message(s)"))


def test_dlq_list_counts_and_peeks_without_consuming(admin: Run, settings: AdminSettings) -> None:
    topology = Topology.from_settings(settings)
    asyncio.run(_dead_letter(settings, SUBMIT_CLIP, [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']))
    wait_for_depth(settings, topology.dead_letter_queue(SUBMIT_CLIP), 3)

    code, out, err = admin("dlq", "list", "--peek", "2")

    assert code == 0, err
    dlq = topology.dead_letter_queue(SUBMIT_CLIP)
    assert f"{dlq}  3 message(s)" in out
    assert f"{topology.dead_letter_queue(CHECK_CLIP)}  0 message(s)" in out
    assert f"  m0  SubmitClip  rejected from {topology.queue(SUBMIT_CLIP)}" in out
    assert '    {"n": 0}' in out
    assert "  m1  " in out
    assert "  m2  " not in out
    wait_for_depth(settings, dlq, 3)  # every peeked message is back

    code, out, _ = admin("dlq", "list", "--queue", CHECK_CLIP)
    assert (code, out.strip()) == (0, f"{topology.dead_letter_queue(CHECK_CLIP)}  0 message(s)")


def test_dlq_requeue_moves_messages_back_with_a_fresh_start(
    admin: Run, settings: AdminSettings
) -> None:
    topology = Topology.from_settings(settings)
    asyncio.run(_dead_letter(settings, SUBMIT_CLIP, [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']))
    wait_for_depth(settings, topology.dead_letter_queue(SUBMIT_CLIP), 3)

    code, out, err = admin("dlq", "requeue", "--queue", SUBMIT_CLIP, "--limit", "2")

    assert code == 0, err
    assert out.strip() == (
        f"moved 2 message(s) from {topology.dead_letter_queue(SUBMIT_CLIP)} "
        f"to {topology.queue(SUBMIT_CLIP)}; 1 left"
    )
    # The rest, and how to move it: a requeue moves 100 unless told otherwise.
    assert (
        f"1 message(s) remain in {topology.dead_letter_queue(SUBMIT_CLIP)} (--limit 2 reached);"
        f" to move them too: reelflow-admin dlq requeue --queue {SUBMIT_CLIP} --limit 1"
    ) in err
    back = asyncio.run(_take_all(settings, topology.queue(SUBMIT_CLIP)))
    assert [(m.message_id, m.body, m.type) for m in back] == [
        ("m0", b'{"n": 0}', "SubmitClip"),
        ("m1", b'{"n": 1}', "SubmitClip"),
    ]
    for message in back:
        # No x-death, and the retries start again; x-delivery-count is this delivery's; the
        # copy says it was moved back (its handler knows it was handled before).
        assert message.headers.get("x-delivery-count", 0) == 0
        assert {k: v for k, v in message.headers.items() if k != "x-delivery-count"} == {
            "project_id": "p1",
            HEADER_REQUEUED: 1,
        }
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    wait_for_depth(settings, topology.dead_letter_queue(SUBMIT_CLIP), 1)


def test_dlq_commands_take_a_queue_named_as_dlq_list_prints_it(
    admin: Run, settings: AdminSettings
) -> None:
    topology = Topology.from_settings(settings)
    asyncio.run(_dead_letter(settings, SUBMIT_CLIP, [b'{"n": 0}']))
    dlq = topology.dead_letter_queue(SUBMIT_CLIP)
    wait_for_depth(settings, dlq, 1)

    code, printed, err = admin("dlq", "list", "--queue", dlq)
    assert code == 0, err
    assert printed.startswith(f"{dlq}  1 message(s)")
    code, out, err = admin("dlq", "list", "--queue", topology.queue(SUBMIT_CLIP))
    assert (code, out) == (0, printed), err

    code, out, err = admin("dlq", "requeue", "--queue", dlq)
    assert code == 0, err
    assert out.startswith("moved 1 message(s)")


def test_dlq_list_json_shows_each_message_whole(admin: Run, settings: AdminSettings) -> None:
    topology = Topology.from_settings(settings)
    long_body = json.dumps({"prompt": "x" * 1000}).encode()
    asyncio.run(_dead_letter(settings, SUBMIT_CLIP, [b'{"n": 0}', long_body]))
    dlq = topology.dead_letter_queue(SUBMIT_CLIP)
    wait_for_depth(settings, dlq, 2)

    code, out, err = admin("dlq", "list", "--queue", SUBMIT_CLIP, "--json")

    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["id"], r["type"], r["body"]) for r in records] == [
        ("m0", "SubmitClip", '{"n": 0}'),
        ("m1", "SubmitClip", long_body.decode()),
    ]
    assert records[0]["queue"] == dlq
    assert records[0]["headers"]["project_id"] == "p1"
    assert records[0]["reason"] == f"rejected from {topology.queue(SUBMIT_CLIP)} (1x)"
    assert f"{dlq}  2 message(s)" in err
    wait_for_depth(settings, dlq, 2)


def test_dlq_drop_removes_the_message_named_and_prints_it_first(
    admin: Run, settings: AdminSettings
) -> None:
    topology = Topology.from_settings(settings)
    asyncio.run(_dead_letter(settings, SUBMIT_CLIP, [b'{"n": 0}', b"poison", b'{"n": 2}']))
    dlq = topology.dead_letter_queue(SUBMIT_CLIP)
    wait_for_depth(settings, dlq, 3)

    code, out, err = admin("dlq", "drop", "--queue", dlq, "--id", "m1")

    assert code == 0, err
    (record,) = [json.loads(line) for line in out.splitlines()]
    assert (record["queue"], record["id"], record["body"]) == (dlq, "m1", "poison")
    assert f"dropped 1 message(s) from {dlq} (printed above); 2 left" in err
    wait_for_depth(settings, dlq, 2)
    left = asyncio.run(_take_all(settings, dlq))
    assert [(m.message_id, m.body) for m in left] == [("m0", b'{"n": 0}'), ("m2", b'{"n": 2}')]

    code, out, err = admin("dlq", "drop", "--queue", SUBMIT_CLIP, "--id", "m1")
    assert (code, out) == (1, "")
    assert f"no dead letter named 'm1' in {dlq}" in err


def test_dlq_drop_all_wants_a_yes_then_drops_every_message(
    admin: Run, settings: AdminSettings
) -> None:
    topology = Topology.from_settings(settings)
    asyncio.run(_dead_letter(settings, CHECK_CLIP, [b'{"n": 0}', b'{"n": 1}']))
    dlq = topology.dead_letter_queue(CHECK_CLIP)
    wait_for_depth(settings, dlq, 2)

    code, out, err = admin("dlq", "drop", "--queue", CHECK_CLIP, "--all")
    assert (code, out) == (1, "")
    assert f"--all drops every message in {dlq} (2 now)" in err
    assert (asyncio.run(_depths(settings, dlq))) == [2]

    code, out, err = admin("dlq", "drop", "--queue", CHECK_CLIP, "--all", "--yes")

    assert code == 0, err
    assert [json.loads(line)["id"] for line in out.splitlines()] == ["m0", "m1"]
    assert f"dropped 2 message(s) from {dlq} (printed above); 0 left" in err
    wait_for_depth(settings, dlq, 0)
    with pytest.raises(SystemExit, match="2"):
        admin("dlq", "drop", "--queue", CHECK_CLIP)  # which ones: argparse says so


def test_the_console_script_logs_on_stderr_and_prints_only_its_answer(
    settings: AdminSettings,
) -> None:
    topology = Topology.from_settings(settings)
    asyncio.run(_dead_letter(settings, SUBMIT_CLIP, [b'{"n": 0}']))
    wait_for_depth(settings, topology.dead_letter_queue(SUBMIT_CLIP), 1)
    env = os.environ | {
        "REELFLOW_AMQP_URL": settings.amqp_url.get_secret_value(),
        "REELFLOW_AMQP_PREFIX": settings.amqp_prefix,
        "REELFLOW_LOG_FORMAT": "json",
    }

    requeued = subprocess.run(
        [console_script("reelflow-admin"), "dlq", "requeue", "--queue", SUBMIT_CLIP],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert requeued.stdout.splitlines() == [
        f"moved 1 message(s) from {topology.dead_letter_queue(SUBMIT_CLIP)} "
        f"to {topology.queue(SUBMIT_CLIP)}; 0 left"
    ]
    assert '"event": "dead_letters_requeued"' in requeued.stderr
    # Named as the services are (reelflow-api, ...), and as its Job is: reelflow-admin.
    logged = [json.loads(line) for line in requeued.stderr.splitlines() if line.startswith("{")]
    assert logged
    assert {line["service"] for line in logged} == {"reelflow-admin"}


def in_terminal(env: dict[str, str], *args: str) -> tuple[list[str], int]:
    """``reelflow-admin ARGS`` in a pseudo-terminal, as an operator runs it: the lines on the
    screen (stdout and stderr, as they mix there), and the exit status."""
    child = pexpect.spawn(
        console_script("reelflow-admin"),
        list(args),
        env=env | {"TERM": "xterm-256color"},
        dimensions=(40, 200),
        encoding="utf-8",
        timeout=60,
    )
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus is not None, f"killed by signal {child.signalstatus}"
    return (child.before or "").splitlines(), child.exitstatus


def test_at_a_terminal_a_command_prints_its_answer_and_logs_only_with_verbose(
    admin: Run, mongo_url: str, mongo_database: str, db: Any
) -> None:
    tenant_id = admin("tenant", "create", "acme")[1].strip()
    env = {name: value for name, value in os.environ.items() if not name.startswith("REELFLOW_")}
    env |= {"REELFLOW_MONGO_URL": mongo_url, "REELFLOW_MONGO_DATABASE": mongo_database}
    answer = f"tenant {tenant_id} has no ledger (no in-flight limit or budget): nothing to count"

    quiet, quiet_status = in_terminal(env, "tenant", "recount", tenant_id)
    verbose, verbose_status = in_terminal(env, "--verbose", "tenant", "recount", tenant_id)

    assert (quiet_status, quiet) == (0, [answer])
    assert verbose_status == 0, verbose
    assert answer in verbose
    assert any("db_clock_synced" in line for line in verbose), verbose


def test_dlq_requeue_keeps_the_dead_letter_when_the_broker_cannot_take_the_copy(
    admin: Run, settings: AdminSettings
) -> None:
    topology = Topology.from_settings(settings)
    asyncio.run(_dead_letter(settings, SUBMIT_CLIP, [b'{"n": 0}']))
    wait_for_depth(settings, topology.dead_letter_queue(SUBMIT_CLIP), 1)
    asyncio.run(_delete_queue(settings, topology.queue(SUBMIT_CLIP)))  # nowhere to route

    code, _, err = admin("dlq", "requeue", "--queue", SUBMIT_CLIP)

    assert code == 1
    assert "no queue for routing key" in err
    wait_for_depth(settings, topology.dead_letter_queue(SUBMIT_CLIP), 1)


def test_dlq_commands_name_unknown_queues_and_missing_topologies(
    admin: Run, settings: AdminSettings
) -> None:
    code, _, err = admin("dlq", "requeue", "--queue", "nope")
    assert code == 1
    assert "unknown queue 'nope'" in err
    # with the names that are valid, as dlq list prints them
    assert Topology.from_settings(settings).dead_letter_queue(CHECK_CLIP) in err

    code, _, err = admin("dlq", "list", "--queue", SUBMIT_CLIP)  # nothing declared yet
    assert code == 1
    assert "does not exist" in err


async def _delete_queue(settings: AdminSettings, name: str) -> None:
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(name)
