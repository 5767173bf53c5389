"""Dependencies of the routes, read from the state the lifespan built."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from reelflow_api.auth import caller_grant
from reelflow_api.lanes import KnownLanes
from reelflow_api.outliving import OutlivingWork
from reelflow_api.settings import Settings
from reelflow_api.wakeups import Wakeups
from reelflow_common.accounting import CostEstimator, UsageStore
from reelflow_common.batching import Batcher
from reelflow_common.broker import Publisher
from reelflow_common.errors import TransientError
from reelflow_common.mongo import Indexes
from reelflow_common.storage import VideoLinks, VideoStorage
from reelflow_common.store import ApiKeyStore, Project, ProjectStore
from reelflow_common.store.auth import Grant
from reelflow_common.store.tickets import WsTicketStore
from reelflow_common.tokenbucket import KeyedBuckets


@dataclass(frozen=True)
class AppState:
    """What the lifespan builds once and every request shares."""

    settings: Settings
    projects: ProjectStore
    api_keys: ApiKeyStore
    publisher: Publisher
    indexes: Indexes
    tickets: WsTicketStore
    wakeups: Wakeups
    #: the tenants whose lane a submitter consumes: their clips go straight there
    lanes: KnownLanes
    estimator: CostEstimator
    usage: UsageStore
    #: ``GET /v1/projects/{id}``: concurrent reads of ``(project_id, tenant_id)`` as one query
    project_reads: Batcher[tuple[str, str], Project | None]
    #: creates and retries, run to their end whether or not their requests are
    outliving: OutlivingWork
    #: ``POST /v1/ws-tickets`` per API key: ws_ticket_burst at once, then ws_ticket_rate_per_s
    ticket_rate: KeyedBuckets
    #: reelflow's copies of the videos; None when they are not kept
    storage: VideoStorage | None = None
    links: VideoLinks | None = None


def app_state(request: Request) -> AppState:
    """What the lifespan built. The dependencies below read it so rather than through
    :data:`State`: each sub-dependency costs FastAPI a resolution on every request."""
    state: AppState = request.app.state.reelflow
    return state


async def _state(request: Request) -> AppState:
    # async, as every dependency here: FastAPI runs a plain ``def`` one in a worker
    # thread, two thread hand-offs per request for a field read
    return app_state(request)


State = Annotated[AppState, Depends(_state)]


#: the caller's tenant and its limits (read with the key, cached with it); a route that takes
#: it (or TenantId) needs an API key, checked before the request's body is read (reelflow_api.auth)
TenantGrant = Annotated[Grant, Depends(caller_grant)]


async def _tenant(grant: TenantGrant) -> str:
    return grant.tenant_id


TenantId = Annotated[str, Depends(_tenant)]


async def _indexes_ensured(request: Request) -> None:
    # Creating before the unique index exists could let one Idempotency-Key make two projects.
    state = app_state(request)
    try:
        async with asyncio.timeout(state.settings.mongo_timeout_s):
            await state.indexes.ensured.wait()
    except TimeoutError as exc:
        raise TransientError("MongoDB indexes are not ensured yet") from exc


#: for routes that rely on the indexes (a unique one): waits for them, else 503
IndexesEnsured = Depends(_indexes_ensured)
