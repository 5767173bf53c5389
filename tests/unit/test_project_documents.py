"""Project documents and the public status, without a database."""

from __future__ import annotations

import base64
import json
import math
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import TypeAdapter
from starlette.responses import JSONResponse

from reelflow_common.domain import ClipRequest, ClipStatus, Counts, ProjectStatus
from reelflow_common.store import (
    Attempt,
    CostTotals,
    InvalidCursor,
    NewProject,
    Project,
    ProjectStatusView,
)
from reelflow_common.store.cursor import NOT_OURS, decode_cursor, encode_cursor
from reelflow_common.store.documents import (
    new_project_document,
    pack_requests,
    pack_result,
    project_from_document,
)
from reelflow_common.store.timefmt import rfc3339
from tests.unit.written_before import clip_written_before, written_before

T0 = datetime(2026, 11, 24, 12, 0, 0, 123000, tzinfo=UTC)
T1 = T0 + timedelta(minutes=1)


def project(scenes: int = 2) -> Project:
    new = NewProject(
        tenant_id="tenant-a",
        title="Trip to Lisbon",
        model="google:3@3",
        scenes=[
            ClipRequest(prompt=f"scene {i}", duration=4, width=1280, height=720)
            for i in range(scenes)
        ],
        correlation_id="req-1",
    )
    doc = new_project_document(
        new,
        project_id="p1",
        task_uuids=[f"t{i}" for i in range(scenes)],
        tokens=[f"k{i}" for i in range(scenes)],
        now=T0,
        lease_until=T1,
    )
    return project_from_document(doc)


def with_clip(base: Project, scene: int, **fields: object) -> Project:
    clips = list(base.clips)
    clips[scene] = clips[scene].model_copy(update=fields)
    return base.model_copy(update={"clips": clips})


def test_a_new_project_document_reads_back_as_queued_leased_clips_in_scene_order() -> None:
    read = project(3)

    assert read.status is ProjectStatus.GENERATING
    assert read.seq == 0
    assert read.counts == Counts(total_clips=3, completed=0, pending=3, failed=0)
    assert [(clip.task_uuid, clip.scene_index, clip.status) for clip in read.clips] == [
        ("t0", 0, ClipStatus.QUEUED),
        ("t1", 1, ClipStatus.QUEUED),
        ("t2", 2, ClipStatus.QUEUED),
    ]
    assert [clip.lease.token if clip.lease else None for clip in read.clips] == ["k0", "k1", "k2"]
    assert read.due_at == T1
    assert read.requests is not None
    assert read.requests[1].prompt == "scene 1"


def test_a_new_document_leaves_out_what_is_none_and_packs_what_no_query_reads() -> None:
    doc = new_project_document(
        NewProject(
            tenant_id="tenant-a",
            title="t",
            model="google:3@3",
            scenes=[ClipRequest(prompt="scene 0", duration=4)],
        ),
        project_id="p1",
        task_uuids=["t0"],
        tokens=["k0"],
        now=T0,
        lease_until=T1,
    )

    assert isinstance(doc["requests"], bytes)
    assert None not in doc["clips"]["0"].values()
    read = project_from_document(doc)
    assert read.requests == [ClipRequest(prompt="scene 0", duration=4)]
    assert (read.clips[0].video_url, read.clips[0].error, read.clips[0].submitted_at) == (
        None,
        None,
        None,
    )


def test_documents_written_before_packing_read_the_same() -> None:
    requests = [ClipRequest(prompt="scene 0", duration=4), ClipRequest(prompt="scene 1")]
    new = NewProject(tenant_id="tenant-a", title="t", model="google:3@3", scenes=requests)
    doc = new_project_document(
        new, project_id="p1", task_uuids=["t0", "t1"], tokens=["k0", "k1"], now=T0, lease_until=T1
    )
    before = written_before(doc, T0) | {"requests": [request.model_dump() for request in requests]}

    assert project_from_document(before) == project_from_document(doc)
    assert isinstance(pack_requests(requests), bytes)


@pytest.mark.parametrize("status", ["processing", "success", "failed"])
def test_clips_written_before_the_slim_entry_read_the_same(status: str) -> None:
    doc = new_project_document(
        NewProject(
            tenant_id="tenant-a", title="t", model="m", scenes=[ClipRequest(prompt="scene 0")]
        ),
        project_id="p1",
        task_uuids=["t0"],
        tokens=["k0"],
        now=T0,
        lease_until=T1,
    )
    slim: dict[str, object] = {"task_uuid": "t0", "status": status, "submitted_at": T1}
    full = clip_written_before(0, T0, **slim, watched_since=T1, updated_at=T1)
    if status == "processing":
        slim["lease"] = full["lease"] = {"token": "k0", "until": T1}
    elif status == "success":
        video = {"video_url": "https://v/0.mp4", "video_uuid": "v0", "cost": 0.4}
        slim["result"] = pack_result(completed_at=T1, **video)  # type: ignore[arg-type]
        full |= video | {"completed_at": T1}
    else:
        slim["error"] = full["error"] = {"code": "timedOut", "message": "too long"}
        slim["result"] = pack_result(completed_at=T1)
        full["completed_at"] = T1

    read = project_from_document(doc | {"clips": {"0": slim}})

    assert read == project_from_document(doc | {"clips": {"0": full}})
    clip = read.clips[0]
    assert (clip.scene_index, clip.queued_at, clip.watch_start()) == (0, T0, T1)
    assert clip.completed_at == (None if status == "processing" else T1)


def test_public_status_has_the_seed_fields_first_then_reelflow_fields() -> None:
    done = with_clip(
        project(),
        0,
        status=ClipStatus.SUCCESS,
        video_url="https://v/0.mp4",
        cost=0.12,
        submitted_at=T0,
        completed_at=T1,
    ).model_copy(update={"counts": Counts(total_clips=2, completed=1, pending=1, failed=0)})

    status = done.public_status().wire()

    assert list(status) == [
        "success", "project_id", "total_clips", "completed", "pending", "failed",
        "all_complete", "clips", "cancelled", "status", "title", "cost", "results", "created_at",
        "updated_at", "seq",
    ]  # fmt: skip
    assert status["clips"] == {"t0": "https://v/0.mp4", "t1": "pending"}
    assert (status["completed"], status["pending"], status["all_complete"]) == (1, 1, False)
    assert status["results"] == [
        {
            "task_uuid": "t0",
            "scene_index": 0,
            "status": "success",
            "video_url": "https://v/0.mp4",
            "cost": 0.12,
            "submitted_at": "2026-11-24T12:00:00.123000Z",
            "completed_at": "2026-11-24T12:01:00.123000Z",
        },
        {"task_uuid": "t1", "scene_index": 1, "status": "queued"},
    ]
    assert status["created_at"] == "2026-11-24T12:00:00.123000Z"
    assert "results" not in done.public_status(include_results=False).wire()


def status_view(title: str, *, cost: float, usd: float) -> ProjectStatusView:
    """Four scenes: a success, a failure, one processing, one retried; ``cost`` is the first's."""
    failed = Attempt(
        status=ClipStatus.FAILED,
        error={"code": "contentPolicyViolation", "message": 'the "prompt" was refused — não'},
        queued_at=T0,
        completed_at=T1,
    )
    base = project(4).model_copy(
        update={
            "title": title,
            "cost": CostTotals(usd=usd, known=2, unknown=1),
            "counts": Counts(total_clips=4, completed=1, pending=2, failed=1),
        }
    )
    clips = list(base.clips)
    clips[0] = clips[0].model_copy(
        update={
            "status": ClipStatus.SUCCESS,
            "cost": cost,
            "video_url": "https://v/0.mp4?sig=a%2Fb&x=1",
            "submitted_at": T0,
            "completed_at": T1,
        }
    )
    clips[1] = clips[1].model_copy(
        update={
            "status": ClipStatus.FAILED,
            "completed_at": T1,
            "error": {"code": "timedOut", "message": "line 1\nline 2\t\\ \u0001"},
        }
    )
    clips[2] = clips[2].model_copy(
        update={"status": ClipStatus.PROCESSING, "progress": 40, "submitted_at": T0}
    )
    clips[3] = clips[3].model_copy(update={"task_uuid": "t9", "attempts": {"t3": failed}})
    return base.model_copy(update={"clips": clips}).public_status()


def api_json(view: ProjectStatusView) -> bytes:
    """What the api answered before ``wire_json``: ``JSONResponse(view.wire())``."""
    return bytes(JSONResponse(view.wire()).body)


def test_the_status_json_is_the_bytes_the_api_wrote_with_json_dumps() -> None:
    """``wire_json()`` writes what ``JSONResponse(wire())`` wrote, byte for byte.

    ``JSONResponse.render`` is ``json.dumps(ensure_ascii=False, allow_nan=False,
    separators=(",", ":"))``: non-ASCII as UTF-8, the same escapes, the same key order.
    Where pydantic spells a float otherwise (below 1e-4: ``0.00001``, not ``1e-05``) the
    bytes differ but the JSON values are equal, so only the parsed values are pinned.
    A NaN or infinite cost (``json.loads`` of a Runware answer accepts ``NaN``) made the
    old rendering raise (a 500 for every read of the project); it is ``null`` now.
    """
    title = 'Viagem a "Lisboa" — São Paulo, 東京 \\ / 😀'
    ordinary = status_view(title, cost=0.12, usd=0.1 + 0.2)

    assert ordinary.wire_json() == api_json(ordinary)

    tiny = status_view(title, cost=1e-05, usd=3e-06)
    assert json.loads(tiny.wire_json()) == json.loads(api_json(tiny))

    broken = status_view(title, cost=0.12, usd=math.nan)
    with pytest.raises(ValueError, match="not JSON compliant"):
        api_json(broken)
    assert json.loads(broken.wire_json())["cost"] == {"usd": None, "known": 2, "unknown": 1}


def test_a_retried_clip_is_keyed_by_its_new_task_with_its_earlier_ones_in_results() -> None:
    earlier = Attempt(
        status=ClipStatus.FAILED, error={"code": "x", "message": "boom"}, queued_at=T0
    )
    older = Attempt(status=ClipStatus.FAILED, queued_at=T0 - timedelta(hours=1))
    retried = with_clip(project(1), 0, task_uuid="t9", attempts={"t0": earlier, "t-1": older})

    status = retried.public_status().wire()

    assert status["clips"] == {"t9": "pending"}
    assert [a["task_uuid"] for a in status["results"][0]["attempts"]] == ["t-1", "t0"]
    assert status["results"][0]["attempts"][1]["error"] == {"code": "x", "message": "boom"}


def test_public_status_shows_cancelled_clips_as_failed_as_the_seed_would() -> None:
    base = project()
    cancelled = base.model_copy(
        update={
            "clips": [c.model_copy(update={"status": ClipStatus.CANCELLED}) for c in base.clips],
            "counts": Counts(total_clips=2, completed=0, pending=0, failed=0, cancelled=2),
        }
    )

    status = cancelled.public_status().wire()

    assert status["clips"] == {"t0": "failed", "t1": "failed"}
    assert (status["failed"], status["pending"], status["all_complete"]) == (2, 0, True)
    assert [item["status"] for item in status["results"]] == ["cancelled", "cancelled"]


def test_timestamps_are_written_as_pydantic_writes_the_events() -> None:
    written = TypeAdapter(datetime).dump_python(T0, mode="json")

    assert rfc3339(T0) == written
    assert rfc3339(T0.replace(microsecond=0)) == "2026-11-24T12:00:00Z"


def test_cursor_round_trips_at_millisecond_precision() -> None:
    token = encode_cursor(T0, "p-42", status="completed")

    assert decode_cursor(token, status="completed") == (T0, "p-42")
    assert token.replace("-", "").replace("_", "").isalnum()
    # Nothing of the tenant: an unkeyed digest of it let a reader confirm a guessed id.
    assert base64.urlsafe_b64decode(token + "==") == b"3:1795521600123:completed:p-42"


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "!!!!",
        "bm90LWEtY3Vyc29y",
        "LTE6cA",
        "MTIzOg",
        # the first format, "<millis>:<project id>", bound to nothing
        base64.urlsafe_b64encode(b"1795521600000:p-42").decode().rstrip("="),
    ],
)
def test_a_cursor_we_did_not_make_is_invalid(garbage: str) -> None:
    with pytest.raises(InvalidCursor, match="not a cursor this API returned"):
        decode_cursor(garbage, status=None)


def test_a_cursor_is_bound_to_its_status_filter() -> None:
    token = encode_cursor(T0, "p-42", status="completed")

    with pytest.raises(InvalidCursor, match="with status=completed; send it with that filter"):
        decode_cursor(token, status="cancelled")
    with pytest.raises(InvalidCursor, match="with status=completed"):
        decode_cursor(token, status=None)
    unfiltered = encode_cursor(T0, "p-42", status=None)
    with pytest.raises(
        InvalidCursor,
        match=r"^a cursor of the listing with no status filter; send it without a status filter,"
        r" or start again without a cursor$",
    ):
        decode_cursor(unfiltered, status="completed")


def cursor_of(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def test_a_cursor_of_the_format_with_a_tenant_digest_is_still_read() -> None:
    older = cursor_of("2:1795521600123:completed:0123456789ab:p-42")

    assert decode_cursor(older, status="completed") == (T0, "p-42")


@pytest.mark.parametrize("made_for", ["<script>", "completed; DROP", "x" * 500])
def test_a_cursor_filter_other_than_a_status_is_not_ours_and_not_echoed(made_for: str) -> None:
    crafted = cursor_of(f"3:1795521600123:{made_for}:p-42")

    with pytest.raises(InvalidCursor) as refused:
        decode_cursor(crafted, status=None)
    assert str(refused.value) == NOT_OURS
