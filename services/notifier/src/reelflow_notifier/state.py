"""What the lifespan builds once and every connection shares."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.websockets import WebSocket

from reelflow_common.sampledlog import SampledLog
from reelflow_common.storage import VideoLinks
from reelflow_common.store import ApiKeyStore, ProjectStore
from reelflow_common.store.tickets import WsTicketStore
from reelflow_notifier.capacity import Connections
from reelflow_notifier.gcpolicy import GcPolicy
from reelflow_notifier.hub import Hub
from reelflow_notifier.keyslots import KeySlots
from reelflow_notifier.keywatch import KeyWatch
from reelflow_notifier.replays import Replays
from reelflow_notifier.settings import Settings


@dataclass(frozen=True)
class NotifierState:
    settings: Settings
    projects: ProjectStore
    api_keys: ApiKeyStore
    hub: Hub
    tickets: WsTicketStore
    key_watch: KeyWatch
    #: the sockets open on this replica, admitted up to ws_max_connections
    connections: Connections
    #: open sockets, watches and subscribe budgets per API key (ws_*_per_key, ws_key_*)
    key_slots: KeySlots
    #: the event-log reads of gap fills, shared between the watchers of a project
    replays: Replays
    #: signs the stored videos' URLs in snapshots; None when videos are not kept
    links: VideoLinks | None = None
    #: told of every socket served, to freeze and reclaim their objects; None: GC untouched
    gc_policy: GcPolicy | None = None
    #: the refusals a reconnect flood repeats, logged at most once per 10 s per replica,
    #: key or way of presenting (the counters count each)
    full_log: SampledLog = field(
        default_factory=lambda: SampledLog("ws_connections_full", level="warning")
    )
    key_full_log: SampledLog = field(
        default_factory=lambda: SampledLog("ws_key_connections_full", level="warning")
    )
    unauthorized_log: SampledLog = field(default_factory=lambda: SampledLog("ws_unauthorized"))


def state_of(websocket: WebSocket) -> NotifierState:
    state: NotifierState = websocket.app.state.notifier
    return state
