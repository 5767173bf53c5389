// A project as the page shows it, built from the WebSocket's messages. Pure: no DOM, no I/O.
//
// Messages are applied by seq: one at or below the seq already applied is old news
// and changes nothing, so a clip never goes backwards on screen, whatever the order
// in which a snapshot, a replay and live events arrive.

const RANK = { queued: 0, processing: 1, success: 2, failed: 2, cancelled: 2 };
export const TERMINAL = new Set(['success', 'failed', 'cancelled']);

/** A state from a REST project status (no seq: any message replaces it). */
export function fromStatus(status) {
  return {
    seq: -1,
    id: status.project_id,
    title: status.title ?? '',
    status: status.status,
    counts: countsOf(status),
    cost: costOf(status.cost),
    createdAt: status.created_at ?? null,
    clips: clipsOf(status.results),
    missing: false,
  };
}

/** The state after ``message``; the same object when the message changes nothing. */
export function apply(state, message) {
  if (message.type === 'error') {
    return /not found/.test(message.message ?? '') ? { ...(state ?? {}), missing: true } : state;
  }
  if (typeof message.seq !== 'number') return state;
  if (state && message.seq <= state.seq) return state;
  if (message.type === 'snapshot') {
    return { ...fromStatus(message.project), seq: message.seq };
  }
  if (!state) return state; // an event before any snapshot: the snapshot will cover it
  if (message.type === 'clip.updated') {
    const counts = countsOf(message.counts);
    return {
      ...state,
      seq: message.seq,
      counts,
      // A retry makes a finished project pending again; its final status comes with project.finished.
      status: counts.pending > 0 ? 'generating' : state.status,
      // cost_counted: a retry took a late video whose clip.attempt_succeeded counted it already.
      cost: message.cost_counted ? state.cost : withCost(state.cost, message.clip),
      clips: withClip(state.clips, message.clip),
    };
  }
  if (message.type === 'clip.stored') {
    // reelflow's own copy of a clip's video landed: play it from there (Runware's link expires).
    return { ...state, seq: message.seq, clips: withStoredUrl(state.clips, message) };
  }
  if (message.type === 'clip.attempt_stored') {
    // reelflow's own copy of an earlier task's video landed (billed, so kept): link that one.
    return { ...state, seq: message.seq, clips: withAttemptStoredUrl(state.clips, message) };
  }
  if (message.type === 'clip.attempt_succeeded') {
    // A task the clip does not stand for delivered a video, and Runware billed it: its
    // cost counts; the clip's status does not change (a retry of a failed clip takes it).
    return {
      ...state,
      seq: message.seq,
      cost: withCost(state.cost, message.attempt),
      clips: withAttempt(state.clips, message.scene_index, message.attempt),
    };
  }
  if (message.type === 'project.finished') {
    return { ...state, seq: message.seq, status: message.status, counts: countsOf(message.counts) };
  }
  return { ...state, seq: message.seq };
}

export function isFinished(state) {
  // The last clip.updated is followed by project.finished, which brings the final status.
  return Boolean(state) && state.counts.pending === 0 && state.status !== 'generating';
}

export function failedClips(state) {
  return state ? state.clips.filter((clip) => clip.status === 'failed') : [];
}

/** The project's cost totals as the API gives them: {usd, known, unknown}; null if absent. */
function costOf(cost) {
  if (!cost || typeof cost !== 'object' || typeof cost.usd !== 'number') return null;
  return { usd: cost.usd, known: cost.known ?? 0, unknown: cost.unknown ?? 0 };
}

/** A dollar amount rounded as the API sends them (docs/API.md): to a millionth of a dollar. */
function roundUsd(usd) {
  return Math.round(usd * 1e6) / 1e6;
}

/** The totals after a task's video (a clip.updated or a clip.attempt_succeeded): the server
 * adds a task's cost when it records its video. */
function withCost(cost, clip) {
  if (!cost || clip.status !== 'success') return cost;
  return typeof clip.cost === 'number'
    ? { ...cost, usd: roundUsd(cost.usd + clip.cost), known: cost.known + 1 }
    : { ...cost, unknown: cost.unknown + 1 };
}

function countsOf(status) {
  return {
    total_clips: status.total_clips,
    completed: status.completed,
    pending: status.pending,
    failed: status.failed,
    cancelled: status.cancelled ?? 0,
  };
}

/** The failed clips and the cancelled ones, apart: the API's ``failed`` counts both, its
 * ``cancelled`` (0 from an API older than it) the cancelled ones. */
export function failedApart(counts) {
  const cancelled = counts.cancelled ?? 0;
  return { failed: counts.failed - cancelled, cancelled };
}

function clipsOf(results) {
  return (results ?? []).map((clip) => ({ ...clip })).sort((a, b) => a.scene_index - b.scene_index);
}

/** One clip per scene: a retry's new task replaces the failed one of its scene.
 *
 * An event carries the clip's current task only; its earlier tasks (``attempts``,
 * from REST and snapshots) are kept, and a task that stops being the current one
 * joins them, as the server records it.
 */
function withClip(clips, clip) {
  const index = clips.findIndex((known) => known.scene_index === clip.scene_index);
  if (index === -1) return clipsOf([...clips, clip]);
  const known = clips[index];
  // Belt and braces: the same task never moves to an earlier stage.
  if (known.task_uuid === clip.task_uuid && RANK[clip.status] < RANK[known.status]) return clips;
  let attempts = clip.attempts ?? known.attempts;
  if (known.task_uuid !== clip.task_uuid) {
    const earlier = (known.attempts ?? []).filter((attempt) => attempt.task_uuid !== clip.task_uuid);
    attempts = [...earlier, attemptOf(known)];
  }
  const next = [...clips];
  // An event does not carry the stored URL a clip.stored brought before it for the same
  // task, nor one a clip.attempt_stored brought for an earlier task the clip takes (a retry
  // taking a late video): the copy is that task's, wherever it was shown.
  const taken = clip.status === 'success'
    ? (known.attempts ?? []).find((attempt) => attempt.task_uuid === clip.task_uuid && attempt.status === 'success')
    : undefined;
  const kept = (known.task_uuid === clip.task_uuid ? known.stored_url : undefined) ?? taken?.stored_url;
  const stored = clip.stored_url ? undefined : kept;
  const updated = stored ? { ...clip, stored_url: stored } : { ...clip };
  next[index] = attempts?.length ? { ...updated, attempts } : updated;
  return next;
}

function withAttempt(clips, sceneIndex, attempt) {
  return clips.map((clip) => {
    if (clip.scene_index !== sceneIndex) return clip;
    const others = (clip.attempts ?? []).filter((known) => known.task_uuid !== attempt.task_uuid);
    return { ...clip, attempts: [...others, { ...attempt }] };
  });
}

function withStoredUrl(clips, message) {
  return clips.map((clip) => (
    clip.scene_index === message.scene_index && clip.task_uuid === message.task_uuid
      ? { ...clip, stored_url: message.stored_url }
      : clip));
}

function withAttemptStoredUrl(clips, message) {
  return clips.map((clip) => {
    if (clip.scene_index !== message.scene_index || !clip.attempts?.length) return clip;
    const attempts = clip.attempts.map((attempt) => (
      attempt.task_uuid === message.task_uuid ? { ...attempt, stored_url: message.stored_url } : attempt));
    return { ...clip, attempts };
  });
}

/** The URL a clip's (or an attempt's) video plays from: reelflow's own copy when it has one,
 * else Runware's. */
export function videoUrl(clip) {
  return clip.stored_url ?? clip.video_url ?? null;
}

function attemptOf(clip) {
  const { task_uuid, status, video_url, cost, error, submitted_at, completed_at, stored_url } = clip;
  return { task_uuid, status, video_url, cost, error, submitted_at, completed_at, stored_url };
}
