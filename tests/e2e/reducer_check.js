async () => {
  // Run in the page by tests/e2e/test_dashboard.py: the dashboard's reducer, fed messages
  // out of order (older than a snapshot, duplicated, a stale snapshot); returns
  // "seq:clip status:project status" after each one.
  const { apply, fromStatus } = await import('/static/js/project-state.js');
  const clip = (status) => ({ task_uuid: 't0', scene_index: 0, status });
  const counts = (done) => ({ total_clips: 1, completed: done ? 1 : 0, pending: done ? 0 : 1, failed: 0 });
  const snapshot = (seq, status) => ({
    type: 'snapshot',
    seq,
    project: {
      project_id: 'p', title: '', status: 'generating', total_clips: 1, completed: 0,
      pending: 1, failed: 0, results: [clip(status)],
    },
  });
  const updated = (seq, status) => ({
    type: 'clip.updated', seq, project_id: 'p', clip: clip(status), counts: counts(status === 'success'),
  });
  const finished = (seq) => ({
    type: 'project.finished', seq, project_id: 'p', status: 'completed', counts: counts(true),
  });

  let state = null;
  const shown = [];
  for (const message of [
    snapshot(2, 'processing'),
    updated(1, 'queued'), // older than the snapshot
    updated(3, 'success'),
    updated(2, 'processing'), // a duplicate, late
    snapshot(2, 'processing'), // a stale snapshot
    finished(4),
    updated(3, 'success'),
  ]) {
    state = apply(state, message);
    shown.push(`${state.seq}:${state.clips[0].status}:${state.status}`);
  }
  // A clip that timed out on our side, retried: the same task watched again. The seq says it
  // is news, however its status ranks.
  const timedOut = { ...snapshot(5, 'failed'), project: { ...snapshot(5, 'failed').project, status: 'failed', pending: 0, failed: 1 } };
  let watched = apply(null, timedOut);
  watched = apply(watched, updated(6, 'processing'));
  shown.push(`${watched.seq}:${watched.clips[0].status}:${watched.status}`);
  // A row of the projects list, from its REST status at seq 3: an event the list read
  // included already changes nothing, a newer one does. An API without seq: any does.
  const listed = snapshot(0, 'processing').project;
  for (const status of [{ ...listed, seq: 3 }, listed]) {
    let row = fromStatus(status);
    row = apply(row, updated(2, 'queued'));
    shown.push(`${row.seq}:${row.clips[0].status}:${row.status}`);
  }
  return shown;
}
