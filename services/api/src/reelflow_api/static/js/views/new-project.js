// A new project: title, model, and scenes (prompt, negative prompt, duration, size). The API
// validates; each error of its 422 answer is shown next to the field it names. A known model's
// durations (GET /v1/config, models) are offered as the duration's choices, and a negative
// prompt only to a model that takes one (or one the API does not know: Runware judges).

import { h, formatDate } from '../dom.js';

export function mountNewProject(container, { api, config }) {
  const { defaults, limits } = config;
  const scenes = h('ol', { class: 'scenes', id: 'scenes', 'aria-describedby': 'error-scenes' });
  const addScene = h('button', { type: 'button', onclick: () => { appendScene(); renumber(); focusLastPrompt(); } }, '+ Add scene');
  const formError = h('p', { class: 'alert', role: 'alert', tabindex: '-1', hidden: true });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create project');
  const models = config.models ?? {};
  const modelInput = h('input', { id: 'model', name: 'model', list: 'known-models', placeholder: `default: ${defaults.model}`, spellcheck: 'false', oninput: () => showModelRules() });
  const durationChoices = h('datalist', { id: 'model-durations' });

  const form = h('form', { class: 'card', novalidate: true },
    h('h1', { tabindex: '-1' }, 'New project'),
    formError,
    field('title', 'Title', h('input', { id: 'title', name: 'title', maxlength: limits.title_chars, placeholder: 'e.g. Trip to Lisbon' })),
    field('model', 'Model', modelInput, modelHint(defaults.model)),
    h('datalist', { id: 'known-models' }, Object.keys(models).map((name) => h('option', { value: name }))),
    durationChoices,
    h('fieldset', {},
      h('legend', {}, `Scenes (1 to ${limits.scenes})`),
      scenes,
      h('p', { id: 'error-scenes', class: 'field-error' }),
      addScene),
    h('div', { class: 'actions' }, submit, h('a', { class: 'button', href: '#/' }, 'Cancel')),
  );

  function appendScene() {
    scenes.append(h('li', { class: 'scene' }));
  }

  /** Ids follow the API's error locations (scenes.0.prompt), so errors find their field. */
  function renumber() {
    [...scenes.children].forEach((item, index) => {
      const values = Object.fromEntries([...item.querySelectorAll('[name]')].map((el) => [el.name, el.value]));
      item.replaceChildren(...sceneFields(index, values));
    });
    addScene.disabled = scenes.children.length >= limits.scenes;
  }

  function sceneFields(index, values) {
    const id = (name) => `scenes.${index}.${name}`;
    const input = (name, props) => h('input', {
      id: id(name), name, type: 'number', inputmode: 'numeric', value: values[name] ?? '', ...props,
    });
    const remove = scenes.children.length > 1 && h('button', {
      type: 'button', class: 'quiet', 'aria-label': `Remove scene ${index}`,
      onclick: () => { scenes.children[index].remove(); renumber(); focusLastPrompt(); },
    }, 'Remove');
    const prompt = h('textarea', {
      id: id('prompt'), name: 'prompt', rows: 2, minlength: limits.prompt_min_chars, maxlength: limits.prompt_chars, required: true,
      placeholder: 'e.g. tram climbing a steep street at dawn',
    });
    prompt.value = values.prompt ?? '';
    const negative = h('textarea', {
      id: id('negative_prompt'), name: 'negative_prompt', rows: 1, placeholder: 'e.g. blurry, text on screen',
    });
    negative.value = values.negative_prompt ?? '';
    const negativeField = field(id('negative_prompt'), 'Negative prompt (optional)', negative, 'What the clip should not show.');
    negativeField.classList.add('negative-field');
    negativeField.hidden = !takesNegativePrompt();
    const duration = input('duration', { min: limits.duration_min_exclusive, max: limits.duration_max, step: 'any', list: 'model-durations', placeholder: `default ${modelRules()?.default_duration ?? defaults.duration}`, inputmode: 'decimal' });
    const durationField = field(id('duration'), 'Duration (s)', duration);
    refuseAtOrBelow(duration, limits.duration_min_exclusive, durationField.querySelector('.field-error'));
    return [
      h('div', { class: 'scene-head' }, h('span', { class: 'scene-number' }, `Scene ${index}`), remove),
      field(id('prompt'), 'Prompt', prompt),
      negativeField,
      h('div', { class: 'row' },
        durationField,
        field(id('width'), 'Width', input('width', { min: limits.size_min, max: limits.size_max, step: limits.size_step, placeholder: `default ${defaults.width}` })),
        field(id('height'), 'Height', input('height', { min: limits.size_min, max: limits.size_max, step: limits.size_step, placeholder: `default ${defaults.height}` }))),
    ];
  }

  /** The rules the API checks a scene of the chosen model with; null for a model it does not know. */
  function modelRules() {
    return models[modelInput.value.trim() || defaults.model] ?? null;
  }

  /** Whether the chosen model takes a negative prompt: as the API's rules say, and yes for a
   * model it does not know (Runware judges). */
  function takesNegativePrompt() {
    return modelRules()?.negative_prompt ?? true;
  }

  function modelHint(model) {
    const durations = models[model]?.durations;
    const made = durations ? ` Makes clips of ${durations.join(', ')} s.` : '';
    return `Runware model (AIR id). Empty: ${defaults.model}.${made}`;
  }

  /** The chosen model's durations as the duration's choices, its default as the placeholder. */
  function showModelRules() {
    const rules = modelRules();
    durationChoices.replaceChildren(...(rules?.durations ?? []).map((value) => h('option', { value })));
    form.querySelector('[id="hint-model"]').textContent = modelHint(modelInput.value.trim() || defaults.model);
    for (const duration of form.querySelectorAll('[name="duration"]')) {
      duration.placeholder = `default ${rules?.default_duration ?? defaults.duration}`;
    }
    // Hidden, what was typed stays (for another model) but is not sent.
    for (const negative of form.querySelectorAll('.negative-field')) negative.hidden = !takesNegativePrompt();
  }

  function focusLastPrompt() {
    scenes.lastElementChild?.querySelector('textarea')?.focus();
  }

  function body() {
    const value = (id) => form.querySelector(`[id="${id}"]`).value.trim();
    const project = {
      title: value('title'),
      scenes: [...scenes.children].map((_, index) => {
        const scene = { prompt: form.querySelector(`[id="scenes.${index}.prompt"]`).value };
        const negative = form.querySelector(`[id="scenes.${index}.negative_prompt"]`);
        if (!negative.closest('.negative-field').hidden && negative.value.trim()) scene.negative_prompt = negative.value;
        for (const name of ['duration', 'width', 'height']) {
          const raw = value(`scenes.${index}.${name}`);
          if (raw !== '') scene[name] = Number(raw);
        }
        return scene;
      }),
    };
    if (value('model')) project.model = value('model');
    return project;
  }

  function clearErrors() {
    formError.hidden = true;
    for (const element of form.querySelectorAll('.field-error')) element.textContent = '';
    for (const element of form.querySelectorAll('[aria-invalid]')) element.removeAttribute('aria-invalid');
  }

  /** Each error next to its field (loc ["body", "scenes", 0, "prompt"] -> #scenes.0.prompt). */
  function showErrors(error) {
    const unplaced = [];
    for (const { loc = [], msg } of error.errors) {
      const path = (loc[0] === 'body' ? loc.slice(1) : loc).join('.');
      const slot = form.querySelector(`[id="error-${path || 'form'}"]`);
      if (!slot) {
        unplaced.push(path ? `${path}: ${msg}` : msg);
        continue;
      }
      slot.textContent = slot.textContent ? `${slot.textContent}; ${msg}` : msg;
      form.querySelector(`[id="${path}"]`)?.setAttribute('aria-invalid', 'true');
    }
    if (unplaced.length || !error.errors.length) {
      // A limit names itself and, for a budget, when it resets.
      const resets = error.resetsAt ? ` It resets ${formatDate(error.resetsAt)}.` : '';
      formError.textContent = unplaced.length ? unplaced.join('\n') : `${error.message}${resets}`;
      formError.hidden = false;
    }
    (form.querySelector('[aria-invalid="true"]') ?? formError).focus?.();
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors();
    submit.disabled = true;
    try {
      const project = await api.createProject(body());
      location.hash = `#/projects/${encodeURIComponent(project.project_id)}`;
    } catch (error) {
      submit.disabled = false;
      showErrors(error);
    }
  });

  appendScene();
  renumber();
  showModelRules();
  container.append(form);
}

/** A number input's `min` is inclusive: a bound the API excludes (a duration of 0) is
 * refused as the value changes, shown as the API's errors are (the form is novalidate: the
 * input's own validity alone shows nothing): the message in the field's error `slot`, and
 * aria-invalid. An error of the API's there stays until the next submit. */
function refuseAtOrBelow(control, bound, slot) {
  const message = `Must be more than ${bound}.`;
  const check = () => {
    const refused = control.value !== '' && Number(control.value) <= bound;
    control.setCustomValidity(refused ? message : '');
    if (refused) {
      slot.textContent = message;
      control.setAttribute('aria-invalid', 'true');
    } else if (slot.textContent === message) {
      slot.textContent = '';
      control.removeAttribute('aria-invalid');
    }
  };
  control.addEventListener('input', check);
  check();
}

/** A label, the control, an optional hint, and the slot its errors go to. */
function field(id, label, control, hint = '') {
  const described = [hint && `hint-${id}`, `error-${id}`].filter(Boolean).join(' ');
  control.setAttribute('aria-describedby', described);
  return h('div', { class: 'field' },
    h('label', { for: id }, label),
    control,
    hint && h('p', { id: `hint-${id}`, class: 'muted' }, hint),
    h('p', { id: `error-${id}`, class: 'field-error' }));
}
