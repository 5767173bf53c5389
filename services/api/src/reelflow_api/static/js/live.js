// One multiplexed WebSocket (/v1/ws) for the whole page, opened with a ticket.
//
// It reconnects on its own with exponential backoff and jitter after a dropped
// connection or a notifier restart, and then subscribes again to every watched
// project with the last seq it delivered (after_seq), so the server replays what
// was missed, or sends a fresh snapshot when it can no longer replay.

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 15000;
/** open this long, and the next drop starts the backoff over */
const HEALTHY_AFTER_MS = 5000;

/**
 * Events: 'state' (detail: 'connecting' | 'live' | 'reconnecting' | 'idle'), and
 * 'unauthorized' when the API no longer accepts the key.
 */
export class Live extends EventTarget {
  #wsUrl;
  #issueTicket;
  #socket = null;
  #watches = new Map(); // project_id -> {listeners: Set, lastSeq: number | null}
  #attempt = 0;
  #retryTimer = null;
  #healthyTimer = null;
  #running = false;
  state = 'idle';

  /** @param issueTicket async () => ticket, throwing an error with .status 401 for a bad key */
  constructor(wsUrl, issueTicket) {
    super();
    this.#wsUrl = wsUrl.replace(/\/+$/, '');
    this.#issueTicket = issueTicket;
  }

  start() {
    if (this.#running) return;
    this.#running = true;
    this.#connect();
  }

  stop() {
    this.#running = false;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    clearTimeout(this.#healthyTimer);
    const socket = this.#socket;
    this.#socket = null;
    socket?.close(1000, 'signed out');
    this.#setState('idle');
  }

  /** Deliver every message about ``projectId`` to ``listener``, a snapshot first; returns unwatch. */
  watch(projectId, listener) {
    let watch = this.#watches.get(projectId);
    if (!watch) {
      watch = { listeners: new Set(), lastSeq: null };
      this.#watches.set(projectId, watch);
    }
    watch.listeners.add(listener);
    // Subscribing again starts the project over with a snapshot, which a new listener needs.
    this.#send({ type: 'subscribe', project_id: projectId });
    return () => {
      watch.listeners.delete(listener);
      if (watch.listeners.size === 0 && this.#watches.get(projectId) === watch) {
        this.#watches.delete(projectId);
        this.#send({ type: 'unsubscribe', project_id: projectId });
      }
    };
  }

  /** Reconnect now instead of at the next backoff step (the browser came back online, or a
   * person asked): only while waiting for that step, never beside a connection under way. */
  retryNow() {
    if (this.#running && this.#retryTimer !== null) {
      clearTimeout(this.#retryTimer);
      this.#connect();
    }
  }

  async #connect() {
    this.#retryTimer = null;
    if (!this.#running) return;
    this.#setState(this.#attempt === 0 ? 'connecting' : 'reconnecting');
    let ticket;
    try {
      ticket = await this.#issueTicket();
    } catch (error) {
      if (error.status === 401) {
        this.#running = false;
        this.dispatchEvent(new Event('unauthorized'));
      } else {
        this.#scheduleRetry();
      }
      return;
    }
    if (!this.#running) return;
    const socket = new WebSocket(`${this.#wsUrl}/v1/ws?ticket=${encodeURIComponent(ticket)}`);
    this.#socket = socket;
    socket.addEventListener('open', () => {
      if (socket !== this.#socket) return;
      this.#setState('live');
      this.#healthyTimer = setTimeout(() => { this.#attempt = 0; }, HEALTHY_AFTER_MS);
      for (const [projectId, watch] of this.#watches) this.#resubscribe(projectId, watch);
    });
    socket.addEventListener('message', (event) => {
      if (socket === this.#socket) this.#receive(JSON.parse(event.data));
    });
    socket.addEventListener('close', () => {
      if (socket !== this.#socket) return;
      this.#socket = null;
      clearTimeout(this.#healthyTimer);
      // A 4401 needs a new ticket, which every reconnect fetches; an API that
      // refuses the key for it ends the session through 'unauthorized'.
      this.#scheduleRetry();
    });
  }

  #scheduleRetry() {
    if (!this.#running) return;
    const base = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** this.#attempt);
    this.#attempt += 1;
    this.#setState('reconnecting');
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => this.#connect(), base * (0.5 + Math.random() / 2));
  }

  #receive(message) {
    const projectId = message.project_id ?? message.project?.project_id;
    const watch = this.#watches.get(projectId);
    if (!watch) return; // unsubscribed meanwhile, or a message about no project
    if (message.type === 'error' && typeof message.retry_after_s === 'number') {
      // A subscribe the notifier's rate limit refused: sent again when it says, if still watched
      // and on the same connection (a new one subscribes again to everything on its own).
      const socket = this.#socket;
      setTimeout(() => {
        if (socket === this.#socket) this.#resubscribe(projectId, watch);
      }, message.retry_after_s * 1000);
      return;
    }
    if (message.type === 'snapshot') watch.lastSeq = message.seq;
    else if (typeof message.seq === 'number') watch.lastSeq = Math.max(watch.lastSeq ?? 0, message.seq);
    for (const listener of [...watch.listeners]) listener(message);
  }

  /** Subscribe again to a watched project, resuming after the last seq it delivered. */
  #resubscribe(projectId, watch) {
    if (this.#watches.get(projectId) !== watch) return; // unwatched meanwhile
    const message = { type: 'subscribe', project_id: projectId };
    if (watch.lastSeq !== null) message.after_seq = watch.lastSeq;
    this.#send(message);
  }

  #send(message) {
    if (this.#socket?.readyState === WebSocket.OPEN) this.#socket.send(JSON.stringify(message));
  }

  #setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: state }));
  }
}
