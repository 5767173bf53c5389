// A project as the page shows it, built from the WebSocket's messages. Pure: no DOM, no I/O.
//
// Messages are applied by seq: one at or below the seq already applied is old news
// and changes nothing, so a clip never goes backwards on screen, whatever the order
// in which a snapshot, a replay and live events arrive. Each event replaces what it
// carries (docs/API.md, "Keeping a project from its events"): its counts and cost the
// project's, a clip.updated's clip the scene's clip (attempts too, when it has them), a
// clip.attempt_succeeded's attempt that task's, a copy's stored_url that task's.

export const TERMINAL = new Set(['success', 'failed', 'cancelled']);

/** A state from a REST project status, at its seq: a message at or below it is old news
 * (an API of the release before says no seq: any message replaces it). */
export function fromStatus(status) {
  return {
    seq: typeof status.seq === 'number' ? status.seq : -1,
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
  const counts = message.counts ? countsOf(message.counts) : state.counts;
  return {
    ...state,
    seq: message.seq,
    counts,
    // Absent only from a service of the release before (an upgrade): the next event says it.
    cost: costOf(message.cost) ?? state.cost,
    // A retry makes a finished project pending again; its final status comes with project.finished.
    status: message.type === 'project.finished' ? message.status
      : counts.pending > 0 ? 'generating' : state.status,
    clips: withEvent(state.clips, message),
  };
}

/** The clips after an event: what it carries replaces what it names. */
function withEvent(clips, message) {
  const scene = message.clip?.scene_index ?? message.scene_index;
  return clips.map((clip) => {
    if (clip.scene_index !== scene) return clip;
    if (message.type === 'clip.updated') {
      // No attempts: the change left them as they were.
      return { ...message.clip, attempts: message.clip.attempts ?? attemptsBefore(clip, message.clip) };
    }
    if (message.type === 'clip.attempt_succeeded') {
      return { ...clip, attempts: replaced(clip.attempts, message.attempt.task_uuid, () => message.attempt) };
    }
    if (message.type === 'clip.stored' && clip.task_uuid === message.task_uuid) {
      return { ...clip, stored_url: message.stored_url };
    }
    if (message.type === 'clip.attempt_stored' && clip.attempts) {
      const stored = (attempt) => ({ ...attempt, stored_url: message.stored_url });
      return { ...clip, attempts: replaced(clip.attempts, message.task_uuid, stored, false) };
    }
    return clip;
  });
}

/** ``attempts`` with the one of ``taskUuid`` replaced by ``by(it)``; added if absent (``add``). */
function replaced(attempts = [], taskUuid, by, add = true) {
  const index = attempts.findIndex((attempt) => attempt.task_uuid === taskUuid);
  if (index === -1) return add ? [...attempts, by()] : attempts;
  return attempts.map((attempt, at) => (at === index ? by(attempt) : attempt));
}

/** The attempts of a clip.updated without them: those held, unless it names another task — an
 * event stored before events carried attempts (a retry's, replayed across the upgrade): the task
 * the clip leaves joins them then, as the server recorded it. */
function attemptsBefore(known, clip) {
  if (known.task_uuid === clip.task_uuid) return known.attempts;
  const { task_uuid, status, video_url, cost, error, submitted_at, completed_at, stored_url } = known;
  const left = { task_uuid, status, video_url, cost, error, submitted_at, completed_at, stored_url };
  return [...(known.attempts ?? []).filter((attempt) => attempt.task_uuid !== clip.task_uuid), left];
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

/** The URL a clip's (or an attempt's) video plays from: reelflow's own copy when it has one,
 * else Runware's. */
export function videoUrl(clip) {
  return clip.stored_url ?? clip.video_url ?? null;
}
