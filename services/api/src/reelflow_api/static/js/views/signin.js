// Sign in with an API key; the key is checked against the API before it is kept.

import { Api } from '../api.js';
import { h } from '../dom.js';

export function mountSignIn(container, { onKey, message = '' }) {
  const input = h('input', {
    id: 'api-key', name: 'api-key', type: 'password', autocomplete: 'off', spellcheck: 'false',
    required: true, 'aria-describedby': 'api-key-help',
  });
  const error = h('p', { id: 'sign-in-error', class: 'field-error', role: 'alert' }, message);
  const button = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h('form', { class: 'card narrow', novalidate: true },
    h('h1', { tabindex: '-1' }, 'Sign in'),
    h('label', { for: 'api-key' }, 'API key'),
    input,
    h('p', { id: 'api-key-help', class: 'muted' },
      'The key that make run printed (rf_…). It is kept in this browser tab only.'),
    error,
    button,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) {
      error.textContent = 'Enter an API key.';
      input.focus();
      return;
    }
    button.disabled = true;
    error.textContent = '';
    try {
      await new Api(key).listProjects({ limit: 1 });
      onKey(key);
    } catch (failure) {
      error.textContent = failure.status === 401 ? 'That API key was not accepted.' : failure.message;
      input.setAttribute('aria-invalid', 'true');
      button.disabled = false;
      input.focus();
    }
  });
  container.append(form);
  input.focus();
}
