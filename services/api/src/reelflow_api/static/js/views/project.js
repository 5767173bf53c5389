// One project: a card per clip in scene order, live; videos play in place; Retry and Cancel.
//
// Drawn first from its REST status (GET /v1/projects/{id}), then kept up to date from the
// WebSocket: both go through the reducer by seq, so whichever is newer wins, whatever the
// order they come in, and a page whose WebSocket cannot connect still shows the project.
// While the WebSocket is down for more than a few seconds, a banner says so (and since when
// the page shows what it shows), and the status is read again from REST every little while.

import { h, formatCost, formatTime, formatTotals, plural, projectStatusText, setText } from '../dom.js';
import { TERMINAL, apply, failedApart, failedClips, fromStatus, isFinished, videoUrl } from '../project-state.js';
import { loadScenes, sceneLines } from '../scenes.js';

const STATUS_TEXT = {
  queued: 'Queued',
  processing: 'Generating…',
  success: 'Done',
  failed: 'Failed',
  cancelled: 'Cancelled',
};

/** down this long, the WebSocket is said to be, and the status read from REST */
const PAUSED_AFTER_MS = 5000;
/** how often the status is read again from REST while the WebSocket is down */
const REFRESH_MS = 15000;

/** the totals (a live region) change at most this often: a burst of events (a cancel, a
 * reconnect's replay) is said once, as it ends */
const TOTALS_EVERY_MS = 2000;

const FINISHED_TEXT = {
  completed: 'Finished: every clip is ready.',
  partial: 'Finished, but some clips failed.',
  failed: 'Finished: every clip failed.',
  cancelled: 'Cancelled.',
};

export function mountProject(container, { api, live }, projectId) {
  let state = null;
  let stopped = false;
  let currentAt = null; // when what is drawn was last known current (null: nothing drawn yet)
  let pauseTimer = null;
  let refreshTimer = null;
  let totalsTimer = null;
  let totalsText = ''; // what the totals are to say once the timer fires
  let askingToCancel = false;
  let scenes = new Map(); // scene_index -> what the scene asked for (its prompt), once read
  const cards = new Map(); // scene_index -> {card, taskUuid, status}

  const title = h('h1', { tabindex: '-1' }, 'Project');
  const badge = h('span', { class: 'badge' });
  const totals = h('p', { class: 'totals', id: 'totals', 'aria-live': 'polite' });
  const cost = h('span', { class: 'cost' });
  const finished = h('p', { class: 'finished', id: 'finished', role: 'status', hidden: true });
  const actionError = h('p', { class: 'alert', role: 'alert', hidden: true });
  // Shown once the project is known to be there (and has something to retry or cancel).
  const retry = h('button', {
    type: 'button', hidden: true, onclick: () => act(async () => retriedText(await api.retry(projectId)), retry),
  }, 'Retry failed');
  // One click would stop every unfinished clip the tenant pays for: asked first, in place.
  const cancel = h('button', { type: 'button', class: 'danger', hidden: true, onclick: () => askToCancel(true) }, 'Cancel');
  const cancelQuestion = h('span', { id: 'cancel-question' });
  const keep = h('button', { type: 'button', onclick: () => askToCancel(false) }, 'No, keep them');
  const confirmCancel = h('button', {
    type: 'button', class: 'danger',
    onclick: () => {
      askingToCancel = false;
      act(async () => cancelledText(await api.cancel(projectId)), confirmCancel, cancel);
    },
  }, 'Yes, cancel them');
  const cancelConfirmation = h('div', { class: 'actions', role: 'group', 'aria-labelledby': 'cancel-question', hidden: true },
    cancelQuestion, confirmCancel, keep);
  // What the last retry or cancel did (a cancel: what may still be billed, clips_may_be_billed).
  // Its button goes away (hidden, or disabled while asking): the keyboard's place moves here,
  // which also reads it out.
  const actionResult = h('p', { class: 'muted', id: 'action-result', tabindex: '-1' });
  const grid = h('ol', { class: 'clips', 'aria-label': 'Clips' });
  const loading = h('p', { class: 'muted' }, 'Loading…');
  // Why the project cannot be shown: said at once (an alert in the page from the start, so
  // what is put in it is read out).
  const problem = h('p', { class: 'alert', id: 'problem', role: 'alert' });
  // Down, the topbar's live status says "Reconnecting…" (a live region); this says what it means.
  const pausedText = h('span');
  const reconnect = h('button', { type: 'button', onclick: () => live.retryNow() }, 'Reconnect now');
  const paused = h('div', { class: 'banner', id: 'paused', hidden: true }, pausedText, reconnect);

  container.append(
    h('p', {}, h('a', { href: '#/' }, '← Projects')),
    h('div', { class: 'page-head' }, h('div', {}, title, h('div', { class: 'meta' }, badge, cost)),
      h('div', { class: 'actions' }, retry, cancel)),
    paused, cancelConfirmation, actionResult, totals, finished, actionError, loading, problem, grid,
  );

  function askToCancel(asking) {
    askingToCancel = asking;
    draw();
    (asking ? keep : cancel).focus();
  }

  /** ``request`` (what changes arrives over the WebSocket, in order) says what it did, and
   * the focus goes there; refused, the error is said and the focus goes to ``again``. */
  async function act(request, button, again = button) {
    button.disabled = true;
    actionError.hidden = true;
    try {
      actionResult.textContent = await request();
      draw();
      actionResult.focus();
    } catch (error) {
      actionError.textContent = error.message;
      actionError.hidden = false;
      draw();
      (again.hidden ? title : again).focus();
    }
  }

  function draw() {
    if (!state) return;
    if (state.missing && state.seq === undefined) {
      loading.hidden = true;
      setText(title, 'No such project');
      document.title = 'No such project · reelflow';
      setText(problem, 'No such project: there is none with this id for your API key.');
      retry.hidden = true;
      cancel.hidden = true;
      cancelConfirmation.hidden = true;
      return;
    }
    loading.hidden = true;
    setText(problem, '');
    setText(title, state.title || 'Untitled project');
    document.title = `${title.textContent} · reelflow`;
    setText(badge, projectStatusText(state.status));
    badge.className = `badge status-${state.status}`;
    const { counts } = state;
    // The API counts cancelled clips as failed too (the seed's map shows them so); said apart here.
    const apart = failedApart(counts);
    const failed = `${apart.failed} failed${apart.cancelled ? ` / ${apart.cancelled} cancelled` : ''}`;
    sayTotals(`${counts.completed} completed / ${counts.pending} pending / ${failed} of ${plural(counts.total_clips, 'clip')}`);
    const spent = formatTotals(state.cost);
    setText(cost, spent ? `Cost ${spent}` : '');
    const done = isFinished(state);
    // A question left open when the project finished is not asked again when a retry reopens it.
    if (done) askingToCancel = false;
    finished.hidden = !done;
    setText(finished, done ? (FINISHED_TEXT[state.status] ?? 'Finished.') : '');
    finished.className = `finished status-${state.status}`;
    retry.hidden = failedClips(state).length === 0;
    retry.disabled = false;
    cancel.hidden = done || askingToCancel;
    cancel.disabled = false;
    // A cancel does not stop what Runware has, nor a submit in the project's first seconds
    // (docs/API.md, cancel): said before, and counted in the answer after.
    setText(cancelQuestion, `Cancel ${plural(counts.pending, 'unfinished clip')}? Clips already sent to Runware, and in the first seconds after creating a project every clip, are billed all the same.`);
    const them = counts.pending === 1 ? 'it' : 'them';
    setText(confirmCancel, `Yes, cancel ${them}`);
    setText(keep, `No, keep ${them}`);
    cancelConfirmation.hidden = done || !askingToCancel;
    confirmCancel.disabled = false;
    for (const clip of state.clips) drawClip(clip);
  }

  /** The totals: the first at once, then what they are at most every TOTALS_EVERY_MS. */
  function sayTotals(text) {
    totalsText = text;
    if (!totals.textContent) {
      setText(totals, text);
    } else if (totalsTimer === null && totals.textContent !== text) {
      totalsTimer = setTimeout(() => {
        totalsTimer = null;
        setText(totals, totalsText);
      }, TOTALS_EVERY_MS);
    }
  }

  /** Update a clip's card in place; its video element is made once per task and source, so it
   * keeps playing until reelflow's own copy replaces Runware's link. */
  function drawClip(clip) {
    let entry = cards.get(clip.scene_index);
    if (!entry) {
      entry = { card: h('li', { class: 'clip' }), taskUuid: null, status: null, source: null, progress: null, waiting: null };
      // What the scene asked for: filled in place once read, not by redrawing the card.
      entry.about = h('div', { class: 'scene-about' }, ...sceneLines(scenes.get(clip.scene_index)));
      cards.set(clip.scene_index, entry);
      const after = [...cards.keys()].sort((a, b) => a - b).filter((index) => index > clip.scene_index)[0];
      grid.insertBefore(entry.card, after === undefined ? null : cards.get(after).card);
    }
    const source = videoUrl(clip);
    const progress = clip.progress ?? null;
    const waiting = clip.waiting?.code ?? null;
    // An earlier task may change under the same clip (its video came, its copy landed).
    const earlier = JSON.stringify(clip.attempts ?? []);
    if (entry.taskUuid === clip.task_uuid && entry.status === clip.status && entry.source === source
        && entry.progress === progress && entry.waiting === waiting && entry.earlier === earlier) return;
    entry.taskUuid = clip.task_uuid;
    entry.status = clip.status;
    entry.source = source;
    entry.progress = progress;
    entry.waiting = waiting;
    entry.earlier = earlier;
    const { card } = entry;
    card.className = `clip status-${clip.status}`;
    card.dataset.sceneIndex = String(clip.scene_index);
    card.dataset.status = clip.status;
    card.dataset.taskUuid = clip.task_uuid;
    const parts = [
      h('div', { class: 'clip-head' },
        h('span', { class: 'scene-number' }, `Scene ${clip.scene_index}`),
        h('span', { class: `badge status-${clip.status}` }, STATUS_TEXT[clip.status] ?? clip.status)),
      media(clip),
      entry.about,
    ];
    if (clip.waiting) {
      parts.push(h('p', { class: 'muted' }, `Waiting for Runware: ${clip.waiting.message ?? 'unavailable'}`,
        clip.waiting.code ? ` (${clip.waiting.code})` : ''));
    }
    if (clip.error) {
      parts.push(h('p', { class: 'clip-error' }, clip.error.message ?? 'failed', clip.error.code ? ` (${clip.error.code})` : ''));
    }
    if (typeof clip.cost === 'number') parts.push(h('p', { class: 'muted' }, formatCost(clip.cost)));
    if (clip.attempts?.length) parts.push(h('p', { class: 'muted attempts' }, ...earlierText(clip.attempts)));
    card.replaceChildren(...parts);
  }

  /** Draw ``next`` if it is a change. */
  function show(next) {
    if (next !== state) {
      state = next;
      draw();
    }
  }

  /** The project's REST status, taken as a snapshot at its seq: older than what is drawn
   * (a WebSocket message came first), it changes nothing. */
  async function readStatus() {
    let status;
    try {
      status = await api.getProject(projectId);
    } catch (error) {
      if (stopped || state) return; // what is drawn stays; the WebSocket keeps it up to date
      if (error.status === 404) show({ missing: true });
      else setText(problem, `The project could not be read: ${error.message}`);
      return;
    }
    if (stopped) return;
    currentAt = new Date();
    showPaused();
    // At or below what is drawn (a WebSocket message came first; an API older than the
    // status's seq), it changes nothing.
    const read = fromStatus(status);
    show(state && read.seq <= state.seq ? state : read);
  }

  /** The WebSocket up: live again (the Live module resubscribes, after the last seq it
   * delivered). Down: said, and read from REST, once it has been down a few seconds. */
  function onLiveState() {
    if (live.state === 'live') {
      clearTimeout(pauseTimer);
      clearInterval(refreshTimer);
      pauseTimer = null;
      refreshTimer = null;
      // The banner goes: its button does not take the keyboard's place with it.
      if (paused.contains(document.activeElement)) title.focus();
      paused.hidden = true;
      return;
    }
    if (pauseTimer !== null) return; // down already
    if (state) currentAt = new Date(); // what is drawn was current until now
    pauseTimer = setTimeout(() => {
      paused.hidden = false;
      showPaused();
      readStatus();
      refreshTimer = setInterval(readStatus, REFRESH_MS);
    }, PAUSED_AFTER_MS);
  }

  function showPaused() {
    const text = currentAt ? `Live updates paused — showing status from ${formatTime(currentAt)}` : 'Live updates paused';
    setText(pausedText, text);
  }

  const stopWatching = live.watch(projectId, (message) => show(apply(state, message)));
  readStatus();
  live.addEventListener('state', onLiveState);
  onLiveState();
  const stopScenes = loadScenes(api, projectId, (read) => {
    scenes = read;
    for (const [index, entry] of cards) entry.about.replaceChildren(...sceneLines(scenes.get(index)));
  });
  return () => {
    stopped = true;
    clearTimeout(pauseTimer);
    clearInterval(refreshTimer);
    clearTimeout(totalsTimer);
    live.removeEventListener('state', onLiveState);
    stopScenes();
    stopWatching();
  };
}

/** What a retry's answer says: how many failed clips got a new task. */
export function retriedText({ clips_changed: changed } = {}) {
  if (changed === undefined) return 'The failed clips are being retried.'; // an older API: not said
  if (changed === 0) return 'Nothing to retry: no clip failed.';
  return `Retried ${plural(changed, 'clip')}.`;
}

/** What a cancel's answer says: how many clips it cancelled, and how many of those reelflow
 * knows Runware may still bill (``clips_may_be_billed``: each only if it ends with a video;
 * not an upper bound, as a clip whose submit was in flight may be billed uncounted). */
export function cancelledText({ clips_changed: changed = 0, clips_may_be_billed: billed = 0 } = {}) {
  if (changed === 0) return 'Nothing to cancel: no clip is queued or processing.';
  const done = `Cancelled ${plural(changed, 'clip')}`;
  if (billed === 0) return `${done}; ${changed === 1 ? 'it is not' : 'none of them is'} known to be billed.`;
  const some = changed === 1 ? 'it' : `${billed} of them`;
  return `${done}; ${some} may still be billed (already sent to Runware, or cancelled in the first seconds after the project was created).`;
}

/** "Earlier tasks: failed (timeoutProvider); success, $0.40 (video)": what a retried scene
 * went through, with a link to each earlier task's video (reelflow's copy once it has one). */
function earlierText(attempts) {
  const parts = [`Earlier ${attempts.length === 1 ? 'task' : 'tasks'}: `];
  attempts.forEach((attempt, index) => {
    const code = attempt.error?.code ? ` (${attempt.error.code})` : '';
    const cost = typeof attempt.cost === 'number' ? `, ${formatCost(attempt.cost)}` : '';
    if (index > 0) parts.push('; ');
    parts.push(`${attempt.status}${code}${cost}`);
    const source = attempt.status === 'success' ? videoUrl(attempt) : null;
    if (source) {
      parts.push(' (', h('a', { href: source, target: '_blank', rel: 'noopener', class: 'earlier-video' }, 'video'), ')');
    }
  });
  return parts;
}

function media(clip) {
  const label = `Scene ${clip.scene_index}`;
  if (clip.status === 'success' && videoUrl(clip)) {
    // Playing in a muted loop, unless the person asked for less motion: then it waits for
    // them to play it (with its sound).
    const moving = !matchMedia('(prefers-reduced-motion: reduce)').matches;
    const video = h('video', {
      src: videoUrl(clip), controls: true, autoplay: moving, loop: moving, playsinline: true,
      preload: 'auto', 'aria-label': `${label} video`,
    });
    video.muted = moving; // the attribute alone does not mute a video made by script; autoplay needs it
    return video;
  }
  if (TERMINAL.has(clip.status)) return h('div', { class: 'placeholder' }, STATUS_TEXT[clip.status]);
  // Queued is an empty bar; generating shows Runware's progress once the server has stored
  // one (clip.progress, 0-99), an indeterminate bar until then.
  if (clip.status === 'processing' && typeof clip.progress === 'number') {
    return h('div', { class: 'placeholder' },
      h('progress', {
        'aria-label': `${label}: ${STATUS_TEXT[clip.status]}, ${clip.progress} %`, value: clip.progress, max: 100,
      }),
      h('span', { class: 'muted progress-text' }, `${clip.progress} %`));
  }
  return h('div', { class: 'placeholder' }, h('progress', {
    'aria-label': `${label}: ${STATUS_TEXT[clip.status]}`, value: clip.status === 'queued' ? 0 : null, max: 1,
  }));
}
