// The tenant's spend this month (GET /v1/usage), and the limits it counts against.

import { h, formatCost, plural } from '../dom.js';

/** A line under the Projects heading: this month's spend, unpriced clips said as such, budgets. */
export function usageSummary(api) {
  const line = h('p', { class: 'usage muted', 'aria-label': 'Spend this month' });
  api.usage().then((usage) => {
    line.replaceChildren(...describe(usage));
  }, (error) => {
    line.textContent = `Spend unavailable: ${error.message}`;
  });
  return line;
}

/**
 * The line's parts: this month's spend and the current UTC day's (the API's days are UTC,
 * and list only days with projects), then the limits, if the tenant has any.
 */
export function describe(usage, now = new Date()) {
  const { month, limits } = usage;
  const parts = [`This month (${month.period}): ${formatCost(month.usd) || '$0.00'}`];
  if (month.unknown_cost_clips) parts.push(`+ ${plural(month.unknown_cost_clips, 'clip')} of unknown cost`);
  const budgets = [];
  const day = now.toISOString().slice(0, 10);
  if (limits.daily_budget_usd !== null) {
    budgets.push(`daily budget ${formatCost(limits.daily_budget_usd)}`);
  }
  if (limits.monthly_budget_usd !== null) {
    budgets.push(`monthly budget ${formatCost(limits.monthly_budget_usd)}`);
  }
  if (limits.max_clips_in_flight !== null) {
    budgets.push(`${usage.clips_in_flight ?? 0} of ${limits.max_clips_in_flight} clips in flight`);
  }
  const text = [parts.join(' ')];
  if (day.startsWith(month.period)) {
    const today = usage.days.find((entry) => entry.period === day);
    text.push(`today ${formatCost(today?.usd) || '$0.00'}`);
  }
  const shown = [h('span', { class: 'spent' }, text.join(' · '))];
  if (budgets.length) shown.push(h('span', { class: 'limits' }, ` · ${budgets.join(' · ')}`));
  return shown;
}
