async () => {
  // Run in the page by tests/e2e/test_dashboard.py: the dashboard's reducer on the messages the
  // server sends (each event with the project's cost; a clip.updated with the clip whole, its
  // attempts when they changed), and on events stored before events carried those.
  const { apply } = await import('/static/js/project-state.js');
  const { formatTotals } = await import('/static/js/dom.js');
  const counts = (completed, pending, failed) => ({ total_clips: 3, completed, pending, failed });
  const cost = (usd, known, unknown) => ({ usd, known, unknown });
  const broken = { code: 'timeoutProvider', message: 'late' };
  const a1 = { task_uuid: 'a1', status: 'failed', error: broken };
  const snapshot = {
    type: 'snapshot',
    seq: 5,
    project: {
      project_id: 'p', title: '', status: 'partial', total_clips: 3, completed: 1, pending: 0,
      failed: 2, cost: cost(0.1, 1, 0),
      results: [
        { task_uuid: 't0', scene_index: 0, status: 'success', cost: 0.1 },
        { task_uuid: 'a1', scene_index: 1, status: 'failed', error: broken },
        { task_uuid: 'b1', scene_index: 2, status: 'failed', error: { code: 'timedOut', message: 'slow' } },
      ],
    },
  };
  // A retry's new task: queued, no error, the failed task among its attempts.
  const retried = {
    type: 'clip.updated', seq: 6, replaces_task_uuid: 'a1', counts: counts(1, 1, 1), cost: cost(0.1, 1, 0),
    clip: { task_uuid: 'a2', scene_index: 1, status: 'queued', attempts: [a1] },
  };
  const progress = {
    type: 'clip.updated', seq: 7, counts: counts(1, 1, 1), cost: cost(0.1, 1, 0),
    clip: { task_uuid: 'a2', scene_index: 1, status: 'processing', progress: 74 },
  };
  // Its success: no progress left, the attempts kept (the event has none: they did not change).
  const done = {
    type: 'clip.updated', seq: 8, counts: counts(2, 0, 1), cost: cost(0.1, 1, 1),
    clip: { task_uuid: 'a2', scene_index: 1, status: 'success', video_url: 'https://runware/a2.mp4' },
  };
  // The first task's video came after all: billed, its attempt replaced in place.
  const late = {
    type: 'clip.attempt_succeeded', seq: 9, scene_index: 1, counts: counts(2, 0, 1), cost: cost(0.35, 2, 1),
    attempt: { task_uuid: 'a1', status: 'success', cost: 0.25 },
  };
  // Scene 2's own timed-out task delivers, and a retry takes that video: counted when it came.
  const ownLate = {
    type: 'clip.attempt_succeeded', seq: 10, scene_index: 2, counts: counts(2, 0, 1), cost: cost(0.55, 3, 1),
    attempt: { task_uuid: 'b1', status: 'success', cost: 0.2 },
  };
  const taken = {
    type: 'clip.updated', seq: 11, cost_counted: true, counts: counts(3, 0, 0), cost: cost(0.55, 3, 1),
    clip: { task_uuid: 'b1', scene_index: 2, status: 'success', cost: 0.2, attempts: [] },
  };

  const shown = [];
  let state = null;
  for (const message of [snapshot, retried, progress, done, done, late, late, ownLate, taken]) {
    state = apply(state, message);
    const [, scene1, scene2] = state.clips;
    shown.push({
      cost: formatTotals(state.cost),
      usd: state.cost.usd,
      task: scene1.task_uuid,
      progress: scene1.progress ?? null,
      error: scene1.error?.code ?? null,
      earlier: (scene1.attempts ?? []).map((attempt) => `${attempt.task_uuid}:${attempt.status}`),
      scene2: `${scene2.task_uuid}:${scene2.status}:${(scene2.attempts ?? []).length}`,
    });
  }

  // Events stored before events carried cost and attempts (replayed across the upgrade): the
  // cost held stays until an event says it; the task a retry replaced joins the attempts.
  let before = apply(null, snapshot);
  before = apply(before, {
    type: 'clip.updated', seq: 6, replaces_task_uuid: 'a1', counts: counts(1, 1, 1),
    clip: { task_uuid: 'a2', scene_index: 1, status: 'queued' },
  });
  const [, legacy] = before.clips;
  shown.push({
    cost: formatTotals(before.cost),
    task: legacy.task_uuid,
    error: legacy.error?.code ?? null,
    earlier: (legacy.attempts ?? []).map((attempt) => `${attempt.task_uuid}:${attempt.status}`),
  });
  return shown;
}
