"""The dashboard in a real browser (Debian's Chromium) against the whole stack as processes.

Each test signs in as a tenant of its own on one shared stack, then looks only at
what a person would see: text, cards, badges, playing videos. Screenshots land in
``test-results/browser/``; no test may leave an unexpected console error.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx
import pytest

from tests.e2e.browser import (
    OUTPUT_DIR,
    WEBSOCKET_REFUSED,
    Console,
    chromium,
    failed_load,
    require_chromium,
)

require_chromium()

from playwright.sync_api import (  # noqa: E402
    Browser,
    Page,
    WebSocket,
    WebSocketRoute,
    expect,
)

from reelflow_devtools.launcher import Stack  # noqa: E402
from tests.waiting import PROCESS_DEADLINE_S, PROCESS_PAUSE_S, eventually_returns  # noqa: E402

pytestmark = pytest.mark.e2e

T = TypeVar("T")

DEADLINE_MS = PROCESS_DEADLINE_S * 1000
#: feeds the page's own reducer messages out of order; returns what it showed after each
REDUCER_CHECK = Path(__file__).with_name("reducer_check.js")
#: the same for cost totals, whole clips and a retried scene's earlier tasks
REDUCER_COST_CHECK = Path(__file__).with_name("reducer_cost_check.js")
#: the same for reelflow's own copy of a video (clip.stored)
REDUCER_STORED_CHECK = Path(__file__).with_name("reducer_stored_check.js")
#: the same for the copy of an earlier task's video (clip.attempt_stored)
REDUCER_ATTEMPT_STORED_CHECK = Path(__file__).with_name("reducer_attempt_stored_check.js")
#: the page's live connection meeting the notifier's subscribe rate limit, on a stand-in socket
LIVE_RESUBSCRIBE_CHECK = Path(__file__).with_name("live_resubscribe_check.js")
#: the spend line's text for answers of GET /v1/usage, on a fixed day
USAGE_CHECK = Path(__file__).with_name("usage_check.js")


#: counts the changes of each element named (by id) in ``window.__assigned``
COUNT_ASSIGNMENTS = """ids => {
  window.__assigned = Object.fromEntries(ids.map((id) => [id, 0]));
  const changes = { childList: true, characterData: true, subtree: true };
  for (const id of ids) {
    const counted = new MutationObserver((records) => { window.__assigned[id] += records.length; });
    counted.observe(document.getElementById(id), changes);
  }
}"""


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end; in a thread, as Playwright's own loop owns this one."""
    with ThreadPoolExecutor(max_workers=1) as worker:
        return worker.submit(asyncio.run, coroutine).result()


@pytest.fixture(scope="module")
def browser(shared_stack: Stack) -> Iterator[Browser]:
    # After the stack (which starts with asyncio.run): Playwright's loop then owns the thread.
    with chromium() as browser:
        yield browser


@dataclass
class Dashboard:
    """A signed-out browser tab on the stack's dashboard, and the tenant's key."""

    page: Page
    console: Console
    stack: Stack
    key: str
    name: str
    #: every WebSocket frame the page sent and received, parsed
    sent: list[dict[str, Any]] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    #: every WebSocket the page opened, the latest last
    sockets: list[WebSocket] = field(default_factory=list)

    def record_frames(self) -> None:
        def on_socket(socket: WebSocket) -> None:
            self.sockets.append(socket)
            socket.on("framesent", lambda payload: self.sent.append(json.loads(payload)))
            socket.on("framereceived", lambda payload: self.received.append(json.loads(payload)))

        self.page.on("websocket", on_socket)

    def open(self, fragment: str = "") -> None:
        self.page.goto(f"{self.stack.api_url}/{fragment}")

    def sign_in(self, *, live: bool = True) -> None:
        """Sign in with the tenant's key; then wait for the WebSocket, unless ``live`` is off."""
        self.page.get_by_label("API key").fill(self.key)
        self.page.keyboard.press("Enter")
        if live:
            expect(self.page.locator("#live-status")).to_have_text("Live")
        else:
            expect(self.page.locator(".topbar")).to_be_visible()

    def until_received(self, frame_type: str) -> dict[str, Any]:
        """The first frame of ``frame_type`` the page received, waited for if none has yet.

        "Live" means the WebSocket is open, not that its snapshot has come: the page draws
        from REST first, so nothing on it tells the two apart.
        """

        def first() -> dict[str, Any] | None:
            return next((frame for frame in self.received if frame["type"] == frame_type), None)

        if first() is None:
            self.sockets[-1].wait_for_event(
                "framereceived",
                predicate=lambda payload: json.loads(payload)["type"] == frame_type,
                timeout=DEADLINE_MS,
            )
        frame = first()
        assert frame is not None, self.received
        return frame

    def refuse_websockets(self) -> Callable[[], None]:
        """Close every WebSocket the page opens, unopened, as a notifier that cannot be
        reached would; returns what lets the next ones through to the notifier."""
        allowed = False

        def route(socket: WebSocketRoute) -> None:
            if allowed:
                socket.connect_to_server()
            else:
                socket.close()

        def allow() -> None:
            nonlocal allowed
            allowed = True

        self.page.route_web_socket(re.compile(r"/v1/ws\?"), route)
        return allow

    def shot(self, step: str) -> None:
        OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=OUTPUT_DIR / f"{self.name}-{step}.png", full_page=True)

    def create(self, *prompts: str, title: str = "") -> str:
        """A project made through the API (not the page); its id."""
        answer = httpx.post(
            f"{self.stack.api_url}/v1/projects",
            headers={"Authorization": f"Bearer {self.key}"},
            json={"title": title, "scenes": [{"prompt": prompt} for prompt in prompts]},
        )
        assert answer.status_code == 202, answer.text
        project_id: str = answer.json()["project_id"]
        return project_id

    def status(self, project_id: str) -> dict[str, Any]:
        answer = httpx.get(
            f"{self.stack.api_url}/v1/projects/{project_id}",
            headers={"Authorization": f"Bearer {self.key}"},
        )
        answer.raise_for_status()
        status: dict[str, Any] = answer.json()
        return status

    def mark_document(self) -> None:
        """Tag the loaded document: still tagged later means the page was never reloaded."""
        self.page.evaluate("window.__sameDocument = true")

    def assert_same_document(self) -> None:
        assert self.page.evaluate("window.__sameDocument === true"), "the page was reloaded"

    def assert_no_console_errors(self, *allowed: str) -> None:
        assert self.console.unexpected(allowed) == []


@pytest.fixture
def dashboard(
    browser: Browser, shared_stack: Stack, request: pytest.FixtureRequest
) -> Iterator[Dashboard]:
    name = request.node.name.removeprefix("test_")
    key = run_async(shared_stack.issue_key(f"browser-{name}"))
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    context.set_default_timeout(20_000)
    page = context.new_page()
    console = Console()
    console.watch(page)
    dashboard = Dashboard(page, console, shared_stack, key, name)
    dashboard.record_frames()
    try:
        yield dashboard
    finally:
        context.close()


def clip(page: Page, scene_index: int) -> Any:
    return page.locator(f'.clip[data-scene-index="{scene_index}"]')


# --- the tests -------------------------------------------------------------------------


def test_a_project_created_from_the_form_plays_every_clip_live(dashboard: Dashboard) -> None:
    page = dashboard.page
    dashboard.open()
    dashboard.sign_in()
    page.get_by_role("link", name="New project").first.click()
    page.get_by_label("Title").fill("Trip to Lisbon")
    page.get_by_label("Prompt", exact=True).fill(
        "tram climbing a steep street at dawn [sim:latency=30]"
    )
    page.get_by_role("button", name="+ Add scene").click()
    page.locator('[id="scenes.1.prompt"]').fill("sunset over the river [sim:latency=50]")
    page.get_by_role("button", name="+ Add scene").click()
    page.locator('[id="scenes.2.prompt"]').fill("fado singer in a small bar [sim:latency=40]")
    page.locator('[id="scenes.2.duration"]').fill("6")
    # The API's bounds (GET /v1/config): more than 0 (a form's min is inclusive), at most 60.
    expect(page.locator('[id="scenes.2.duration"]')).to_have_attribute("min", "0")
    expect(page.locator('[id="scenes.2.duration"]')).to_have_attribute("max", "60")
    # Numbered as the API's scene_index (and its errors' scenes.N), the CLI and the admin tool.
    expect(page.locator(".scene-number")).to_have_text(["Scene 0", "Scene 1", "Scene 2"])
    dashboard.shot("form")
    page.get_by_role("button", name="Create project").click()

    expect(page).to_have_url(re.compile(r"#/projects/[0-9a-f-]+$"))
    dashboard.mark_document()
    expect(page.get_by_role("heading", name="Trip to Lisbon")).to_be_visible()
    expect(page.locator(".clip")).to_have_count(3)
    expect(page.locator("#finished")).to_have_text(
        "Finished: every clip is ready.", timeout=DEADLINE_MS
    )
    expect(page.locator("#totals")).to_have_text("3 completed / 0 pending / 0 failed of 3 clips")
    # Told live, clip by clip, the page's total is the API's.
    project_id = page.url.rsplit("/", 1)[-1]
    expect(page.locator(".meta .cost")).to_have_text(cost_text(dashboard.status(project_id)))
    assert page.locator(".clip").evaluate_all("cards => cards.map(c => c.dataset.sceneIndex)") == [
        "0",
        "1",
        "2",
    ]
    expect(page.locator(".clip .scene-number")).to_have_text(["Scene 0", "Scene 1", "Scene 2"])
    expect(page.locator('.clip[data-status="success"] video')).to_have_count(3)
    # Every video has loaded a playable source and is actually playing.
    page.mouse.move(0, 0)  # no hover controls over the videos in the screenshot
    page.wait_for_function(
        """() => [...document.querySelectorAll('video')].every(v =>
             v.readyState >= 2 && v.duration > 0 && v.currentTime > 0 && !v.paused && !v.error)"""
    )
    dashboard.assert_same_document()
    # The README's picture (docs/dashboard.png is a copy): sized for it, and after Chromium
    # has faded the controls it shows over a video that starts playing (about 3 s).
    page.set_viewport_size({"width": 960, "height": 640})
    page.wait_for_timeout(3500)
    dashboard.shot("finished")

    page.set_viewport_size({"width": 390, "height": 844})
    expect(page.get_by_role("button", name="Retry failed")).to_be_hidden()
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, "the page scrolls sideways on a phone"
    dashboard.shot("finished-phone")
    dashboard.assert_no_console_errors()


def test_a_finished_clip_waits_to_be_played_when_less_motion_is_asked(
    dashboard: Dashboard,
) -> None:
    page = dashboard.page
    page.emulate_media(reduced_motion="reduce")
    project_id = dashboard.create("a tram [sim:latency=10]", title="Still")
    run_async(_until_finished(dashboard, project_id))
    dashboard.open(f"#/projects/{project_id}")
    dashboard.sign_in()

    video = clip(page, 0).locator("video")
    expect(video).to_have_count(1)
    # Loaded far enough to have started, were it to autoplay: it has not, and will not.
    video.evaluate(
        "v => new Promise((loaded) => v.readyState >= 3 ? loaded() : v.oncanplay = loaded)"
    )
    assert video.evaluate("v => [v.autoplay, v.loop, v.paused, v.currentTime]") == [
        False,
        False,
        True,
        0,
    ]
    # Played, it plays (muted here: a play() of a script's own must be, a person's need not).
    video.evaluate("v => { v.muted = true; return v.play(); }")
    page.wait_for_function("v => v.currentTime > 0 && !v.paused", arg=video.element_handle())
    dashboard.assert_no_console_errors()


def test_the_forms_placeholders_read_as_examples_or_defaults_never_as_values(
    dashboard: Dashboard,
) -> None:
    page = dashboard.page
    dashboard.open()
    dashboard.sign_in()
    page.get_by_role("link", name="New project").first.click()

    expect(page.get_by_label("Title")).to_have_attribute("placeholder", "e.g. Trip to Lisbon")
    expect(page.get_by_label("Prompt", exact=True)).to_have_attribute(
        "placeholder", re.compile(r"^e\.g\. ")
    )
    for name in ("model", "scenes.0.duration", "scenes.0.width", "scenes.0.height"):
        expect(page.locator(f'[id="{name}"]')).to_have_attribute(
            "placeholder", re.compile(r"^default:? \S+$")
        )
    # Set apart from typed text by more than a shade of grey.
    style = page.get_by_label("Title").evaluate(
        "el => getComputedStyle(el, '::placeholder').fontStyle"
    )
    assert style == "italic"
    dashboard.assert_no_console_errors()


#: the contrast ratio (WCAG 2) of two computed CSS colours, an alpha (a placeholder's opacity)
#: laid over the second
CONTRAST = """([front, back, alpha]) => {
  const rgb = (css) => css.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const [f, b] = [rgb(front), rgb(back)];
  const over = f.map((c, i) => c * alpha + b[i] * (1 - alpha));
  const luminance = (c) => {
    const linear = (v) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
    const [r, g, bl] = c.map((v) => linear(v / 255));
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [x, y] = [luminance(over), luminance(b)].sort((p, q) => q - p);
  return (x + 0.05) / (y + 0.05);
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_forms_fields_and_placeholders_stand_out_enough(
    dashboard: Dashboard, scheme: Literal["light", "dark"]
) -> None:
    """WCAG: a field's edge 3:1 against what is around it and its own background, its
    placeholder 4.5:1 (a placeholder is text to read)."""
    page = dashboard.page
    page.emulate_media(color_scheme=scheme)
    dashboard.open("#/new")
    dashboard.sign_in()
    title = page.get_by_label("Title")
    colours = title.evaluate(
        """el => {
          const field = getComputedStyle(el);
          const placeholder = getComputedStyle(el, '::placeholder');
          return {
            border: field.borderTopColor, background: field.backgroundColor,
            card: getComputedStyle(el.closest('.card')).backgroundColor,
            placeholder: placeholder.color, opacity: Number(placeholder.opacity),
          };
        }"""
    )

    def contrast(front: str, back: str, alpha: float = 1.0) -> float:
        ratio: float = page.evaluate(CONTRAST, [front, back, alpha])
        return ratio

    assert contrast(colours["border"], colours["card"]) >= 3, colours
    assert contrast(colours["border"], colours["background"]) >= 3, colours
    placeholder = contrast(colours["placeholder"], colours["background"], colours["opacity"])
    assert placeholder >= 4.5, colours
    dashboard.assert_no_console_errors()


def test_the_form_offers_the_durations_the_chosen_model_makes(dashboard: Dashboard) -> None:
    page = dashboard.page
    dashboard.open()
    dashboard.sign_in()
    page.get_by_role("link", name="New project").first.click()
    page.get_by_role("button", name="+ Add scene").click()
    duration = page.locator('[id="scenes.1.duration"]')
    choices = page.locator("datalist#model-durations option")

    # The default model, as GET /v1/config gives its rules: what the API accepts.
    expect(page.locator('[id="hint-model"]')).to_have_text(
        "Runware model (AIR id). Empty: google:3@3. Makes clips of 4, 6, 7, 8 s."
    )
    expect(duration).to_have_attribute("list", "model-durations")
    assert choices.evaluate_all("options => options.map(o => o.value)") == ["4", "6", "7", "8"]
    expect(page.get_by_label("Prompt", exact=True).first).to_have_attribute("minlength", "2")
    # Kling makes no 4 s clip: its durations, and its shortest as every scene's default.
    page.get_by_label("Model").fill("klingai:5@3")
    expect(choices).to_have_count(2)
    assert choices.evaluate_all("options => options.map(o => o.value)") == ["5", "10"]
    expect(duration).to_have_attribute("placeholder", "default 5")
    expect(page.locator('[id="hint-model"]')).to_have_text(
        "Runware model (AIR id). Empty: google:3@3. Makes clips of 5, 10 s."
    )
    # A model the API does not know: Runware judges, nothing is offered.
    page.get_by_label("Model").fill("acme:video@1")
    expect(choices).to_have_count(0)
    expect(duration).to_have_attribute("placeholder", "default 4")
    dashboard.assert_no_console_errors()


def test_a_generating_clip_shows_runwares_progress(dashboard: Dashboard) -> None:
    page = dashboard.page
    dashboard.open()
    dashboard.sign_in()
    page.get_by_role("link", name="New project").first.click()
    page.get_by_label("Title").fill("A long take")
    # 10 s at the stack's speedup: checked about every second, its progress stored per 25 points.
    page.get_by_label("Prompt", exact=True).fill("the harbour from dawn to noon [sim:latency=200]")
    page.get_by_role("button", name="Create project").click()

    bar = page.locator('.clip[data-status="processing"] progress[max="100"]')
    expect(bar).to_have_count(1, timeout=DEADLINE_MS)
    expect(page.locator(".clip .progress-text")).to_have_text(re.compile(r"^\d{1,2} %$"))
    assert 25 <= int(bar.get_attribute("value") or 0) <= 99
    dashboard.shot("progress")
    expect(page.locator("#finished")).to_have_text(
        "Finished: every clip is ready.", timeout=DEADLINE_MS
    )
    expect(page.locator(".clip progress")).to_have_count(0)
    dashboard.assert_no_console_errors()


def test_the_apis_errors_show_next_to_their_fields(dashboard: Dashboard) -> None:
    page = dashboard.page
    dashboard.open("#/new")
    dashboard.sign_in()
    expect(page.get_by_role("heading", name="New project")).to_be_visible()
    page.locator('[id="scenes.0.prompt"]').fill("   ")
    page.get_by_role("button", name="+ Add scene").click()
    page.locator('[id="scenes.1.prompt"]').fill("a tram")
    page.locator('[id="scenes.1.width"]').fill("1001")
    page.get_by_role("button", name="Create project").click()

    expect(page.locator('[id="error-scenes.0.prompt"]')).to_contain_text("at least 2 characters")
    expect(page.locator('[id="error-scenes.1.width"]')).to_contain_text("multiple of 8")
    expect(page.locator('[id="scenes.0.prompt"]')).to_have_attribute("aria-invalid", "true")
    expect(page.locator('[id="scenes.1.width"]')).to_have_attribute("aria-invalid", "true")
    expect(page.locator('[id="error-scenes.1.prompt"]')).to_be_empty()
    dashboard.shot("errors")
    assert page.url.endswith("#/new")

    page.locator('[id="scenes.0.prompt"]').fill("a quiet square [sim:latency=10]")
    page.locator('[id="scenes.1.width"]').fill("1280")
    page.get_by_role("button", name="Create project").click()
    expect(page).to_have_url(re.compile(r"#/projects/[0-9a-f-]+$"))
    expect(page.locator(".clip")).to_have_count(2)
    dashboard.assert_no_console_errors(failed_load(422))


def test_a_duration_or_size_the_model_does_not_make_shows_what_it_allows(
    dashboard: Dashboard,
) -> None:
    page = dashboard.page
    dashboard.open("#/new")
    dashboard.sign_in()
    page.locator('[id="scenes.0.prompt"]').fill("a tram")
    page.locator('[id="scenes.0.duration"]').fill("5")
    page.locator('[id="scenes.0.width"]').fill("640")
    page.locator('[id="scenes.0.height"]').fill("480")
    page.get_by_role("button", name="Create project").click()

    expect(page.locator('[id="error-scenes.0.duration"]')).to_have_text(
        "not a duration this model makes: google:3@3 (allowed: 4, 6, 7, 8)"
    )
    expect(page.locator('[id="error-scenes.0.width"]')).to_contain_text(
        "(allowed: 1280x720, 720x1280, 1920x1080, 1080x1920)"
    )
    expect(page.locator('[id="scenes.0.duration"]')).to_have_attribute("aria-invalid", "true")
    dashboard.shot("allowed")
    assert page.url.endswith("#/new")
    dashboard.assert_no_console_errors(failed_load(422))


def test_the_form_refuses_a_duration_of_0_itself_and_says_so_by_the_field(
    dashboard: Dashboard,
) -> None:
    page = dashboard.page
    dashboard.open("#/new")
    dashboard.sign_in()
    duration = page.locator('[id="scenes.0.duration"]')
    error = page.locator('[id="error-scenes.0.duration"]')
    validity = "el => [el.validity.valid, el.validationMessage]"

    # The form is novalidate: the input's own validity alone showed a person nothing.
    duration.fill("0")  # min="0" alone would take it: an input's min is inclusive
    assert duration.evaluate(validity) == [False, "Must be more than 0."]
    expect(error).to_be_visible()
    expect(error).to_have_text("Must be more than 0.")
    expect(duration).to_have_attribute("aria-invalid", "true")
    page.get_by_role("button", name="+ Add scene").click()  # the scenes are drawn anew
    assert duration.evaluate(validity) == [False, "Must be more than 0."]
    expect(error).to_have_text("Must be more than 0.")
    expect(duration).to_have_attribute("aria-invalid", "true")
    dashboard.shot("duration-0")

    duration.fill("0.5")
    assert duration.evaluate(validity) == [True, ""]
    expect(error).to_be_hidden()
    expect(duration).not_to_have_attribute("aria-invalid", "true")
    dashboard.assert_no_console_errors()


def test_a_failed_clip_is_retried_from_the_page(dashboard: Dashboard) -> None:
    page = dashboard.page
    # The simulator fails this prompt every time, so the retried task fails again:
    # what is checked is that a new task replaces the failed one, live, on the page.
    failing = "fado singer [sim:latency=50][sim:fail=timeoutProvider]"
    project_id = dashboard.create("a tram [sim:latency=10]", failing, title="Retry me")
    dashboard.open(f"#/projects/{project_id}")
    dashboard.sign_in()
    dashboard.mark_document()

    expect(page.locator("#finished")).to_have_text(
        "Finished, but some clips failed.", timeout=DEADLINE_MS
    )
    failed = clip(page, 1)
    expect(failed).to_have_attribute("data-status", "failed")
    expect(failed.locator(".clip-error")).to_contain_text("timeoutProvider")
    first_task = failed.get_attribute("data-task-uuid")
    dashboard.shot("failed")

    # By keyboard: the button hides itself once the clip is retried; its place goes to what
    # the retry did, not to the page's <body>.
    page.get_by_role("button", name="Retry failed").press("Enter")
    expect(page.locator("#action-result")).to_have_text("Retried 1 clip.")
    expect(page.locator("#action-result")).to_be_focused()
    expect(failed).not_to_have_attribute("data-task-uuid", first_task or "")
    expect(failed).to_have_attribute("data-status", re.compile("queued|processing"))
    expect(page.locator("#finished")).to_be_hidden()
    expect(page.get_by_role("button", name="Retry failed")).to_be_hidden()
    expect(page.locator("#action-result")).to_be_focused()
    expect(page.get_by_role("button", name="Cancel")).to_be_visible()
    dashboard.shot("retrying")
    expect(failed.locator(".attempts")).to_have_text("Earlier task: failed (timeoutProvider)")
    expect(failed).to_have_attribute("data-status", "failed", timeout=DEADLINE_MS)
    expect(page.locator("#finished")).to_be_visible()
    expect(page.locator("#totals")).to_have_text("1 completed / 0 pending / 1 failed of 2 clips")

    # Runware (the simulator) got a second task for the scene, and it ran to its end.
    second_task = failed.get_attribute("data-task-uuid")
    assert second_task not in (None, first_task)
    truth = run_async(dashboard.stack.sim_get(f"/__sim/tasks/{second_task}"))
    assert (truth["accepted"], truth["state"]) == (True, "error")
    # Both tasks are on the card, as the API has them; so after a reload too.
    earlier = dashboard.status(project_id)["results"][1]["attempts"]
    assert [attempt["task_uuid"] for attempt in earlier] == [first_task]
    expect(failed.locator(".attempts")).to_have_text("Earlier task: failed (timeoutProvider)")
    dashboard.assert_same_document()
    page.reload()
    expect(clip(page, 1).locator(".attempts")).to_have_text(
        "Earlier task: failed (timeoutProvider)"
    )
    dashboard.assert_no_console_errors()


def test_each_card_shows_what_its_scene_asked_for_after_a_reload_too(
    dashboard: Dashboard,
) -> None:
    page = dashboard.page
    markup = "<b>tram</b> at dawn [sim:latency=10]"
    # Longer than a card shows: cut short, whole a touch or a key away. It fails: which prompt?
    failing = "a fado singer in a small bar, " * 6 + "[sim:latency=10][sim:fail=timeoutProvider]"
    project_id = dashboard.create(markup, failing, title="What was asked")
    defaults = httpx.get(f"{dashboard.stack.api_url}/v1/config").json()["defaults"]
    dashboard.open(f"#/projects/{project_id}")
    dashboard.sign_in()

    expect(clip(page, 0).locator(".prompt")).to_have_text(markup)
    expect(clip(page, 0).locator(".prompt b")).to_have_count(0)  # text, never markup
    expect(clip(page, 0).locator(".negative-prompt")).to_have_count(0)
    size = f"{defaults['width']}\N{MULTIPLICATION SIGN}{defaults['height']}"
    expect(clip(page, 0).locator(".scene-meta")).to_have_text(
        f"{defaults['duration']:g} s · {size}"
    )
    failed = clip(page, 1)
    expect(failed).to_have_attribute("data-status", "failed", timeout=DEADLINE_MS)
    summary = failed.locator(".prompt summary")
    whole = failed.locator(".prompt .prompt-whole")
    shown = summary.inner_text()
    assert shown.endswith("…"), shown
    assert failing.startswith(shown[:-1].rstrip()), shown
    assert len(shown) < len(failing)
    expect(whole).to_be_hidden()
    summary.press("Enter")
    expect(whole).to_be_visible()
    expect(whole).to_have_text(failing)
    expect(summary).to_have_accessible_name("Show less")
    dashboard.shot("prompts")

    page.reload()
    clip(page, 1).locator(".prompt summary").click()
    expect(clip(page, 1).locator(".prompt .prompt-whole")).to_have_text(failing)
    expect(clip(page, 0).locator(".prompt")).to_have_text(markup)
    dashboard.assert_no_console_errors()


def test_a_negative_prompt_is_asked_for_a_model_that_takes_one_and_shown(
    dashboard: Dashboard,
) -> None:
    page = dashboard.page
    dashboard.open("#/new")
    dashboard.sign_in()
    negative = page.get_by_label("Negative prompt (optional)")
    # The default model (google:3@3) takes none: not asked.
    expect(negative).to_be_hidden()
    page.get_by_label("Model").fill("klingai:5@3")
    expect(negative).to_be_visible()
    expect(negative).to_have_attribute("placeholder", re.compile(r"^e\.g\. "))
    page.get_by_label("Title").fill("Avoiding things")
    page.get_by_label("Prompt", exact=True).fill("a tram [sim:latency=10]")
    negative.fill("blurry, " * 15 + "text on screen")
    page.get_by_role("button", name="Create project").click()

    expect(page).to_have_url(re.compile(r"#/projects/[0-9a-f-]+$"))
    said = clip(page, 0).locator(".negative-prompt")
    expect(said.locator("summary .prompt-short")).to_have_text(
        re.compile(r"^Negative: blurry, .*…$")
    )
    said.locator("summary").click()
    expect(said.locator(".prompt-whole")).to_have_text(
        "Negative: " + "blurry, " * 15 + "text on screen"
    )
    project_id = page.url.rsplit("/", 1)[-1]
    scenes = httpx.get(
        f"{dashboard.stack.api_url}/v1/projects/{project_id}/scenes",
        headers={"Authorization": f"Bearer {dashboard.key}"},
    ).json()["scenes"]
    assert scenes[0]["negative_prompt"] == "blurry, " * 15 + "text on screen"
    dashboard.assert_no_console_errors()


def test_cancel_stops_the_unfinished_clips(dashboard: Dashboard) -> None:
    page = dashboard.page
    project_id = dashboard.create(
        "a tram [sim:latency=10]", "never ends [sim:hang]", "nor this [sim:hang]", title="Stop"
    )
    dashboard.open(f"#/projects/{project_id}")
    dashboard.sign_in()
    expect(clip(page, 0)).to_have_attribute("data-status", "success", timeout=DEADLINE_MS)

    # One click only asks (the tenant pays for every clip); "No" changes nothing.
    page.get_by_role("button", name="Cancel", exact=True).click()
    question = page.get_by_role("group", name="Cancel 2 unfinished clips?")
    expect(question).to_contain_text(
        "Clips already sent to Runware, and in the first seconds after creating a project"
        " every clip, are billed all the same."
    )
    expect(page.get_by_role("button", name="No, keep them")).to_be_focused()
    dashboard.shot("cancel-asked")
    page.get_by_role("button", name="No, keep them").click()
    expect(question).to_be_hidden()
    expect(page.get_by_role("button", name="Cancel", exact=True)).to_be_focused()
    assert dashboard.status(project_id)["status"] == "generating"
    page.get_by_role("button", name="Cancel", exact=True).click()
    # A live region is said again at every assignment of its text: the cancel's burst of
    # events (a clip.updated per clip, then project.finished) is to change each once.
    expect(page.locator("#totals")).to_have_text("1 completed / 2 pending / 0 failed of 3 clips")
    page.evaluate(COUNT_ASSIGNMENTS, ["totals", "finished"])
    page.get_by_role("button", name="Yes, cancel them").press("Enter")

    expect(page.locator("#finished")).to_have_text("Cancelled.")
    # Both were at Runware (hanging there): the answer's clips_may_be_billed, said, and the
    # keyboard's place there (the question and its buttons are gone).
    expect(page.locator("#action-result")).to_be_focused()
    expect(page.locator("#action-result")).to_have_text(
        "Cancelled 2 clips; 2 of them may still be billed (already sent to Runware, or"
        " cancelled in the first seconds after the project was created)."
    )
    expect(page.locator('.clip[data-status="cancelled"]')).to_have_count(2)
    expect(page.locator(".meta .badge")).to_have_text("Cancelled")
    expect(page.locator("#totals")).to_have_text(
        "1 completed / 0 pending / 0 failed / 2 cancelled of 3 clips"
    )
    expect(page.get_by_role("button", name="Cancel")).to_be_hidden()
    expect(question).to_be_hidden()
    assert dashboard.status(project_id)["status"] == "cancelled"
    assert page.evaluate("window.__assigned") == {"totals": 1, "finished": 1}
    dashboard.shot("cancelled")
    dashboard.assert_no_console_errors()


def test_cancel_asks_about_one_unfinished_clip_as_it(dashboard: Dashboard) -> None:
    page = dashboard.page
    project_id = dashboard.create("never ends [sim:hang]", title="Stop one")
    dashboard.open(f"#/projects/{project_id}")
    dashboard.sign_in()

    page.get_by_role("button", name="Cancel", exact=True).click()

    expect(page.get_by_role("group", name="Cancel 1 unfinished clip?")).to_be_visible()
    expect(page.get_by_role("button", name="No, keep it", exact=True)).to_be_focused()
    page.get_by_role("button", name="Yes, cancel it", exact=True).click()
    expect(page.locator("#finished")).to_have_text("Cancelled.")
    expect(page.locator("#action-result")).to_have_text(
        "Cancelled 1 clip; it may still be billed (already sent to Runware, or cancelled in"
        " the first seconds after the project was created)."
    )
    dashboard.assert_no_console_errors()


def test_a_cancel_question_left_open_is_gone_once_the_project_finishes(
    dashboard: Dashboard,
) -> None:
    """Asked, not answered, and the project finished otherwise (a cancel from the CLI): a
    retry reopens it offering Cancel, not with the old question."""
    page = dashboard.page
    failing = "fado singer [sim:latency=100][sim:fail=timeoutProvider]"
    project_id = dashboard.create(failing, "never ends [sim:hang]", title="Asked")
    dashboard.open(f"#/projects/{project_id}")
    dashboard.sign_in()
    page.get_by_role("button", name="Cancel", exact=True).click()
    question = page.get_by_role("group", name=re.compile(r"^Cancel \d unfinished clips?\?"))
    expect(question).to_be_visible()
    expect(clip(page, 0)).to_have_attribute("data-status", "failed", timeout=DEADLINE_MS)

    cancelled = httpx.post(
        f"{dashboard.stack.api_url}/v1/projects/{project_id}/cancel",
        headers={"Authorization": f"Bearer {dashboard.key}"},
    )
    assert cancelled.status_code == 202
    expect(page.locator("#finished")).to_be_visible()
    expect(question).to_be_hidden()
    page.get_by_role("button", name="Retry failed").click()

    expect(clip(page, 0)).to_have_attribute("data-status", re.compile("queued|processing"))
    expect(page.get_by_role("button", name="Cancel", exact=True)).to_be_visible()
    expect(question).to_be_hidden()
    dashboard.assert_no_console_errors()


def test_the_page_catches_up_after_a_notifier_restart(dashboard: Dashboard) -> None:
    page = dashboard.page
    stack = dashboard.stack
    project_id = dashboard.create(
        # 5 to 6 s at the stack's speed-up: long enough to kill the notifier before they end.
        "first [sim:latency=100]",
        "second [sim:latency=110]",
        "third [sim:latency=120]",
        title="Through a restart",
    )
    dashboard.open(f"#/projects/{project_id}")
    dashboard.sign_in()
    dashboard.mark_document()
    expect(page.locator(".clip")).to_have_count(3)
    dashboard.until_received("snapshot")

    stack.kill_hard("notifier")
    try:
        expect(page.locator("#live-status")).to_have_text("Reconnecting…")
        seen_seq = max(frame["seq"] for frame in dashboard.received if "seq" in frame)
        seen_frames = len(dashboard.received)
        # The clips finish while no notifier runs: the page cannot have seen it.
        run_async(_until_finished(dashboard, project_id))
        expect(page.locator("#finished")).to_be_hidden()
        dashboard.shot("reconnecting")
    finally:
        # The stack is shared by the module's next tests: they need it whole, even after a failure.
        stack.start_service("notifier")

    expect(page.locator("#live-status")).to_have_text("Live", timeout=DEADLINE_MS)
    expect(page.locator("#finished")).to_have_text("Finished: every clip is ready.")
    expect(page.locator("#totals")).to_have_text("3 completed / 0 pending / 0 failed of 3 clips")
    expect(page.locator('.clip[data-status="success"] video')).to_have_count(3)
    # It resumed where it was: after_seq, then only the changes it had missed, in order.
    resubscribe = {"type": "subscribe", "project_id": project_id, "after_seq": seen_seq}
    assert resubscribe in dashboard.sent
    missed = dashboard.received[seen_frames:]
    assert [frame["type"] for frame in missed][-1] == "project.finished"
    assert "snapshot" not in [frame["type"] for frame in missed]
    assert [frame["seq"] for frame in missed] == list(
        range(seen_seq + 1, seen_seq + 1 + len(missed))
    )
    dashboard.assert_same_document()
    dashboard.shot("caught-up")
    dashboard.assert_no_console_errors(WEBSOCKET_REFUSED)


def test_the_project_page_shows_its_rest_status_while_the_websocket_cannot_connect(
    dashboard: Dashboard,
) -> None:
    """Drawn from REST; the WebSocket down for seconds, a banner says so and the status is
    read again from REST meanwhile; "Reconnect now" once the notifier is reachable again."""
    page = dashboard.page
    allow_websockets = dashboard.refuse_websockets()
    project_id = dashboard.create(
        "a tram [sim:latency=10]",
        "a ferry [sim:latency=200]",  # about 10 s at the stack's speed-up
        "never ends [sim:hang]",
        title="Without a WebSocket",
    )
    run_async(_until_clip_ends(dashboard, project_id, 0))
    dashboard.open(f"#/projects/{project_id}")
    dashboard.sign_in(live=False)

    expect(page.get_by_role("heading", name="Without a WebSocket")).to_be_visible()
    expect(page.locator("#live-status")).to_have_text("Reconnecting…")
    expect(clip(page, 0)).to_have_attribute("data-status", "success")
    expect(clip(page, 1)).to_have_attribute("data-status", re.compile("queued|processing"))
    expect(page.locator(".meta .badge")).to_have_text("Generating")
    expect(page.locator("#totals")).to_have_text("1 completed / 2 pending / 0 failed of 3 clips")
    banner = page.locator("#paused")
    paused = r"^Live updates paused — showing status from \d\d?:\d\d( [AP]M)? \S+Reconnect now$"
    expect(banner).to_be_visible(timeout=DEADLINE_MS)
    expect(banner).to_have_text(re.compile(paused))
    dashboard.shot("paused")
    # The ferry ends while no WebSocket can tell the page: the next read from REST does.
    run_async(_until_clip_ends(dashboard, project_id, 1))
    expect(clip(page, 1)).to_have_attribute("data-status", "success", timeout=DEADLINE_MS)
    expect(page.locator("#totals")).to_have_text("2 completed / 1 pending / 0 failed of 3 clips")
    assert dashboard.received == []

    allow_websockets()
    page.get_by_role("button", name="Reconnect now").click()
    expect(page.locator("#live-status")).to_have_text("Live")
    expect(banner).to_be_hidden()
    expect(page.get_by_role("heading", name="Without a WebSocket")).to_be_focused()
    # Subscribed before the cancel, or the snapshot would carry it and no event would.
    dashboard.until_received("snapshot")
    cancelled = httpx.post(
        f"{dashboard.stack.api_url}/v1/projects/{project_id}/cancel",
        headers={"Authorization": f"Bearer {dashboard.key}"},
    )
    assert cancelled.status_code == 202
    expect(page.locator("#finished")).to_have_text("Cancelled.")
    expect(clip(page, 2)).to_have_attribute("data-status", "cancelled")
    # Told by the WebSocket: its snapshot, then the cancel's events.
    heard = [frame["type"] for frame in dashboard.received]
    assert heard[0] == "snapshot", heard
    assert "project.finished" in heard, heard
    dashboard.assert_no_console_errors()


def test_projects_list_pages_and_updates_live(dashboard: Dashboard) -> None:
    page = dashboard.page
    for n in range(20):
        dashboard.create(f"quick {n} [sim:latency=0]", title=f"older {n:02d}")
    newest = dashboard.create("waits [sim:hang]", title="the newest")
    dashboard.open()
    dashboard.sign_in()
    dashboard.mark_document()

    rows = page.locator(".project-row")
    expect(rows).to_have_count(20)
    expect(rows.first.locator(".project-title")).to_have_text("the newest")
    expect(rows.first.locator(".badge")).to_have_text("Generating")
    # A time says its zone: the API's days and months are UTC ones, the page's times local.
    expect(rows.first.locator("time")).to_have_text(re.compile(r"\d:\d\d [AP]M \S+$"))  # en-US
    expect(rows.nth(1).locator(".badge")).to_have_text("Completed", timeout=DEADLINE_MS)
    # Another client (here: the API directly) changes the project; the row follows live,
    # and a keyboard user's place on it stays where it was.
    rows.first.locator(".project-title").focus()
    cancelled = httpx.post(
        f"{dashboard.stack.api_url}/v1/projects/{newest}/cancel",
        headers={"Authorization": f"Bearer {dashboard.key}"},
    )
    assert cancelled.status_code == 202
    expect(rows.first.locator(".badge")).to_have_text("Cancelled")
    # Cancelled clips apart from failed ones, live and as the list answer has them (below).
    cancelled_counts = "0 done · 0 pending · 0 failed · 1 cancelled of 1"
    expect(rows.first.locator(".counts")).to_have_text(cancelled_counts)
    expect(rows.first.locator(".project-title")).to_be_focused()
    dashboard.shot("list")

    # By keyboard: the last page disables the button pressed; its place goes to the heading
    # (not to the page's <body>), and the page's number is said.
    expect(page.locator("#page-info")).to_have_text("Page 1")
    page.get_by_role("button", name="Older →").press("Enter")
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".project-title")).to_have_text("older 00")
    expect(page.get_by_role("button", name="Older →")).to_be_disabled()
    expect(page.get_by_role("heading", name="Projects")).to_be_focused()
    expect(page.get_by_role("status").filter(has_text="Page 2")).to_have_id("page-info")
    page.get_by_role("button", name="← Newer").press("Enter")
    expect(rows.first.locator(".project-title")).to_have_text("the newest")
    expect(page.get_by_role("heading", name="Projects")).to_be_focused()
    expect(rows.first.locator(".counts")).to_have_text(cancelled_counts)

    # By keyboard: the project's link, then Enter.
    rows.first.locator(".project-title").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(f"#/projects/{newest}$"))
    expect(page.get_by_role("heading", name="the newest")).to_be_focused()
    expect(page.locator(".meta .badge")).to_have_text("Cancelled")  # the list's word
    dashboard.assert_same_document()
    dashboard.assert_no_console_errors()


def test_a_long_title_in_the_list_takes_two_lines_on_a_phone_and_names_its_link_whole(
    dashboard: Dashboard,
) -> None:
    page = dashboard.page
    title = "A long walk along the river from the old docks to the lighthouse, " * 3
    dashboard.create("a river [sim:hang]", title=title.strip())
    page.set_viewport_size({"width": 320, "height": 640})
    dashboard.open()
    dashboard.sign_in()

    link = page.get_by_role("link", name=title.strip(), exact=True)
    expect(link).to_be_visible()
    # Queried and measured at once: a live update may draw the row's link anew meanwhile.
    lines = page.evaluate(
        """() => {
          const link = document.querySelector('.project-title');
          const line = parseFloat(getComputedStyle(link).lineHeight);
          return link.getBoundingClientRect().height / line;
        }"""
    )
    assert round(lines) == 2, lines  # more than one line, and no more than two
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, "the page scrolls sideways on a phone"
    dashboard.shot("long-title-phone")
    dashboard.assert_no_console_errors()


def test_a_project_that_is_not_there_offers_nothing_to_retry_or_cancel(
    dashboard: Dashboard,
) -> None:
    page = dashboard.page
    dashboard.open("#/projects/3f6c1a2e-8b4d-4e7a-9c1f-000000000000")
    dashboard.sign_in()

    # Said (an alert), and the page's heading and title say it too, not "Project".
    expect(page.get_by_role("alert")).to_have_text(
        "No such project: there is none with this id for your API key.", timeout=DEADLINE_MS
    )
    expect(page.get_by_role("heading", level=1)).to_have_text("No such project")
    expect(page).to_have_title("No such project · reelflow")
    expect(page.get_by_text("Loading…")).to_be_hidden()
    expect(page.get_by_role("button", name="Cancel")).to_be_hidden()
    expect(page.get_by_role("button", name="Retry failed")).to_be_hidden()
    dashboard.assert_no_console_errors(failed_load(404))


def test_a_wrong_key_is_refused_at_sign_in(dashboard: Dashboard) -> None:
    page = dashboard.page
    dashboard.open()
    page.get_by_label("API key").fill("rf_not-a-key")
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("alert")).to_have_text("That API key was not accepted.")
    expect(page.locator(".topbar")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('reelflow.apiKey')") is None
    dashboard.assert_no_console_errors(failed_load(401))


def test_the_key_lives_in_the_tab_session_only(dashboard: Dashboard) -> None:
    page = dashboard.page
    dashboard.open()
    dashboard.sign_in()

    assert page.evaluate("sessionStorage.getItem('reelflow.apiKey')") == dashboard.key
    assert page.evaluate("localStorage.length") == 0
    assert dashboard.key not in page.evaluate("document.cookie")
    page.reload()
    expect(page.locator("#live-status")).to_have_text("Live")  # the same tab keeps it
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    dashboard.assert_no_console_errors()


def test_a_clip_never_goes_backwards_whatever_the_order_of_messages(
    dashboard: Dashboard,
) -> None:
    """The page's reducer, run in the browser: old news (seq at or below the last) is ignored."""
    dashboard.open()
    seen = dashboard.page.evaluate(REDUCER_CHECK.read_text())
    assert seen == [
        "2:processing:generating",
        "2:processing:generating",
        "3:success:generating",
        "3:success:generating",
        "3:success:generating",
        "4:success:completed",
        "4:success:completed",
        "6:processing:generating",  # a timed-out clip watched again: the same task, newer news
        "3:processing:generating",  # a list row read at seq 3: older news changes nothing
        "2:queued:generating",  # one read from an API without seq: any news replaces it
    ]
    dashboard.assert_no_console_errors()


def test_each_event_replaces_what_it_carries_cost_and_clip_and_attempts_alike(
    dashboard: Dashboard,
) -> None:
    """The page takes the cost totals ({usd, known, unknown}) each event says, and a
    ``clip.updated``'s clip whole: a success leaves no progress, a retry's new task no error,
    its earlier tasks kept; an event stored before events carried them still keeps them."""
    dashboard.open()
    seen = dashboard.page.evaluate(REDUCER_COST_CHECK.read_text())

    def row(cost: str, usd: float, task: str, earlier: list[str], **more: Any) -> dict[str, Any]:
        values = {"progress": None, "error": None, "scene2": "b1:failed:0"} | more
        return {"cost": cost, "usd": usd, "task": task, "earlier": earlier, **values}

    unpriced = "$0.10 + 1 unpriced"
    assert seen == [
        row("$0.10", 0.1, "a1", [], error="timeoutProvider"),
        row("$0.10", 0.1, "a2", ["a1:failed"]),  # the retry's: its error gone, a1 kept
        row("$0.10", 0.1, "a2", ["a1:failed"], progress=74),
        row(unpriced, 0.1, "a2", ["a1:failed"]),  # a success: no 74 % left
        row(unpriced, 0.1, "a2", ["a1:failed"]),  # a duplicate changes nothing
        row("$0.35 + 1 unpriced", 0.35, "a2", ["a1:success"]),  # a late video, billed
        row("$0.35 + 1 unpriced", 0.35, "a2", ["a1:success"]),
        row("$0.55 + 1 unpriced", 0.55, "a2", ["a1:success"], scene2="b1:failed:1"),
        # a retry took b1's late video: counted when it came, gone from the attempts
        row("$0.55 + 1 unpriced", 0.55, "a2", ["a1:success"], scene2="b1:success:0"),
        {"cost": "$0.10", "task": "a2", "error": None, "earlier": ["a1:failed"]},
    ]
    dashboard.assert_no_console_errors()


def test_a_subscribe_the_notifier_rate_limits_is_sent_again_when_it_says(
    dashboard: Dashboard,
) -> None:
    dashboard.open()
    seen = dashboard.page.evaluate(LIVE_RESUBSCRIBE_CHECK.read_text())

    assert seen["sent"] == [
        {"type": "subscribe", "project_id": "p1"},
        {"type": "subscribe", "project_id": "p1", "after_seq": 4},  # resumes, no gap
    ]
    # The refusal is the connection's business; a project's own error reaches its view.
    assert seen["heard"] == ["snapshot", "error"]
    dashboard.assert_no_console_errors()


def test_a_stored_copy_replaces_runwares_link_for_its_own_task_only(dashboard: Dashboard) -> None:
    """A ``clip.stored`` makes the page play reelflow's URL; one of another task changes nothing."""
    dashboard.open()
    seen = dashboard.page.evaluate(REDUCER_STORED_CHECK.read_text())
    stored = "/v1/videos/videos/p/0/t0.mp4?expires=1&signature=s"
    assert seen == [
        "2:https://runware/v.mp4",
        f"3:{stored}",
        f"3:{stored}",  # a duplicate
        f"4:{stored}",  # another task's copy (an earlier attempt's) is not this clip's video
        f"5:{stored}",
    ]
    dashboard.assert_no_console_errors()


def test_an_earlier_tasks_stored_copy_is_that_tasks_only(dashboard: Dashboard) -> None:
    """A ``clip.attempt_stored`` links the earlier task's copy, and the cancelled clip plays
    nothing; a failed clip whose retry takes an earlier task's video plays that task's copy."""
    dashboard.open()
    seen = dashboard.page.evaluate(REDUCER_ATTEMPT_STORED_CHECK.read_text())
    stored = "/v1/videos/videos/p/0/t0.mp4?expires=1&signature=s"
    assert seen == [
        "3:https://runware/v.mp4:null",
        f"4:{stored}:null",
        f"4:{stored}:null",  # a duplicate
        f"5:{stored}:null",  # another task's copy is not this attempt's
        "3:/v1/videos/e0:t1",  # a retry took an earlier task's video: its kept copy plays
    ]
    dashboard.assert_no_console_errors()


def cost_text(status: dict[str, Any]) -> str:
    """What the page shows for a project's cost totals, from the API's answer: to the cent,
    as the CLI and reelflow-admin print dollars."""
    return f"Cost ${status['cost']['usd']:,.2f}"


async def _until_finished(dashboard: Dashboard, project_id: str) -> None:
    async def finished() -> bool | None:
        return True if dashboard.status(project_id)["all_complete"] else None

    await eventually_returns(
        finished, "the project finished", PROCESS_DEADLINE_S, pause_s=PROCESS_PAUSE_S
    )


async def _until_clip_ends(dashboard: Dashboard, project_id: str, scene: int) -> dict[str, Any]:
    """The scene's clip, as the API has it once it has ended."""

    async def ended() -> dict[str, Any] | None:
        result: dict[str, Any] = dashboard.status(project_id)["results"][scene]
        return result if result["status"] in ("success", "failed", "cancelled") else None

    ended_clip: dict[str, Any] = await eventually_returns(
        ended, f"scene {scene} ended", PROCESS_DEADLINE_S, pause_s=PROCESS_PAUSE_S
    )
    return ended_clip


def test_the_projects_page_shows_what_this_month_cost(dashboard: Dashboard) -> None:
    project_id = dashboard.create("priced [sim:latency=0]", title="spend")
    run_async(_until_finished(dashboard, project_id))
    usd = dashboard.status(project_id)["cost"]["usd"]
    dashboard.open()
    dashboard.sign_in()

    usage = dashboard.page.locator(".usage")

    spent = f"${usd:,.2f}"
    expect(usage).to_contain_text("This month (")
    line = rf"This month \(\d{{4}}-\d\d\): {re.escape(spent)} · today {re.escape(spent)}"
    expect(usage).to_have_text(re.compile(f"^{line}$"))
    expect(usage).not_to_contain_text("unknown cost")
    dashboard.assert_no_console_errors()


def test_the_spend_line_says_what_today_cost_and_no_limits_it_does_not_have(
    dashboard: Dashboard,
) -> None:
    """Today is the current UTC day ($0.00 without projects), never the last day with some."""
    dashboard.open()
    seen = dashboard.page.evaluate(USAGE_CHECK.read_text())
    assert seen == [
        "This month (2026-12): $8.00 · today $5.00",
        "This month (2026-12): $8.00 · today $0.00",
        "This month (2026-12): $8.00 · today $0.00",
        "This month (2026-12): $8.00 · today $5.00 · daily budget $20.00 · 1 of 4 clips in flight",
        "This month (2026-12): $8.00",
    ]
    dashboard.assert_no_console_errors()


def test_the_docs_page_runs_under_its_csp_and_calls_the_api_once_authorized(
    dashboard: Dashboard,
) -> None:
    page = dashboard.page
    dashboard.create("a red kite over the hills", title="Kites")
    page.goto(f"{dashboard.stack.api_url}/docs")

    expect(page.locator(".swagger-ui .info .title")).to_contain_text("reelflow")
    page.locator("button.authorize").first.click()
    page.locator(".modal-ux input").first.fill(dashboard.key)
    page.locator(".modal-ux button.authorize").click()
    page.locator(".modal-ux button.btn-done").click()
    operation = page.locator("#operations-projects-list_projects_v1_projects_get")
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    operation.locator("button.execute").click()

    status = operation.locator(".live-responses-table tbody .response-col_status").first
    expect(status).to_have_text("200")
    expect(operation.locator(".live-responses-table")).to_contain_text("Kites")
    # A CSP violation, or an asset from elsewhere, would be a console error.
    dashboard.assert_no_console_errors()
