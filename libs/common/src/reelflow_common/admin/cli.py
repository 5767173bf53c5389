"""``reelflow-admin``: the command line. Each command prints what a person needs, and
the one secret it ever prints (a new key) alone on stdout, so a script can take it.

    reelflow-admin [--env-file FILE] [--verbose] COMMAND …
                                 (make run writes its stack's env file as .run/env)

    reelflow-admin tenant create NAME [the limits' options, as tenant limits takes them]
    reelflow-admin tenant list
    reelflow-admin tenant limits ID [--max-clips-in-flight N] [--max-scenes-per-project N]
                                    [--allowed-models M,M] [--daily-budget-usd X]
                                    [--monthly-budget-usd X]   (``none`` clears one)
    reelflow-admin tenant recount ID [--dry-run]
    reelflow-admin tenant usage ID [--month YYYY-MM] [--json]
    reelflow-admin key create --tenant ID [--label L] [--expires-in 30d]
    reelflow-admin key list --tenant ID
    reelflow-admin key revoke KEY_ID
    reelflow-admin dlq list [--queue Q] [--peek N] [--json]
    reelflow-admin dlq requeue --queue Q [--limit N]
    reelflow-admin dlq drop --queue Q (--id ID | --all --yes)
    reelflow-admin project list (--tenant ID | --past-lease) [--status S] [--past-lease]
                                [--limit N] [--json]
    reelflow-admin project show PROJECT_ID [--json]
    reelflow-admin reconcile PROJECT_ID
    reelflow-admin assets list (--failed | PROJECT_ID)
    reelflow-admin assets retry (--failed | PROJECT_ID) [--scene N]   (scenes from 0)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import re
import shlex
import shutil
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pymongo
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from aio_pika.exceptions import AMQPError, ChannelNotFoundEntity
from aiormq.exceptions import ProbableAuthenticationError
from pydantic import Field
from pymongo.errors import ConnectionFailure, PyMongoError
from yarl import URL

from reelflow_common.accounting import (
    CostEstimator,
    LedgerStore,
    TenantLimits,
    TenantUsage,
    UsageStore,
    day_key,
    month_key,
)
from reelflow_common.accounting.ledger import LedgerMoved, LedgerView, Unreserved
from reelflow_common.admin import assets, dlq
from reelflow_common.admin.projects import (
    list_rows,
    listed_state,
    project_state,
    render_pass,
    render_project,
)
from reelflow_common.broker import Publisher, PublishError, amqp_channel
from reelflow_common.broker.dlq import dead_letter_depths, requeue_dead_letters
from reelflow_common.broker.transport import connect_robust
from reelflow_common.clock import DbClock
from reelflow_common.domain import ProjectStatus
from reelflow_common.errors import ReelflowError
from reelflow_common.lifecycle import wait_for
from reelflow_common.logging import configure_logging, logs_as_json
from reelflow_common.money import format_usd
from reelflow_common.mongo import Database, mongo_database
from reelflow_common.polling import shared_planner
from reelflow_common.redact import url_location
from reelflow_common.runware import RunwareClient
from reelflow_common.runware.catalogue import AIR_ID_PATTERN, MODEL_RULES
from reelflow_common.settings import (
    AuthSettings,
    CeilingSettings,
    CostEstimateSettings,
    LateFollowSettings,
    LeaseSettings,
    LogSettings,
    MongoSettings,
    PollingSettings,
    RunwareSettings,
    StorageSettings,
    TopologySettings,
    VisibilitySettings,
)
from reelflow_common.storage.links import VideoLinks
from reelflow_common.store import Project, ProjectStore
from reelflow_common.store.auth import ApiKeyStore, UnknownApiKey, UnknownTenant
from reelflow_common.store.inflight import TenantClips
from reelflow_common.store.timefmt import rfc3339
from reelflow_common.store.unreserved import UnreservedSpend
from reelflow_common.topology import CHECK_CLIP, STORE_VIDEO, Topology
from reelflow_common.tracking.chains import Action
from reelflow_common.tracking.policy import Policy
from reelflow_common.tracking.reconciler import Reconciler
from reelflow_common.tracking.recorder import ClipRecorder

PROG = "reelflow-admin"
_DURATION = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

Command = Callable[[argparse.Namespace, "AdminSettings"], Coroutine[Any, Any, int]]


class AdminSettings(
    TopologySettings,
    AuthSettings,
    CostEstimateSettings,
    MongoSettings,
    PollingSettings,
    LogSettings,
    RunwareSettings,
    LeaseSettings,
    VisibilitySettings,
    CeilingSettings,
    LateFollowSettings,
    StorageSettings,
):
    """The services' settings, from the same variables: the broker, the database, the
    topology and the logs, for ``reconcile`` Runware and how the poller follows clips
    (whether a success it records is copied, too), and for ``tenant limits`` and ``tenant
    recount`` how the api caches keys and estimates clips."""

    # A person waits for the answer: a database that is not there is said in seconds,
    # not after the services' REELFLOW_MONGO_TIMEOUT_S (which then bounds each operation).
    admin_mongo_wait_s: float = Field(
        default=3.0,
        gt=0,
        description="how long reelflow-admin waits for MongoDB's first answer before it"
        " gives up, saying which URL it tried",
    )
    # The same for RabbitMQ: the services wait for it without end (their wait_for), a
    # person is told. A refused login is said at once: waiting does not change a password.
    admin_amqp_wait_s: float = Field(
        default=10.0,
        gt=0,
        description="how long reelflow-admin waits for RabbitMQ to take its connection before"
        " it gives up, saying which URL it tried and why (a refused login at once)",
    )


def load_settings(env_file: Path | None = None) -> AdminSettings:
    """The settings from the environment and, under it, ``env_file`` (``NAME=value`` lines:
    the ``.run/env`` that ``make run`` writes for the stack it runs)."""
    if env_file is None:
        return AdminSettings()
    if not env_file.is_file():
        raise ReelflowError(
            f"{env_file} does not exist: make run writes it while its stack runs"
            " (.run/env, or env in its --run-dir)"
        )
    return AdminSettings(_env_file=env_file)


def _command() -> str:
    """This command as it can be typed again here, for a hint to copy: ``reelflow-admin``
    when that is the one on PATH, else the script's path as run (``.venv/bin/reelflow-admin``
    under make run, relative to the working directory when under it)."""
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is None or script.name != PROG:  # python -m, or in another program
        return PROG
    try:
        found = shutil.which(PROG)
        if found is not None and Path(found).resolve() == script.resolve():
            return PROG
        where = script.resolve()
        try:
            shown = str(where.relative_to(Path.cwd().resolve()))
        except ValueError:
            shown = str(where)
    except OSError:
        return PROG
    return shlex.quote(shown if "/" in shown else f"./{shown}")


def _env_file_option(args: argparse.Namespace) -> str:
    """``--env-file FILE`` as the command was given it (for a hint to repeat), or ``""``."""
    return "" if args.env_file is None else f" --env-file {shlex.quote(str(args.env_file))}"


#: how long a wait for MongoDB or RabbitMQ lasts before a terminal is told of it
WAIT_SAID_AFTER_S = 2.0


def _settings_hint(args: argparse.Namespace, variable: str) -> str:
    """Where the URL tried came from, to say after a failure to reach it."""
    if args.env_file is None:
        return "; under make run, add --env-file .run/env (its stack's settings)"
    return f" ({variable}, from the environment or {args.env_file})"


@contextmanager
def _waiting_said(what: str) -> Iterator[None]:
    """At a terminal, one line on stderr if the block lasts beyond ``WAIT_SAID_AFTER_S``:
    a person sees why nothing happens yet (a log line says so only with --verbose)."""
    if not sys.stderr.isatty():
        yield
        return
    said = asyncio.get_running_loop().call_later(
        WAIT_SAID_AFTER_S, lambda: print(f"waiting for {what}...", file=sys.stderr, flush=True)
    )
    try:
        yield
    finally:
        said.cancel()


@asynccontextmanager
async def _database(args: argparse.Namespace, settings: AdminSettings) -> AsyncIterator[Database]:
    """The services' database, once it has answered within ``admin_mongo_wait_s``; else one
    line that says which URL was tried (an error, exit 1)."""
    url = url_location(settings.mongo_url.get_secret_value())
    async with mongo_database(settings) as db:
        try:
            with pymongo.timeout(settings.admin_mongo_wait_s), _waiting_said(f"MongoDB at {url}"):
                await db.command("ping")
        except ConnectionFailure as exc:  # server selection timed out, or the network did
            raise ReelflowError(
                f"MongoDB at {url} did not answer within {settings.admin_mongo_wait_s:g} s"
                f" ({type(exc).__name__}){_settings_hint(args, 'REELFLOW_MONGO_URL')}"
            ) from exc
        yield db


@asynccontextmanager
async def _broker(
    args: argparse.Namespace, settings: AdminSettings
) -> AsyncIterator[AbstractRobustConnection]:
    """A connection to the services' RabbitMQ, as ``amqp_connection`` makes it, once the broker
    has taken it within ``admin_amqp_wait_s``; else one line that says which URL was tried
    and why it failed (an error, exit 1). A refused login is said at once."""
    secret = settings.amqp_url.get_secret_value()
    url = url_location(secret)
    failures: list[Exception] = []

    async def attempt() -> AbstractRobustConnection:
        try:
            return await connect_robust(secret, name=PROG, reconnect_interval_s=2.0)
        except ProbableAuthenticationError as exc:
            raise _LoginRefused from exc  # not transient: wait_for raises it at once
        except Exception as exc:
            failures.append(exc)
            raise

    try:
        async with asyncio.timeout(settings.admin_amqp_wait_s):
            with _waiting_said(f"RabbitMQ at {url}"), _transport_errors_unlogged():
                connection = await wait_for("rabbitmq", attempt)  # as the services wait
    except TimeoutError as exc:
        why = _why(failures[-1], secret) if failures else "no answer"
        raise ReelflowError(
            f"RabbitMQ at {url} did not take a connection within"
            f" {settings.admin_amqp_wait_s:g} s ({why})"
            f"{_settings_hint(args, 'REELFLOW_AMQP_URL')}"
        ) from exc
    except _LoginRefused as exc:
        user = _url_part(secret, "user") or "guest"  # aio-pika's when the URL names none
        raise ReelflowError(
            f"RabbitMQ at {url} refused the login of user {user!r}"
            f" ({_why(exc.__cause__ or exc, secret)})"
            f"{_settings_hint(args, 'REELFLOW_AMQP_URL')}"
        ) from exc
    except AMQPError as exc:  # no outage either: said at once
        raise ReelflowError(
            f"RabbitMQ at {url} closed the connection it was opening ({_why(exc, secret)}):"
            " does its virtual host exist, and may the user use it?"
            f"{_settings_hint(args, 'REELFLOW_AMQP_URL')}"
        ) from exc
    try:
        yield connection
    finally:
        try:
            # A broker that stopped answering must not keep the command alive.
            await asyncio.wait_for(connection.close(), timeout=10.0)
        except TimeoutError:
            _note(f"{PROG}: the connection to RabbitMQ at {url} did not close within 10 s")


class _TransportErrors(logging.Filter):
    """aiormq's line for each connect that failed, an error: the failure is said once, at the
    end (and logged by ``wait_for`` with each attempt, a warning)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("error when creating transport")


@contextmanager
def _transport_errors_unlogged() -> Iterator[None]:
    logger, dropped = logging.getLogger("aiormq.connection"), _TransportErrors()
    logger.addFilter(dropped)
    try:
        yield
    finally:
        logger.removeFilter(dropped)


class _LoginRefused(Exception):
    """RabbitMQ refused the login (ACCESS_REFUSED): a setting to fix, no outage to wait out."""


def _url_part(url: str, part: str) -> str | None:
    """The URL's ``user`` or ``password`` (decoded), None when it has none or is no URL."""
    try:
        value: str | None = getattr(URL(url), part)
    except ValueError:
        return None
    return value


def _why(exc: BaseException, secret: str) -> str:
    """An error as one short clause: the system's words for its errno (``Connection refused``)
    and its class and text, with the URL's password never in it."""
    text = f"{type(exc).__name__}: {exc}"
    errno = getattr(exc, "errno", None)
    if isinstance(errno, int) and errno > 0:
        text = f"{os.strerror(errno)}; {text}"
    # As decoded and as written in the URL (``p%40ss``): an error may quote either.
    for password in (_url_part(secret, "password"), _url_part(secret, "raw_password")):
        if password:
            text = text.replace(password, "***")
    return text


def duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``2w``, ``45s`` as a timedelta."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or int(match[1]) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30d, 12h or 90m")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def _when(value: datetime | None, empty: str = "-") -> str:
    return empty if value is None else rfc3339(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in [header, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)


def _note(text: str) -> None:
    print(text, file=sys.stderr)


# --- tenants and keys ------------------------------------------------------------------


async def _db_clock(db: Database) -> DbClock:
    """The database's clock, read once: a command lasts seconds, not the minute between
    the services' readings."""
    clock = DbClock(db)
    await clock.sync()
    return clock


async def _key_store(db: Database) -> tuple[ApiKeyStore, DbClock]:
    """The key store on the database's clock, as the services': a key's expiry set here,
    its ``created_at`` and ``revoked_at``, are on the clock the api and notifier judge by."""
    clock = await _db_clock(db)
    return ApiKeyStore(db, clock=clock.now), clock


async def tenant_create(args: argparse.Namespace, settings: AdminSettings) -> int:
    """Create a tenant, with the limits given (a tenant has no key yet: nothing to count)."""
    limits = TenantLimits.model_validate(_limit_changes(args))
    env_file = _env_file_option(args)
    async with _database(args, settings) as db:
        keys, _ = await _key_store(db)
        await keys.ensure_indexes()
        tenant_id = await keys.create_tenant(args.name)
        # Said at once: if setting its limits fails, ``tenant limits`` sets them on this id.
        print(tenant_id, flush=True)
        if limits != TenantLimits():
            await keys.set_limits(tenant_id, limits)
    if not limits.has_budget:
        # Each clip is paid to Runware: a tenant without a budget may spend without end.
        _note(
            f"tenant {args.name!r} has no budget (nor any limit not given);"
            f" set them before giving it a key: {_command()}{env_file} tenant limits {tenant_id}"
            " --daily-budget-usd 50 --max-clips-in-flight 100"
        )
    _note(
        f"tenant {args.name!r} created; create its first key with: "
        f"{_command()}{env_file} key create --tenant {tenant_id}"
    )
    return 0


async def tenant_list(args: argparse.Namespace, settings: AdminSettings) -> int:
    async with _database(args, settings) as db:
        tenants = await ApiKeyStore(db).list_tenants()
    rows = [(t.tenant_id, t.name, rfc3339(t.created_at)) for t in tenants]
    print(_table(("TENANT", "NAME", "CREATED"), rows))
    return 0


def _positive(text: str) -> int:
    """A count of 1 or more, checked as the command line is read (a usage error, exit 2)."""
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return number


def _not_negative(text: str) -> int:
    """A count of 0 or more, checked as the command line is read."""
    try:
        number = int(text)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 0 or more")
    return number


def _usd(text: str) -> float:
    """An amount of US dollars, 0 or more, checked as the command line is read."""
    try:
        amount = float(text)
    except ValueError:
        amount = -1.0
    if not math.isfinite(amount) or amount < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount of USD of 0 or more (e.g. 50)")
    return amount


_AIR_ID = re.compile(AIR_ID_PATTERN)


def _models(text: str) -> list[str]:
    """Runware AIR ids, comma-separated: anything else could never match a project's model."""
    models = [model.strip() for model in text.split(",") if model.strip()]
    malformed = [model for model in models if _AIR_ID.fullmatch(model) is None]
    if malformed:
        raise argparse.ArgumentTypeError(
            f"{', '.join(map(repr, malformed))}: not a Runware AIR id, provider:model@version"
            f" (reelflow knows {', '.join(MODEL_RULES)})"
        )
    return models


def _warn_of_unknown_models(models: object) -> None:
    """Say which allowed models reelflow has no rules for: a typo of a known one would lock
    the tenant out of the model meant; Runware may still know it, so not an error."""
    if not isinstance(models, list):
        return
    unknown = [model for model in models if model not in MODEL_RULES]
    if unknown:
        _note(
            f"warning: reelflow knows no model {', '.join(map(repr, unknown))} (it knows"
            f" {', '.join(MODEL_RULES)}); Runware may, but if it is a typo the tenant may not"
            " use the model meant"
        )


_LIMIT_OPTIONS: dict[str, Callable[[str], object]] = {
    "max_clips_in_flight": _positive,
    "max_scenes_per_project": _positive,
    "allowed_models": _models,
    "daily_budget_usd": _usd,
    "monthly_budget_usd": _usd,
}


_LIMIT_HELP = {
    "max_clips_in_flight": "clips queued or generating at once, 1 or more",
    "max_scenes_per_project": "scenes in one project, 1 or more",
    "allowed_models": "the only models its projects may use: Runware AIR ids,"
    " comma-separated (e.g. google:3@3,klingai:5@3)",
    "daily_budget_usd": "USD per UTC day, 0 or more",
    "monthly_budget_usd": "USD per UTC month, 0 or more",
}


def _add_limit_options(parser: argparse.ArgumentParser) -> None:
    for name in _LIMIT_OPTIONS:
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            type=_limit_value(name),
            help=f"{_LIMIT_HELP[name]} ('none' removes it)",
        )


def _limit_value(name: str) -> Callable[[str], object]:
    parse = _LIMIT_OPTIONS[name]

    def parsed(text: str) -> object:
        if text.strip().lower() in ("none", "unlimited", ""):
            return _CLEAR
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r} is not a value for {name}") from exc

    return parsed


_CLEAR = object()


def _limit_changes(args: argparse.Namespace) -> dict[str, object]:
    """The limits given on the command line (None for one to remove)."""
    changes = {
        name: None if value is _CLEAR else value
        for name in _LIMIT_OPTIONS
        if (value := getattr(args, name)) is not None
    }
    _warn_of_unknown_models(changes.get("allowed_models"))
    return changes


async def tenant_limits(args: argparse.Namespace, settings: AdminSettings) -> int:
    """Show a tenant's limits, or change the ones given (the others stay as they are), and
    what its ledger holds against them.

    Limits that need a ledger count into it what the tenant's tasks without a reservation
    spent this UTC day and month (``LedgerStore.count_unreserved``); when the tenant had
    none, again once every api replica reserves with them: after its key cache
    (``auth_cache_ttl_s``) and a create's insert already under way (``mongo_timeout_s``).
    """
    async with _database(args, settings) as db:
        keys = ApiKeyStore(db)
        limits = before = await keys.limits(args.tenant)
        changes = _limit_changes(args)
        if changes:
            values = limits.model_dump() | changes
            limits = TenantLimits.model_validate(values)
            await keys.set_limits(args.tenant, limits)
        clock = await _db_clock(db)  # the UTC day and month the api reserves in: the database's
        if changes and limits.needs_ledger:
            await _count_unreserved(db, settings, args.tenant, clock.now())
            # Creates under the api's cached limits meanwhile reserve nothing (no ledger
            # before), or $0 (no budget before, by an api older than estimates for every
            # reservation): counted once every replica reserves with these limits.
            if not before.needs_ledger or (limits.has_budget and not before.has_budget):
                await _count_again(args, settings, db, clock)
        ledger = await LedgerStore(db).read(args.tenant) if limits.needs_ledger else None
        now = clock.now()
        # What /v1/usage says: the spend of a tenant without a budget is nowhere else.
        usage = await UsageStore(db, LedgerStore(db)).month(args.tenant, month_key(now), limits)
    rows = [
        (name, "unlimited" if value is None else _shown(value))
        for name, value in limits.model_dump().items()
    ]
    print(_table(("LIMIT", "VALUE"), rows))
    if ledger is not None:
        print()
        print(_committed_table(limits, ledger, now))
    print()
    print(_spent_line(usage, day_key(now)))
    if changes:
        _note(
            "the API applies new limits within REELFLOW_AUTH_CACHE_TTL_S"
            f" ({settings.auth_cache_ttl_s:g} s here);"
            " budgets count UTC days and months, from what the tenant spent in them so far"
        )
    return 0


async def _count_again(
    args: argparse.Namespace, settings: AdminSettings, db: Database, clock: DbClock
) -> None:
    """Count the tenant's unreserved spend again once every api replica reserves with its new
    limits; if the command is stopped or fails first, say how to make that count."""
    wait_s = settings.auth_cache_ttl_s + settings.mongo_timeout_s
    due = rfc3339(clock.now() + timedelta(seconds=wait_s))
    _note(
        f"counting again in {wait_s:g} s, once the api reserves with these limits"
        " (REELFLOW_AUTH_CACHE_TTL_S + REELFLOW_MONGO_TIMEOUT_S): projects created"
        " meanwhile may reserve nothing"
    )
    try:
        await asyncio.sleep(wait_s)
        await clock.sync()
        await _count_unreserved(db, settings, args.tenant, clock.now())
    except BaseException:  # stopped (Ctrl-C cancels the sleep) or failed: re-raised
        _note(
            f"the second count did not run: run {_command()}{_env_file_option(args)}"
            f" tenant recount {args.tenant} after {due}"
        )
        raise


async def _count_unreserved(
    db: Database, settings: AdminSettings, tenant_id: str, now: datetime, *, apply: bool = True
) -> Unreserved | None:
    estimator = CostEstimator(db, fallback_usd_per_s=settings.cost_fallback_usd_per_s)
    spend = UnreservedSpend(db, estimator, default_duration=settings.default_duration)
    return await LedgerStore(db).count_unreserved(tenant_id, spend.spent, now=now, apply=apply)


def _spent_line(usage: TenantUsage, day: str) -> str:
    """What the tenant spent ``day`` and its month, as ``/v1/usage`` sums it."""
    today = next((d for d in usage.days if d.period == day), None)
    unpriced = usage.month.unknown_cost_clips
    return (
        f"spent {day} {format_usd(0.0 if today is None else today.usd)},"
        f" {usage.month.period} {format_usd(usage.month.usd)}"
        + (f" (+ {unpriced} clip(s) of unknown cost)" if unpriced else "")
    )


def _committed_table(limits: TenantLimits, ledger: LedgerView, now: datetime) -> str:
    """What the ledger holds this UTC day and month, against the budgets."""
    rows = []
    for period, budget in (
        (day_key(now), limits.daily_budget_usd),
        (month_key(now), limits.monthly_budget_usd),
    ):
        committed = ledger.committed_in(period)
        left = "-" if budget is None else format_usd(max(budget - committed, 0.0))
        shown_budget = "unlimited" if budget is None else format_usd(budget)
        rows.append((period, format_usd(committed), shown_budget, left))
    in_flight = limits.max_clips_in_flight
    rows.append(
        ("in flight", str(ledger.open), "unlimited" if in_flight is None else str(in_flight), "-")
    )
    return _table(("PERIOD", "COMMITTED", "LIMIT", "LEFT"), rows)


async def tenant_recount(args: argparse.Namespace, settings: AdminSettings) -> int:
    """Count the clips the tenant's projects hold in flight and set its ledger's ``open`` to it."""
    async with _database(args, settings) as db:
        await ApiKeyStore(db).limits(args.tenant)  # UnknownTenant
        # One reading: ages of reservations and ends on the database's clock.
        clock = await _db_clock(db)
        found = await LedgerStore(db).recount(
            args.tenant,
            TenantClips(db, clock=clock.now).in_flight,
            now=clock.now(),
            apply=not args.dry_run,
        )
        unreserved = None
        if found is not None and not found.moved:
            unreserved = await _count_unreserved(
                db, settings, args.tenant, clock.now(), apply=not args.dry_run
            )
    if found is None:
        print(
            f"tenant {args.tenant} has no ledger (no in-flight limit or budget): nothing to count"
        )
        return 0
    row = (str(found.ledger_open), str(found.counted), f"{found.correction:+d}")
    print(_table(("LEDGER_OPEN", "COUNTED", "CORRECTION"), [row]))
    if unreserved is not None:
        print(
            "spent by tasks without a reservation:"
            f" {unreserved.day} {format_usd(unreserved.day_usd)}"
            f" (was {format_usd(unreserved.day_before)}),"
            f" {unreserved.month} {format_usd(unreserved.month_usd)}"
            f" (was {format_usd(unreserved.month_before)})"
        )
    if found.moved:
        raise LedgerMoved("the tenant's ledger moved while counting; run it again")
    if found.applied:
        print(f"open set to {found.counted}")
    elif found.correction:
        print("dry run: nothing written")
    else:
        print("the ledger is right: nothing written")
    return 0


_MONTH = re.compile(r"(19[7-9]\d|2\d{3})-(0[1-9]|1[0-2])")  # as /v1/usage takes it


def _month(text: str) -> str:
    if _MONTH.fullmatch(text) is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a UTC month as YYYY-MM (e.g. 2026-12)")
    return text


async def tenant_usage(args: argparse.Namespace, settings: AdminSettings) -> int:
    """What the tenant spent in a UTC month, by day: what ``/v1/usage`` answers its keys."""
    async with _database(args, settings) as db:
        limits = await ApiKeyStore(db).limits(args.tenant)  # UnknownTenant
        month = args.month
        if month is None:
            clock = await _db_clock(db)  # the month the api counts in: the database's
            month = month_key(clock.now())
        usage = await UsageStore(db, LedgerStore(db)).month(args.tenant, month, limits)
    if args.json:
        print(usage.model_dump_json())  # the body of GET /v1/usage?month=...
    else:
        print(render_usage(usage))
    if not limits.has_budget:
        _note(
            f"tenant {args.tenant} has no budget: nothing stops its spend; set one with"
            f" {_command()}{_env_file_option(args)} tenant limits {args.tenant}"
            " --daily-budget-usd X"
        )
    return 0


def render_usage(usage: TenantUsage) -> str:
    """A month's spend, by day, and what the ledger holds in it (``reelflow usage``'s lines)."""
    month = usage.month
    unpriced = f" + {month.unknown_cost_clips} clip(s) of unknown cost"
    lines = [
        f"{month.period}  {format_usd(month.usd)} over {month.known_cost_clips} priced clip(s)"
        f"{unpriced if month.unknown_cost_clips else ''}, {month.projects} project(s)"
        " (each counted on the UTC day it was created)"
    ]
    if usage.days:
        rows = [
            (
                day.period,
                format_usd(day.usd),
                str(day.known_cost_clips),
                str(day.unknown_cost_clips),
                str(day.projects),
            )
            for day in usage.days
        ]
        lines += ["", _table(("DAY", "SPENT", "PRICED", "UNPRICED", "PROJECTS"), rows)]
    if usage.clips_in_flight is not None:
        lines += ["", f"clips in flight: {usage.clips_in_flight}"]
        lines += [
            f"committed {period}: {format_usd(usd)}"
            for period, usd in sorted(usage.committed_usd.items())
        ]
    return "\n".join(lines)


def _shown(value: object) -> str:
    if isinstance(value, list):
        return ",".join(value) or "(none)"
    return str(value)


async def key_create(args: argparse.Namespace, settings: AdminSettings) -> int:
    async with _database(args, settings) as db:
        keys, clock = await _key_store(db)
        expires_at = None if args.expires_in is None else clock.now() + args.expires_in
        await keys.ensure_indexes()
        key, info = await keys.create_key(args.tenant, label=args.label, expires_at=expires_at)
    print(key)
    _note(
        f"key {info.key_id} created for tenant {info.tenant_id}, "
        f"expires {_when(info.expires_at, 'never')}. "
        "Store it now: it is shown this once and kept only as a hash."
    )
    return 0


async def key_list(args: argparse.Namespace, settings: AdminSettings) -> int:
    async with _database(args, settings) as db:
        keys, clock = await _key_store(db)
        if await keys.tenant(args.tenant) is None:
            raise UnknownTenant(f"no tenant {args.tenant!r}")
        listed = await keys.list_keys(args.tenant)
        now = clock.now()  # valid or expired as the services judge it
    rows = [
        (
            info.key_id,
            f"{info.prefix}…" if info.prefix else "",
            info.label,
            rfc3339(info.created_at),
            _when(info.expires_at, "never"),
            _when(info.revoked_at),
            "valid" if info.valid_at(now) else ("revoked" if info.revoked_at else "expired"),
        )
        for info in listed
    ]
    header = ("KEY_ID", "PREFIX", "LABEL", "CREATED", "EXPIRES", "REVOKED", "STATE")
    print(_table(header, rows))
    return 0


async def key_revoke(args: argparse.Namespace, settings: AdminSettings) -> int:
    async with _database(args, settings) as db:
        keys, _ = await _key_store(db)
        info = await keys.revoke_key(args.key_id)
    print(f"{info.key_id} revoked at {_when(info.revoked_at)}")
    _note(
        "services that have the key cached accept it for up to REELFLOW_AUTH_CACHE_TTL_S "
        f"more seconds ({AuthSettings.model_fields['auth_cache_ttl_s'].default:g} by default);"
        " its open WebSockets close within that plus REELFLOW_WS_KEY_CHECK_INTERVAL_S"
    )
    return 0


# --- dead letters ----------------------------------------------------------------------


async def dlq_list(args: argparse.Namespace, settings: AdminSettings) -> int:
    topology = Topology.from_settings(settings)
    async with (
        _broker(args, settings) as connection,
        amqp_channel(connection) as channel,
    ):
        for work_queue in dlq.work_queues(topology, args.queue):
            name = topology.dead_letter_queue(work_queue)
            count = await _depth(channel, topology, work_queue)
            peeked = await dlq.peek(channel, topology, work_queue, args.peek)
            if args.json:
                # stdout holds the messages alone, one JSON line each (for a file or jq).
                _note(f"{name}  {count} message(s)")
                for letter in peeked:
                    print(letter.as_json(name))
                continue
            print(f"{name}  {count} message(s)")
            for letter in peeked:
                print(f"  {letter.name}  {letter.type}  {letter.reason}")
                print(f"    {letter.shown()}")
    return 0


async def dlq_requeue(args: argparse.Namespace, settings: AdminSettings) -> int:
    topology = Topology.from_settings(settings)
    (work_queue,) = dlq.work_queues(topology, args.queue)
    async with (
        _broker(args, settings) as connection,
        amqp_channel(connection) as channel,
    ):
        before = await _depth(channel, topology, work_queue)  # also: does it exist?
        moved = await requeue_dead_letters(
            channel, topology, work_queue, limit=args.limit, timeout_s=settings.publish_timeout_s
        )
    # Counted, not read back: a quorum queue applies acknowledgements a moment later.
    left = max(0, before - moved)
    print(
        f"moved {moved} message(s) from {topology.dead_letter_queue(work_queue)} "
        f"to {topology.queue(work_queue)}; {left} left"
    )
    if left:
        # A DLQ holds more than one requeue moves by default: say so, and how to go on.
        reached = f" (--limit {args.limit} reached)" if moved >= args.limit else ""
        _note(
            f"{left} message(s) remain in {topology.dead_letter_queue(work_queue)}{reached};"
            f" to move them too: {_command()}{_env_file_option(args)} dlq requeue"
            f" --queue {shlex.quote(args.queue)} --limit {left}"
        )
    return 0


async def dlq_drop(args: argparse.Namespace, settings: AdminSettings) -> int:
    """Remove dead letters for good: each printed whole on stdout (a JSON line) first."""
    topology = Topology.from_settings(settings)
    (work_queue,) = dlq.work_queues(topology, args.queue)
    name = topology.dead_letter_queue(work_queue)
    async with (
        _broker(args, settings) as connection,
        amqp_channel(connection) as channel,
    ):
        before = await _depth(channel, topology, work_queue)  # also: does it exist?
        if args.all and not args.yes:
            raise ReelflowError(
                f"--all drops every message in {name} ({before} now), for good; look at them"
                f" first (dlq list --queue {work_queue} --peek {max(before, 1)} --json), then"
                " add --yes"
            )

        def export(letter: dlq.DeadLetter) -> None:
            print(letter.as_json(name), flush=True)

        dropped = await dlq.drop(channel, topology, work_queue, name=args.id, before_drop=export)
    # Counted, not read back: a quorum queue applies acknowledgements a moment later.
    left = max(0, before - len(dropped))
    if args.id is not None and not dropped:
        raise ReelflowError(
            f"no dead letter named {args.id!r} in {name} ({before} message(s)): dlq list names"
            " them; one that another command holds right now (a dlq list) is not seen"
        )
    _note(f"dropped {len(dropped)} message(s) from {name} (printed above); {left} left")
    return 0


async def _depth(channel: AbstractChannel, topology: Topology, work_queue: str) -> int:
    try:
        return (await dead_letter_depths(channel, topology, [work_queue]))[work_queue]
    except ChannelNotFoundEntity as exc:
        raise ReelflowError(
            f"{topology.dead_letter_queue(work_queue)} does not exist: has reelflow run "
            "with this REELFLOW_AMQP_PREFIX?"
        ) from exc


# --- projects --------------------------------------------------------------------------


async def project_show(args: argparse.Namespace, settings: AdminSettings) -> int:
    async with _database(args, settings) as db:
        found = await ProjectStore(db).get_with_events(args.project_id)
        now = (await _db_clock(db)).now()  # ages as the services count them
    if found is None:
        raise ReelflowError(f"no project {args.project_id!r}")
    state = project_state(*found)
    print(json.dumps(state, indent=2) if args.json else render_project(state, now=now))
    return 0


async def project_list(args: argparse.Namespace, settings: AdminSettings) -> int:
    """A tenant's projects, newest first; with ``--past-lease`` the generating ones (every
    tenant's, or one's) with a clip whose lease ran out, earliest first: each on an index."""
    status = None if args.status is None else ProjectStatus(args.status)
    if args.tenant is None and not args.past_lease:
        raise ReelflowError("whose projects? --tenant ID (tenant list names them), or --past-lease")
    if args.past_lease and status not in (None, ProjectStatus.GENERATING):
        raise ReelflowError(
            "--past-lease lists generating projects (a lease is only followed while generating)"
        )
    async with _database(args, settings) as db:
        if args.tenant is not None and await ApiKeyStore(db).tenant(args.tenant) is None:
            raise UnknownTenant(f"no tenant {args.tenant!r}")
        projects = ProjectStore(db)
        if args.past_lease:
            # Leases run out on the database's clock, as the reconciler sees.
            clock = await _db_clock(db)
            found = await projects.past_lease(
                before=clock.now(), tenant_id=args.tenant, limit=args.limit + 1
            )
            more = len(found) > args.limit
            found = found[: args.limit]
        else:
            found, cursor = await projects.list(args.tenant, status=status, limit=args.limit)
            more = cursor is not None
    if args.json:
        for project in found:
            print(json.dumps(listed_state(project), ensure_ascii=False))
    else:
        header, rows = list_rows(found, with_tenant=args.tenant is None, with_lease=args.past_lease)
        print(_table(header, rows))
    if more:
        _note(f"more than {args.limit} project(s): --limit shows more")
    if not found:
        _note("no project" + (" past its lease" if args.past_lease else ""))
    elif args.past_lease:
        _note(
            f"{_command()} project show PROJECT_ID shows a project's clips and leases;"
            f" {_command()} reconcile PROJECT_ID asks Runware about its open clips now"
        )
    return 0


async def reconcile(args: argparse.Namespace, settings: AdminSettings) -> int:
    """The poller's reconciler, for one project, now: every open clip, whatever its lease."""
    async with AsyncExitStack() as stack:
        db = await stack.enter_async_context(_database(args, settings))
        clock = await _db_clock(db)  # one reading: every stamp and age on the database's clock
        projects = ProjectStore(
            db,
            clock=clock.now,
            lease_s=settings.lease_s,
            links=VideoLinks.from_settings(settings, clock=clock.now),
        )
        project = await projects.get(args.project_id, with_requests=True)
        if project is None:
            raise ReelflowError(f"no project {args.project_id!r}")
        if project.status is not ProjectStatus.GENERATING:
            print(f"project {project.id} is {project.status.value}: no clip is open")
            return 0
        runware = await stack.enter_async_context(RunwareClient.open(settings))
        connection = await stack.enter_async_context(_broker(args, settings))
        channel = await stack.enter_async_context(amqp_channel(connection))
        topology = Topology.from_settings(settings)
        publisher = Publisher(channel, topology, timeout_s=settings.publish_timeout_s)
        # The pollers' plans: one read of the shared completion counts.
        planning = shared_planner(db, settings, topology.backoffs[CHECK_CLIP])
        await planning.stats.load()
        reconciler = Reconciler(
            projects,
            runware,
            publisher,
            ClipRecorder(projects, publisher, copies=settings.copies_enabled),
            policy=Policy.from_settings(settings),
            planner=planning.planner,
            clock=clock.now,
            grace_s=0,  # unused by one project's pass
            batch_size=1,
        )
        done = await reconciler.reconcile_now(project)
        if done is None:
            raise ReelflowError(
                f"project {project.id} changed since it was read, or a poller is reconciling"
                " it right now; try again"
            )
        after = await projects.get(project.id)
    print(render_pass(done, project, after))
    not_started = [settled for settled in done.settled if settled.action is Action.NOT_STARTED]
    if not_started:
        _note(
            f"{PROG}: the new chain of {len(not_started)} clip(s) did not start: its first"
            " command could not be published (with --verbose, chain_not_started in the log"
            " says why). Are"
            " this command's REELFLOW_AMQP_PREFIX and delay settings (REELFLOW_POLL_*,"
            " REELFLOW_RETRY_*, REELFLOW_COPY_*) the services'? Their wait queues are named"
            " after those delays. Under make run: --env-file .run/env. The clips are due"
            " again now: run this again, or a poller's reconciler re-arms them."
        )
        return 1
    return 0


# --- copies of the videos ---------------------------------------------------------------


async def _projects_for(args: argparse.Namespace, projects: ProjectStore) -> list[Project]:
    if args.project_id is None:
        return await projects.with_failed_copies(limit=args.limit)
    project = await projects.get(args.project_id)
    if project is None:
        raise ReelflowError(f"no project {args.project_id!r}")
    return [project]


async def assets_list(args: argparse.Namespace, settings: AdminSettings) -> int:
    async with _database(args, settings) as db:
        found = await _projects_for(args, ProjectStore(db))
    print(_table(assets.HEADER, assets.rows(found, failed_only=args.project_id is None)))
    return 0


async def assets_retry(args: argparse.Namespace, settings: AdminSettings) -> int:
    async with _database(args, settings) as db:
        found = await _projects_for(args, ProjectStore(db))
    if args.scene is not None:
        _check_scene(args.scene, found, one_project=args.project_id is not None)
    commands = [cmd for project in found for cmd in assets.retries(project, scene=args.scene)]
    if commands:
        async with (
            _broker(args, settings) as connection,
            amqp_channel(connection) as channel,
        ):
            publisher = Publisher(
                channel, Topology.from_settings(settings), timeout_s=settings.publish_timeout_s
            )
            for command in commands:
                await publisher.send(STORE_VIDEO, command)
    print(f"sent {len(commands)} copy command(s) to {STORE_VIDEO}")
    if not settings.copies_enabled:
        _note(
            "REELFLOW_STORAGE_BACKEND is none here: is it set where the pollers run?"
            " (under make run: --env-file .run/env)"
        )
    return 0


def _check_scene(scene: int, projects: Sequence[Project], *, one_project: bool) -> None:
    """A scene the project has (with --failed: one of them has)."""
    if not projects or any(scene < len(project.clips) for project in projects):
        return
    if one_project:
        (project,) = projects
        raise ReelflowError(
            f"project {project.id} has no scene {scene}: its scenes are 0 to"
            f" {len(project.clips) - 1} (counted from 0, as assets list shows them)"
        )
    raise ReelflowError(
        f"no project with a copy given up on has a scene {scene} (scenes count from 0, as"
        " assets list shows them)"
    )


def _scene_index(text: str) -> int:
    try:
        scene = int(text)
    except ValueError:
        scene = -1
    if scene < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a scene: 0, 1, 2, …")
    return scene


def _add_assets(groups: Any) -> None:
    group = groups.add_parser(
        "assets", help="reelflow's copies of the videos: list them, copy again"
    ).add_subparsers(dest="action", required=True)
    for name, command, help_text in (
        ("list", assets_list, "each clip's copy in a project, or every copy given up on"),
        ("retry", assets_retry, "copy again every video not stored (attempts start afresh)"),
    ):
        parser = group.add_parser(name, help=help_text)
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("project_id", nargs="?", help="one project")
        which.add_argument(
            "--failed", action="store_true", help="every project with a copy given up on"
        )
        parser.add_argument(
            "--limit", type=_positive, default=100, help="projects, with --failed (default: 100)"
        )
        if name == "retry":
            parser.add_argument(
                "--scene",
                type=_scene_index,
                help="only this scene, counted from 0: the SCENE that assets list shows, the"
                " API's scene_index, as the reelflow CLI and the dashboard number them",
            )
        parser.set_defaults(command=command)


# --- the parser ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Manage reelflow's tenants, API keys, dead-letter queues and projects.",
        epilog="Connects with the services' REELFLOW_MONGO_URL, REELFLOW_AMQP_URL and "
        "REELFLOW_AMQP_PREFIX (reconcile: also the poller's Runware, lease and delay settings; "
        "assets: the storage settings).",
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        help="also read the settings from this file of NAME=value lines (the environment"
        " wins); make run writes its stack's as .run/env",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also log what the command does, on stderr (at REELFLOW_LOG_LEVEL); without it"
        " a terminal shows only the answer and errors (JSON log lines are always kept)",
    )
    groups = parser.add_subparsers(dest="group", required=True)

    tenant = groups.add_parser(
        "tenant", help="create and list tenants, set their limits, recount their ledgers"
    ).add_subparsers(dest="action", required=True)
    create = tenant.add_parser(
        "create",
        help="create a tenant, with its limits; prints its id",
        description="Creates a tenant; the options set its limits as 'tenant limits' does"
        " (without them it has none: no budget, any number of clips in flight).",
    )
    create.add_argument("name")
    _add_limit_options(create)
    create.set_defaults(command=tenant_create)
    tenant.add_parser("list", help="every tenant").set_defaults(command=tenant_list)
    limits = tenant.add_parser(
        "limits",
        help="show or set a tenant's limits and budgets",
        description="Without options: the tenant's limits. With options: changes those"
        " (a value of 'none' removes that limit). Checked before a project is stored:"
        " 403 for a model or scene count not allowed, 429 for clips in flight, 402 for a"
        " budget (UTC day / month).",
    )
    limits.add_argument("tenant", help="the tenant's id")
    _add_limit_options(limits)
    limits.set_defaults(command=tenant_limits)
    recount = tenant.add_parser(
        "recount",
        help="count a tenant's clips in flight again and correct its ledger",
        description="Counts the clips the tenant's projects hold in flight (queued or"
        " processing, and ended ones whose end the ledger has not settled yet) and sets the"
        " ledger's count to it: for a tenant refused with 429 for clips it does not have"
        " (a reservation kept after a database error). Safe while the tenant works: if its"
        " ledger moves during the count, nothing is written (run it again). Budgets are"
        " not recounted.",
    )
    recount.add_argument("tenant", help="the tenant's id")
    recount.add_argument("--dry-run", action="store_true", help="count and show; write nothing")
    recount.set_defaults(command=tenant_recount)
    spend = tenant.add_parser(
        "usage",
        help="what a tenant spent in a UTC month, by day (what /v1/usage answers its keys)",
        description="Sums the cost Runware reported for the clips of the tenant's projects"
        " created in the month, by the UTC day each was created, as GET /v1/usage does;"
        " clips finished without a price are counted apart. With a budget or an in-flight"
        " limit, also what the ledger holds: its clips in flight and what it committed.",
    )
    spend.add_argument("tenant", help="the tenant's id")
    spend.add_argument(
        "--month", type=_month, help="a UTC month, YYYY-MM (default: the current one)"
    )
    spend.add_argument(
        "--json", action="store_true", help="as one JSON document: the body of GET /v1/usage"
    )
    spend.set_defaults(command=tenant_usage)

    key = groups.add_parser("key", help="create, list and revoke API keys").add_subparsers(
        dest="action", required=True
    )
    create = key.add_parser("create", help="create a key; prints it, this once")
    create.add_argument("--tenant", required=True, help="the tenant's id")
    create.add_argument("--label", default="", help="what the key is for")
    create.add_argument("--expires-in", type=duration, help="e.g. 30d, 12h, 90m (default: never)")
    create.set_defaults(command=key_create)
    listing = key.add_parser("list", help="a tenant's keys (ids and prefixes, never the keys)")
    listing.add_argument("--tenant", required=True, help="the tenant's id")
    listing.set_defaults(command=key_list)
    revoke = key.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id", help="the KEY_ID that key list shows")
    revoke.set_defaults(command=key_revoke)

    dead = groups.add_parser("dlq", help="inspect, requeue and drop dead letters").add_subparsers(
        dest="action", required=True
    )
    queue_help = (
        "a work queue (poller.check_clip) or its DLQ, as dlq list prints it"
        " (PREFIXpoller.check_clip.dlq)"
    )
    listing = dead.add_parser("list", help="messages in each DLQ, and a peek at the first")
    listing.add_argument("--queue", help=f"only this one: {queue_help}")
    listing.add_argument(
        "--peek",
        type=_not_negative,
        default=3,
        help="messages shown per DLQ (default: 3; 0: only the counts)",
    )
    listing.add_argument(
        "--json",
        action="store_true",
        help="the peeked messages whole (headers, body), one JSON line each on stdout;"
        " the counts on stderr",
    )
    listing.set_defaults(command=dlq_list)
    requeue = dead.add_parser(
        "requeue",
        help="move dead letters back to their work queue (at most 100 unless --limit)",
        description="Copies each dead letter to its work queue with a fresh retry count and"
        " removes it from the DLQ once the broker confirmed the copy: at most --limit (100 by"
        " default) of the messages there when it starts. It says how many are left, and the"
        " command to move them.",
    )
    requeue.add_argument("--queue", required=True, help=queue_help)
    requeue.add_argument(
        "--limit", type=_positive, default=100, help="at most this many messages (default: 100)"
    )
    requeue.set_defaults(command=dlq_requeue)
    drop = dead.add_parser(
        "drop",
        help="remove dead letters for good (ones no fix will make valid)",
        description="Removes the dead letters named, printing each whole first, one JSON"
        " line on stdout (as dlq list --json does): keep them with > dropped.jsonl. The"
        " other messages stay, in their order; one dead-lettered while it runs is never"
        " dropped.",
    )
    drop.add_argument("--queue", required=True, help=queue_help)
    which = drop.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--id",
        help="the message's id as dlq list shows it (every dead letter so named: a message"
        " dead-lettered twice, or the parts of one)",
    )
    which.add_argument("--all", action="store_true", help="every message in the DLQ now")
    drop.add_argument("--yes", action="store_true", help="with --all: yes, every one")
    drop.set_defaults(command=dlq_drop)

    project = groups.add_parser("project", help="find projects, look at one").add_subparsers(
        dest="action", required=True
    )
    show = project.add_parser(
        "show", help="everything stored: clips, attempts, leases, counts, cost, event log"
    )
    show.add_argument("project_id")
    show.add_argument("--json", action="store_true", help="as one JSON document")
    show.set_defaults(command=project_show)
    listing = project.add_parser(
        "list",
        help="a tenant's projects, newest first, or the ones with a clip past its lease",
        description="One line per project: its id (for project show, reconcile and assets),"
        " when it was created, its status, its clips' counts and its title. Each list is read"
        " on an index: a tenant's projects (by status too), or the generating projects whose"
        " earliest open clip's lease ran out (the reconciler's query, earliest first: the"
        " ones the ReelflowClipsStuckPastLease alert counts lead, their LEASE_ENDED more"
        " than the poller's REELFLOW_RECONCILE_GRACE_S ago).",
    )
    listing.add_argument("--tenant", help="the tenant's id (tenant list names them)")
    listing.add_argument(
        "--status", choices=[status.value for status in ProjectStatus], help="only these"
    )
    listing.add_argument(
        "--past-lease",
        action="store_true",
        help="generating projects with a clip whose lease ran out, every tenant's unless"
        " --tenant: chains the reconciler has to re-arm",
    )
    listing.add_argument("--limit", type=_positive, default=50, help="at most this many")
    listing.add_argument(
        "--json", action="store_true", help="one JSON line per project (stored counts and cost)"
    )
    listing.set_defaults(command=project_list)

    heal = groups.add_parser(
        "reconcile",
        help="ask Runware about every open clip of a project now; record, or re-arm its chain",
        description="What the poller's reconciler does once a clip's lease has run out, for"
        " every open clip of one project, at once. A chain still running under a clip's"
        " old lease stops at its next renewal.",
    )
    heal.add_argument("project_id")
    heal.set_defaults(command=reconcile)
    _add_assets(groups)
    return parser


def main(argv: Sequence[str] | None = None, *, settings: AdminSettings | None = None) -> int:
    """Run one command; 0 on success, 1 when it could not be done (said on stderr)."""
    args = build_parser().parse_args(argv)
    command: Command = args.command
    try:
        return asyncio.run(command(args, settings or load_settings(args.env_file)))
    except (ReelflowError, ValueError) as exc:
        _note(f"{PROG}: {exc}{_where_to_look(exc)}")
    except (PyMongoError, AMQPError, PublishError, OSError) as exc:
        _note(f"{PROG}: {type(exc).__name__}: {exc}")
    return 1


def _where_to_look(exc: Exception) -> str:
    """For an id that names nothing, the command that lists the right ones."""
    if isinstance(exc, UnknownTenant):
        return f"; {_command()} tenant list shows the tenants"
    if isinstance(exc, UnknownApiKey):
        return f"; {_command()} key list --tenant TENANT_ID shows a tenant's keys (KEY_ID)"
    return ""


def run() -> None:
    """The console script: settings from the environment, log lines on stderr."""
    args = build_parser().parse_args()
    try:
        settings = load_settings(args.env_file)
    except (ReelflowError, ValueError) as exc:
        _note(f"{PROG}: {exc}")
        sys.exit(1)
    # stdout is for what the command prints (a new key alone, for scripts).
    configure_logging(_logged(settings, verbose=args.verbose), service="admin")  # reelflow-admin
    sys.exit(main(settings=settings))


def _logged(settings: AdminSettings, *, verbose: bool) -> AdminSettings:
    """The settings to log with. A person at a terminal reads the command's answer: log
    lines (a re-armed check, the clock read) only when asked, errors always. JSON lines
    go to a collector (a Job's log, a file): kept as REELFLOW_LOG_LEVEL says."""
    if verbose or logs_as_json(settings):
        return settings
    return settings.model_copy(update={"log_level": "ERROR"})
