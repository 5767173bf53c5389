// The tenant's projects, newest first, a page at a time (the list endpoint's cursor), live.

import { h, formatDate, formatTotals, projectStatusText, setText } from '../dom.js';
import { apply, failedApart, fromStatus } from '../project-state.js';
import { usageSummary } from './usage.js';

const PAGE_SIZE = 20;

export function mountProjects(container, { api, live }) {
  const cursors = [null]; // cursors[i] fetches page i; going back pops
  let unwatchAll = [];
  let disposed = false;

  const list = h('ol', { class: 'project-list', 'aria-label': 'Projects' });
  const newer = h('button', { type: 'button', onclick: () => { cursors.pop(); load(); } }, '← Newer');
  const older = h('button', { type: 'button' }, 'Older →');
  // "Page 2", said when it changes.
  const pageInfo = h('span', { class: 'muted', id: 'page-info', role: 'status' });
  const message = h('p', { class: 'muted', role: 'status' });
  const heading = h('h1', { tabindex: '-1' }, 'Projects');

  container.append(
    h('div', { class: 'page-head' },
      heading,
      h('a', { class: 'button primary', href: '#/new' }, 'New project')),
    usageSummary(api),
    message,
    list,
    h('nav', { class: 'pager', 'aria-label': 'Pages' }, newer, pageInfo, older),
  );

  async function load() {
    stopWatching();
    message.textContent = 'Loading…';
    let page;
    try {
      page = await api.listProjects({ cursor: cursors.at(-1), limit: PAGE_SIZE });
    } catch (error) {
      message.textContent = error.message;
      return;
    }
    if (disposed) return;
    message.textContent = page.items.length ? '' : (cursors.length === 1 ? 'No projects yet. Create one!' : 'No older projects.');
    list.replaceChildren(...page.items.map((item) => row(fromStatus(item))));
    const pressed = document.activeElement;
    newer.disabled = cursors.length === 1;
    older.disabled = !page.next_cursor;
    older.onclick = () => { cursors.push(page.next_cursor); load(); };
    setText(pageInfo, `Page ${cursors.length}`);
    // The first or the last page: the button pressed is disabled, and the keyboard's place
    // goes to the top of the page it shows.
    if ((pressed === newer || pressed === older) && pressed.disabled) heading.focus();
  }

  /** One project: rendered now from the list, then kept up to date from the WebSocket. */
  function row(initial) {
    let state = initial;
    const item = h('li', { class: 'project-row', dataset: { projectId: state.id } });
    const draw = () => {
      // A live update must not take the keyboard's place away: the link keeps the focus.
      const focused = item.contains(document.activeElement);
      item.replaceChildren(...rowContent(state));
      if (focused) item.querySelector('.project-title').focus();
    };
    draw();
    unwatchAll.push(live.watch(state.id, (message) => {
      const next = apply(state, message);
      if (next !== state) {
        state = next;
        draw();
      }
    }));
    return item;
  }

  function stopWatching() {
    for (const unwatch of unwatchAll) unwatch();
    unwatchAll = [];
  }

  load();
  return () => {
    disposed = true;
    stopWatching();
  };
}

/** "1 done · 0 pending · 1 failed · 2 cancelled of 4": cancelled clips apart from failed ones. */
function countsText(counts) {
  const { failed, cancelled } = failedApart(counts);
  const ended = `${failed} failed${cancelled ? ` · ${cancelled} cancelled` : ''}`;
  return `${counts.completed} done · ${counts.pending} pending · ${ended} of ${counts.total_clips}`;
}

function rowContent(state) {
  const { counts } = state;
  return [
    h('a', { class: 'project-title', href: `#/projects/${encodeURIComponent(state.id)}` },
      state.title || 'Untitled project'),
    h('span', { class: `badge status-${state.status}` }, projectStatusText(state.status)),
    h('span', { class: 'counts' }, countsText(counts)),
    h('span', { class: 'cost' }, formatTotals(state.cost)),
    h('time', { datetime: state.createdAt ?? '' }, formatDate(state.createdAt)),
  ];
}
