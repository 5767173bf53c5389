// The dashboard's entry point: configuration, the signed-in session, the header, the router.

import { Api, loadConfig } from './api.js';
import { h } from './dom.js';
import { Live } from './live.js';
import { mountNewProject } from './views/new-project.js';
import { mountProject } from './views/project.js';
import { mountProjects } from './views/projects.js';
import { mountSignIn } from './views/signin.js';

// The key lives in this tab's session only: closing the tab forgets it.
const KEY_STORAGE = 'reelflow.apiKey';

const LIVE_LABELS = {
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  idle: '',
};

const main = document.getElementById('main');
const topbar = document.querySelector('.topbar');
const liveStatus = document.getElementById('live-status');

let config = null;
let session = null; // {api, live}
let unmountView = () => {};

function signIn(key) {
  sessionStorage.setItem(KEY_STORAGE, key);
  const api = new Api(key);
  const live = new Live(config.ws_url, () => api.wsTicket());
  live.addEventListener('state', () => showLiveState(live.state));
  live.addEventListener('unauthorized', () => signOut('Your API key is no longer accepted. Sign in again.'));
  live.start();
  session = { api, live };
  topbar.hidden = false;
  route();
}

function signOut(message = '') {
  sessionStorage.removeItem(KEY_STORAGE);
  session?.live.stop();
  session = null;
  topbar.hidden = true;
  showLiveState('idle');
  render((container) => mountSignIn(container, { onKey: signIn, message }));
}

function showLiveState(state) {
  liveStatus.textContent = LIVE_LABELS[state] ?? '';
  liveStatus.dataset.state = state;
}

/** Replace the page's view; ``mount`` returns what undoes it (listeners, subscriptions). */
function render(mount) {
  unmountView();
  main.replaceChildren();
  unmountView = mount(main) ?? (() => {});
  // Move focus to the new view's heading so keyboard and screen-reader users follow the change.
  main.querySelector('h1')?.focus({ preventScroll: true });
  for (const link of document.querySelectorAll('nav a')) {
    link.toggleAttribute('aria-current', link.getAttribute('href') === (location.hash || '#/'));
  }
}

function route() {
  if (!session) return;
  const context = { ...session, config, signOut };
  const hash = location.hash || '#/';
  const project = hash.match(/^#\/projects\/([^/?#]+)$/);
  if (project) {
    render((container) => mountProject(container, context, decodeURIComponent(project[1])));
  } else if (hash === '#/new') {
    render((container) => mountNewProject(container, context));
  } else {
    render((container) => mountProjects(container, context));
  }
}

async function start() {
  try {
    config = await loadConfig();
  } catch (error) {
    main.replaceChildren(h('p', { class: 'alert', role: 'alert' }, `The dashboard cannot start: ${error.message}`));
    return;
  }
  document.getElementById('sign-out').addEventListener('click', () => signOut());
  window.addEventListener('hashchange', route);
  window.addEventListener('online', () => session?.live.retryNow());
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) signIn(key);
  else signOut();
}

start();
