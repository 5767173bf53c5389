// Small DOM helpers: elements are built with h(), never from HTML strings, so
// titles, prompts and error messages can never inject markup.

/** An element: h('a', {href: '#/', class: 'brand'}, 'text', child, …). */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on')) element.addEventListener(name.slice(2).toLowerCase(), value);
    else if (name === 'class') element.className = value;
    else if (name === 'dataset') Object.assign(element.dataset, value);
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  element.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
  return element;
}

/** Set an element's text only when it changes: a screen reader says a live region again
 * at every assignment, the same text too. */
export function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

// Times are the browser's own, with their zone said: the API's days and months (spend,
// budgets) are UTC ones, and a time without its zone reads as either.
const dateTime = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: 'numeric', minute: '2-digit', timeZoneName: 'short',
});

/** A date and time, with its zone: "Dec 4, 2026, 10:11 AM UTC". */
export function formatDate(value) {
  return value ? dateTime.format(new Date(value)) : '';
}

const timeOfDay = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit', timeZoneName: 'short' });

/** A time of day, with its zone: "2:05 PM UTC", "14:05 CET". */
export function formatTime(value) {
  return value ? timeOfDay.format(new Date(value)) : '';
}

const usd = new Intl.NumberFormat('en-US', {
  style: 'currency', currency: 'USD', minimumFractionDigits: 2, maximumFractionDigits: 4,
});

/** A dollar amount, as every reelflow tool prints one (the CLI's and reelflow-admin's):
 * cents always, up to four decimals when they are not zero ($5.00, $23.234, $0.0013,
 * $1,234.50). */
export function formatCost(cost) {
  return typeof cost === 'number' ? usd.format(cost) : '';
}

/** A project's cost totals ({usd, known, unknown}): "$1.20", "$1.20 + 1 unpriced", or ''. */
export function formatTotals(cost) {
  if (!cost || (!cost.known && !cost.unknown)) return '';
  const parts = cost.known ? [formatCost(cost.usd)] : [];
  if (cost.unknown) parts.push(`${cost.unknown} unpriced`);
  return parts.join(' + ');
}

/** A project's status (the API's word, which names its badge's class) as the dashboard says
 * it, on every page. */
const PROJECT_STATUS_TEXT = {
  generating: 'Generating',
  completed: 'Completed',
  partial: 'Partly done',
  failed: 'Failed',
  cancelled: 'Cancelled',
};

export function projectStatusText(status) {
  return PROJECT_STATUS_TEXT[status] ?? status;
}

export function plural(count, word) {
  return `${count} ${word}${count === 1 ? '' : 's'}`;
}
