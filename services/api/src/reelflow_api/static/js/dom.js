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

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

export function formatDate(value) {
  return value ? dateTime.format(new Date(value)) : '';
}

const timeOfDay = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit', timeZoneName: 'short' });

/** A time of day, with its zone: "2:05 PM UTC", "14:05 CET". */
export function formatTime(value) {
  return value ? timeOfDay.format(new Date(value)) : '';
}

/** A cost in USD, as Runware reports it. */
export function formatCost(cost) {
  return typeof cost === 'number' ? `$${cost.toFixed(cost < 0.1 ? 3 : 2)}` : '';
}

/** A project's cost totals ({usd, known, unknown}): "$1.20", "$1.20 + 1 unpriced", or ''. */
export function formatTotals(cost) {
  if (!cost || (!cost.known && !cost.unknown)) return '';
  const parts = cost.known ? [formatCost(cost.usd)] : [];
  if (cost.unknown) parts.push(`${cost.unknown} unpriced`);
  return parts.join(' + ');
}

export function plural(count, word) {
  return `${count} ${word}${count === 1 ? '' : 's'}`;
}
