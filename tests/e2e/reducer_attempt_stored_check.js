async () => {
  // Run in the page by tests/e2e/test_dashboard.py: a clip.attempt_stored gives the earlier task
  // of its task_uuid reelflow's own URL (the video the tenant paid for), never the clip itself.
  const { apply, videoUrl } = await import('/static/js/project-state.js');
  const counts = { total_clips: 1, completed: 0, pending: 0, failed: 1 };
  const earlier = { task_uuid: 't0', status: 'success', video_url: 'https://runware/v.mp4', cost: 0.4 };
  const clip = { task_uuid: 't0', scene_index: 0, status: 'cancelled', attempts: [earlier] };
  const snapshot = {
    type: 'snapshot',
    seq: 3,
    project: { project_id: 'p', title: '', status: 'cancelled', ...counts, results: [clip] },
  };
  const stored = {
    type: 'clip.attempt_stored', seq: 4, project_id: 'p', scene_index: 0, task_uuid: 't0',
    stored_url: '/v1/videos/videos/p/0/t0.mp4?expires=1&signature=s', size_bytes: 5893, counts,
  };
  const otherTask = { ...stored, seq: 5, task_uuid: 't9', stored_url: '/v1/videos/other' };

  let state = null;
  const shown = [];
  for (const message of [snapshot, stored, stored, otherTask]) {
    state = apply(state, message);
    const [only] = state.clips;
    shown.push(`${state.seq}:${videoUrl(only.attempts[0])}:${videoUrl(only)}`);
  }
  // A failed clip's retry takes an earlier task's video that reelflow keeps: the event is the
  // clip now, whole: that task, its kept copy (stored_url) to play, the failed task among the
  // earlier ones.
  const early = { task_uuid: 'e0', status: 'success', video_url: 'https://runware/e0.mp4', cost: 0.4 };
  const failedClip = { task_uuid: 't1', scene_index: 0, status: 'failed', attempts: [early] };
  let retried = apply(null, {
    type: 'snapshot', seq: 1,
    project: { project_id: 'q', title: '', status: 'failed', ...counts, results: [failedClip] },
  });
  retried = apply(retried, {
    ...stored, seq: 2, project_id: 'q', task_uuid: 'e0', stored_url: '/v1/videos/e0',
  });
  retried = apply(retried, {
    type: 'clip.updated', seq: 3, project_id: 'q', replaces_task_uuid: 't1', cost_counted: true,
    counts: { total_clips: 1, completed: 1, pending: 0, failed: 0 },
    clip: {
      task_uuid: 'e0', scene_index: 0, status: 'success', video_url: 'https://runware/e0.mp4',
      stored_url: '/v1/videos/e0', attempts: [{ task_uuid: 't1', status: 'failed' }],
    },
  });
  const [taken] = retried.clips;
  shown.push(`${retried.seq}:${videoUrl(taken)}:${taken.attempts.map((a) => a.task_uuid).join(',')}`);
  return shown;
}
