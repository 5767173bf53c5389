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
    cost: status.cost ?? null,
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
    const counts = { ...message.counts };
    return {
      ...state,
      seq: message.seq,
      counts,
      // A retry makes a finished project pending again; its final status comes with project.finished.
      status: counts.pending > 0 ? 'generating' : state.status,
      clips: withClip(state.clips, message.clip),
    };
  }
  if (message.type === 'project.finished') {
    return { ...state, seq: message.seq, status: message.status, counts: { ...message.counts } };
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

/** What the clips have cost so far, from the clips' own costs (null when none reported one). */
export function clipsCost(state) {
  const costs = (state?.clips ?? []).map((clip) => clip.cost).filter((cost) => typeof cost === 'number');
  return costs.length ? costs.reduce((sum, cost) => sum + cost, 0) : null;
}

function countsOf(status) {
  return {
    total_clips: status.total_clips,
    completed: status.completed,
    pending: status.pending,
    failed: status.failed,
  };
}

function clipsOf(results) {
  return (results ?? []).map((clip) => ({ ...clip })).sort((a, b) => a.scene_index - b.scene_index);
}

/** One clip per scene: a retry's new task replaces the failed one of its scene. */
function withClip(clips, clip) {
  const index = clips.findIndex((known) => known.scene_index === clip.scene_index);
  if (index === -1) return clipsOf([...clips, clip]);
  const known = clips[index];
  // Belt and braces: the same task never moves to an earlier stage.
  if (known.task_uuid === clip.task_uuid && RANK[clip.status] < RANK[known.status]) return clips;
  const next = [...clips];
  next[index] = { ...clip };
  return next;
}
