async () => {
  // Run in the page by tests/e2e/test_dashboard.py: the spend line's text for answers of
  // GET /v1/usage, on a fixed UTC day (2026-12-05), with and without limits.
  const { describe } = await import('/static/js/views/usage.js');
  const now = new Date('2026-12-05T23:30:00Z');
  const noLimits = {
    max_clips_in_flight: null, max_scenes_per_project: null, allowed_models: null,
    daily_budget_usd: null, monthly_budget_usd: null,
  };
  const day = (period, usd) => ({ period, usd, known_cost_clips: 1, unknown_cost_clips: 0, projects: 1 });
  const usage = (days, limits = noLimits) => ({
    tenant_id: 't',
    month: { period: '2026-12', usd: 8, known_cost_clips: 2, unknown_cost_clips: 0, projects: 2 },
    days,
    limits,
    clips_in_flight: limits === noLimits ? null : 1,
    committed_usd: {},
  });
  const line = (answer, at = now) => {
    const p = document.createElement('p');
    p.replaceChildren(...describe(answer, at));
    return p.textContent;
  };
  return [
    // spent today, no limits
    line(usage([day('2026-12-01', 3), day('2026-12-05', 5)])),
    // nothing today: the last active day is not today
    line(usage([day('2026-12-01', 3), day('2026-12-04', 5)])),
    line(usage([])),
    // with limits
    line(usage([day('2026-12-05', 5)], { ...noLimits, daily_budget_usd: 20, max_clips_in_flight: 4 })),
    // a month other than the current one has no "today"
    line(usage([day('2026-12-05', 5)]), new Date('2027-01-01T00:00:00Z')),
  ];
}
