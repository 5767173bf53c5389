async () => {
  // Run in the page by tests/e2e/test_dashboard.py: the dashboard's reducer and formatting
  // of the API's cost totals ({usd, known, unknown}) and a retried scene's earlier tasks.
  const { apply } = await import('/static/js/project-state.js');
  const { formatTotals } = await import('/static/js/dom.js');
  const counts = (completed, pending, failed) => ({ total_clips: 2, completed, pending, failed });
  const failed = {
    task_uuid: 'a1', scene_index: 1, status: 'failed', error: { code: 'timeoutProvider', message: 'late' },
  };
  const snapshot = {
    type: 'snapshot',
    seq: 5,
    project: {
      project_id: 'p', title: '', status: 'partial', total_clips: 2, completed: 1, pending: 0,
      failed: 1, cost: { usd: 0.1, known: 1, unknown: 0 },
      results: [{ task_uuid: 't0', scene_index: 0, status: 'success', cost: 0.1 }, failed],
    },
  };
  const retried = {
    type: 'clip.updated', seq: 6, replaces_task_uuid: 'a1', counts: counts(1, 1, 0),
    clip: { task_uuid: 'a2', scene_index: 1, status: 'queued' },
  };
  const done = {
    type: 'clip.updated', seq: 7, counts: counts(2, 0, 0),
    clip: { task_uuid: 'a2', scene_index: 1, status: 'success', cost: 0.2 },
  };
  const unpriced = { ...done, seq: 8, clip: { ...done.clip, task_uuid: 'a3', cost: null } };
  // The first task's video came after all: billed, kept among the attempts, the clip unchanged.
  const late = {
    type: 'clip.attempt_succeeded', seq: 9, scene_index: 1, counts: counts(2, 0, 0),
    attempt: { task_uuid: 'a1', status: 'success', cost: 0.25 },
  };

  // A retry makes the clip take that late video: its cost was counted when it came.
  const taken = {
    type: 'clip.updated', seq: 10, replaces_task_uuid: 'a3', cost_counted: true,
    counts: counts(2, 0, 0), clip: { task_uuid: 'a1', scene_index: 1, status: 'success', cost: 0.25 },
  };

  const shown = [];
  let state = null;
  for (const message of [snapshot, retried, done, done, unpriced, late, late, taken]) {
    state = apply(state, message);
    const scene = state.clips[1];
    shown.push({
      cost: formatTotals(state.cost),
      // as the API would send it: 0.1 + 0.2 is 0.3, rounded as docs/API.md says
      usd: state.cost.usd,
      task: scene.task_uuid,
      earlier: (scene.attempts ?? []).map((attempt) => `${attempt.task_uuid}:${attempt.status}`),
    });
  }
  return shown;
}
