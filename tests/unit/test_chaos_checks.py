"""The chaos run's judgement: each clip in the right bucket, every watcher anomaly caught."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings

from reelflow_api.settings import Settings as ApiSettings
from reelflow_devtools.chaos.plan import QUICK, SIM_FAULTS, ChaosPlan
from reelflow_devtools.chaos.truth import Verdict, classify, compare_dead_letters
from reelflow_devtools.chaos.watchers import WatchLog
from reelflow_devtools.chaos.workload import FORGED_CODE, FORGED_URL
from reelflow_notifier.settings import Settings as NotifierSettings
from reelflow_poller.settings import Settings as PollerSettings
from reelflow_runware_sim.config import SimConfig
from reelflow_submitter.settings import Settings as SubmitterSettings

VIDEO = "5b0e4c1a-9f0e-4a6b-8f53-0f3b1b8c2d11"


def task(state: str) -> dict[str, Any]:
    return {"state": state, "video_uuids": [VIDEO], "billed": state != "error"}


def clip(status: str, *, video_url: str | None = None, code: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"status": status, "scene_index": 0, "task_uuid": "t"}
    if video_url is not None:
        found["video_url"] = video_url
    if code is not None:
        found["error"] = {"code": code, "message": "…"}
    return found


def test_a_clip_is_judged_against_what_runware_did() -> None:
    genuine = f"http://127.0.0.1:9/video/{VIDEO}.mp4"
    assert classify(clip("success", video_url=genuine), task("success"))[0] == "succeeded"
    assert classify(clip("failed", code="timeoutProvider"), task("error")) == (
        "failed_as_injected",
        "task error",
    )
    assert classify(clip("failed", code="timedOut"), task("hang"))[1] == "hung, timed out"
    assert classify(clip("failed", code="runwareUnavailable"), None)[1] == "never accepted"
    # an outage is waited out: a clip failed with one 429/503 is a clip lost
    assert classify(clip("failed", code="serviceUnavailable"), None)[0] == "lost"
    # Runware made (or is making) a billed video the clip does not have
    assert classify(clip("failed", code="timedOut"), task("success"))[0] == "lost"
    assert classify(clip("failed", code="x"), task("processing"))[0] == "lost"
    assert classify(clip("failed", code="x"), None)[0] == "lost"  # never sent, never refused
    assert classify(clip("processing"), task("success"))[0] == "stuck"
    assert classify(clip("queued"), None)[0] == "stuck"


def test_a_failed_clip_whose_own_task_delivered_late_is_kept_not_lost() -> None:
    """Given up on (the ceiling), then Runware finished the task: the video is recorded in
    the clip's ``attempts`` under its own task (billed, a retry takes it), not lost."""
    genuine = f"http://127.0.0.1:9/video/{VIDEO}.mp4"
    failed = clip("failed", code="timedOut")
    kept = failed | {"attempts": [{"task_uuid": "t", "status": "success", "video_url": genuine}]}
    assert classify(kept, task("success")) == ("late_video_kept", "")
    # Not there, another task's, or a video Runware did not make for it: lost all the same.
    other = f"http://127.0.0.1:9/video/{VIDEO[:-1]}0.mp4"
    for attempts in (
        [],
        [{"task_uuid": "earlier", "status": "success", "video_url": genuine}],
        [{"task_uuid": "t", "status": "success", "video_url": other}],
        [{"task_uuid": "t", "status": "failed"}],
    ):
        assert classify(failed | {"attempts": attempts}, task("success"))[0] == "lost"


def test_a_result_no_get_response_gave_is_a_forgery_accepted() -> None:
    assert classify(clip("success", video_url=FORGED_URL), task("hang"))[0] == "forged_accepted"
    assert classify(clip("failed", code=FORGED_CODE), task("success"))[0] == "forged_accepted"
    other = "http://127.0.0.1:9/video/another.mp4"
    assert classify(clip("success", video_url=other), task("success"))[0] == "forged_accepted"
    genuine = f"http://127.0.0.1:9/video/{VIDEO}.mp4"
    assert classify(clip("success", video_url=genuine), task("hang"))[0] == "forged_accepted"


def test_the_dead_letters_must_be_exactly_the_poison_messages() -> None:
    poison = {b"{not json": "submitter.submit_clip", b'{"chaos_poison": 1}': "poller.check_clip"}
    exact, twice, extra = Verdict(), Verdict(), Verdict()

    compare_dead_letters(
        exact,
        {"submitter.submit_clip": [b"{not json"], "poller.check_clip": [b'{"chaos_poison": 1}']},
        poison,
    )
    compare_dead_letters(
        twice,
        {
            "submitter.submit_clip": [b"{not json", b"{not json"],  # a publish retried
            "poller.check_clip": [b'{"chaos_poison": 1}'],
        },
        poison,
    )
    compare_dead_letters(
        extra,
        {
            "submitter.submit_clip": [b"{not json", b'{"a real": "command"}'],
            "poller.check_clip": [],
        },
        poison,
    )

    assert exact.dlq_matches_poison
    assert twice.dlq_matches_poison
    assert not extra.dlq_matches_poison
    assert len(extra.unexpected_dead_letters) == 1
    assert len(extra.missing_poison) == 1


def event(seq: int, scene: int, status: str) -> dict[str, Any]:
    return {"type": "clip.updated", "seq": seq, "clip": {"scene_index": scene, "status": status}}


def snapshot(seq: int, *statuses: str) -> dict[str, Any]:
    results = [{"scene_index": n, "status": s} for n, s in enumerate(statuses)]
    return {"type": "snapshot", "seq": seq, "project": {"results": results, "all_complete": False}}


def test_a_watcher_accepts_an_orderly_feed_across_reconnects() -> None:
    log = WatchLog("p")
    for message in (
        snapshot(2, "queued", "processing"),
        event(3, 0, "processing"),
        event(4, 1, "success"),
        snapshot(4, "processing", "success"),  # a reconnect answered with a snapshot
        event(5, 0, "failed"),
        {"type": "project.finished", "seq": 6, "counts": {"pending": 0}},
    ):
        log.see(message)

    assert log.violations == []
    assert log.finished
    assert log.url("ws://n", "k") == "ws://n/v1/ws/projects/p?token=k&after_seq=6"


def test_a_watcher_reports_gaps_repeats_and_clips_going_backwards() -> None:
    log = WatchLog("p")
    for message in (
        snapshot(2, "processing", "success"),
        event(4, 0, "processing"),  # 3 never came
        event(4, 0, "processing"),  # again
        event(5, 0, "queued"),  # backwards
        event(6, 1, "failed"),  # an end that changed
        snapshot(3, "processing", "success"),  # older than what was seen, so going back
    ):
        log.see(message)

    assert log.violations == [
        "gap: seq 4 after seq 2",
        "repeat: seq 4 after seq 4",
        "scene 0 went processing -> queued (seq 5)",
        "scene 1 went success -> failed (seq 6)",
        "snapshot seq 3 after seq 6",
        "scene 1 went failed -> success (seq 3)",
    ]


def variables(settings: type[BaseSettings]) -> set[str]:
    return {f"REELFLOW_{name}".upper() for name in settings.model_fields}


def test_every_setting_a_chaos_run_passes_is_read_by_its_reader() -> None:
    services = (ApiSettings, NotifierSettings, PollerSettings, SubmitterSettings)
    read = set().union(*(variables(settings) for settings in services))
    for plan in (ChaosPlan(), QUICK):
        assert set(plan.service_settings(Path("videos"))) <= read
    simulator = {f"RUNWARE_SIM_{name}".upper() for name in SimConfig.model_fields}
    assert set(SIM_FAULTS) <= simulator


def test_a_stored_video_counts_in_the_sequence_and_needs_a_success() -> None:
    log = WatchLog("p")
    for message in (
        snapshot(1, "processing", "processing"),
        event(2, 0, "success"),
        {"type": "clip.stored", "seq": 3, "scene_index": 0},
        {"type": "clip.stored", "seq": 4, "scene_index": 1},  # never seen succeed
        event(5, 1, "success"),
    ):
        log.see(message)

    assert log.violations == ["scene 1 stored while processing"]
