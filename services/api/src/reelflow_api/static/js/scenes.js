// What each scene of a project asked for (GET /v1/projects/{id}/scenes): its card shows it.

import { h } from './dom.js';

/** the characters of a prompt a card shows at first; the whole prompt opens under them */
export const PROMPT_SHOWN = 100;

/** How many times, and how long apart (ms), a read that failed for a reason that may pass
 * (no answer, a 5xx, a 429) is tried again. */
const TRIES = 3;
const RETRY_MS = 5000;

/** ``text`` cut to ``most`` characters (whole ones: never half an emoji), ending in "…". */
export function shortened(text, most = PROMPT_SHOWN) {
  const characters = Array.from(text);
  if (characters.length <= most) return text;
  return `${characters.slice(0, most - 1).join('').trimEnd()}…`;
}

/** A card's lines for what its scene asked for: the prompt (as text, like every title), its
 * negative prompt when it has one, then its duration and size. Nothing before the scenes are
 * known. */
export function sceneLines(scene) {
  if (!scene) return [];
  const lines = [promptLine(scene.prompt, 'prompt')];
  if (scene.negative_prompt) lines.push(promptLine(`Negative: ${scene.negative_prompt}`, 'prompt negative-prompt'));
  lines.push(h('p', { class: 'muted scene-meta' }, `${scene.duration} s · ${scene.width}×${scene.height}`));
  return lines;
}

/** ``text`` whole; a long one shortened, opening to the whole of it by click, touch or keyboard
 * (a disclosure: a title attribute is read on hover only). */
function promptLine(text, className) {
  const short = shortened(text);
  if (short === text) return h('p', { class: className }, text);
  // Open, the summary says "Show less" rather than repeat the start of what it opened.
  return h('details', { class: className },
    h('summary', {}, h('span', { class: 'prompt-short' }, short), h('span', { class: 'prompt-less' }, 'Show less')),
    h('p', { class: 'prompt-whole' }, text));
}

/** Read the project's scenes once (they never change), and hand them to ``onScenes`` as a Map
 * of scene_index -> scene. A project that is not there says so elsewhere (its status): here
 * the cards just show no prompt. Returns what stops it (the view unmounted). */
export function loadScenes(api, projectId, onScenes) {
  let stopped = false;
  let timer = null;
  const read = async (triesLeft) => {
    try {
      const answer = await api.getScenes(projectId);
      if (!stopped) onScenes(new Map(answer.scenes.map((scene) => [scene.scene_index, scene])));
    } catch (error) {
      const passing = error.status === 0 || error.status === 429 || error.status >= 500;
      if (!stopped && passing && triesLeft > 1) timer = setTimeout(() => read(triesLeft - 1), RETRY_MS);
    }
  };
  read(TRIES);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
