async () => {
  // Run in the page by tests/e2e/test_dashboard.py: a clip.stored gives a success reelflow's
  // own URL, which the page then plays rather than Runware's; later news keeps it.
  const { apply, videoUrl } = await import('/static/js/project-state.js');
  const counts = { total_clips: 1, completed: 1, pending: 0, failed: 0 };
  const clip = { task_uuid: 't0', scene_index: 0, status: 'success', video_url: 'https://runware/v.mp4' };
  const snapshot = {
    type: 'snapshot',
    seq: 2,
    project: { project_id: 'p', title: '', status: 'generating', ...counts, results: [clip] },
  };
  const stored = {
    type: 'clip.stored', seq: 3, project_id: 'p', scene_index: 0, task_uuid: 't0',
    stored_url: '/v1/videos/videos/p/0/t0.mp4?expires=1&signature=s', size_bytes: 5893, counts,
  };
  const otherTask = { ...stored, seq: 4, task_uuid: 't9', stored_url: '/v1/videos/other' };
  const finished = { type: 'project.finished', seq: 5, project_id: 'p', status: 'completed', counts };

  let state = null;
  const shown = [];
  for (const message of [snapshot, stored, stored, otherTask, finished]) {
    state = apply(state, message);
    shown.push(`${state.seq}:${videoUrl(state.clips[0])}`);
  }
  return shown;
}
