"""GetResponseBatcher and SubmitBatcher: the client's contract, with tasks sharing requests."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace

import pytest

from reelflow_common.runware import (
    ErrorCategory,
    RunwareError,
    RunwareTaskError,
    SubmitResult,
    TaskState,
)
from reelflow_common.runware.batching import GetResponseBatcher, SubmitBatcher
from tests.runware.helpers import sim_and_client, video
from tests.waiting import DEADLINE_S

# The client splits longer lists itself: the batcher is built with the same setting.
BATCHING = {"runware_poll_batch_size": 50}


async def _requests(sim: object) -> int:
    stats = await sim.stats()  # type: ignore[attr-defined]
    return int(stats["requests"])


async def test_with_batch_size_one_every_check_is_its_own_request() -> None:
    async with sim_and_client() as (sim, client):
        requests = [video() for _ in range(4)]
        for request in requests:
            await client.submit_video(request)
        batcher = GetResponseBatcher(client, batch_size=1, window_s=60.0)
        before = await _requests(sim)

        states = await asyncio.wait_for(
            asyncio.gather(*(batcher.get_response(r.task_uuid) for r in requests)), DEADLINE_S
        )

        assert await _requests(sim) - before == 4
        assert [s.task_uuid for s in states] == [r.task_uuid for r in requests]


async def test_checks_arriving_together_share_one_request_up_to_the_batch_size() -> None:
    async with sim_and_client(client_overrides=BATCHING) as (sim, client):
        now = [1000.0]
        sim.state.clock = lambda: now[0]
        done = [video("a quick one [sim:latency=10]") for _ in range(3)]
        slow = [video("a slow one [sim:latency=100]") for _ in range(3)]
        for request in done + slow:
            await client.submit_video(request)
        now[0] += 50
        # A window far longer than the deadline: only a full batch can answer in time.
        batcher = GetResponseBatcher(client, batch_size=3, window_s=3600.0)
        before = await _requests(sim)

        states = await asyncio.wait_for(
            asyncio.gather(*(batcher.get_response(r.task_uuid) for r in done + slow)),
            DEADLINE_S,
        )

        assert await _requests(sim) - before == 2
        assert [s.task_uuid for s in states] == [r.task_uuid for r in done + slow]
        assert [s.status for s in states] == ["success"] * 3 + ["processing"] * 3
        assert all(s.video_url for s in states[:3])
        assert [s.progress for s in states[3:]] == [50, 50, 50]


async def test_a_check_alone_goes_out_when_the_window_closes() -> None:
    async with sim_and_client(client_overrides=BATCHING) as (sim, client):
        requests = [video() for _ in range(2)]
        for request in requests:
            await client.submit_video(request)
        batcher = GetResponseBatcher(client, batch_size=50, window_s=0.05)
        before = await _requests(sim)

        states = await asyncio.wait_for(
            asyncio.gather(*(batcher.get_response(r.task_uuid) for r in requests)), DEADLINE_S
        )

        assert await _requests(sim) - before == 1
        assert {s.task_uuid for s in states} == {r.task_uuid for r in requests}


async def test_an_unknown_task_fails_only_its_own_caller_as_the_client_would() -> None:
    async with sim_and_client(client_overrides=BATCHING) as (_sim, client):
        known = video()
        await client.submit_video(known)
        unknown = str(uuid.uuid4())
        batcher = GetResponseBatcher(client, batch_size=2, window_s=3600.0)

        state, failure = await asyncio.wait_for(
            asyncio.gather(
                batcher.get_response(known.task_uuid),
                batcher.get_response(unknown),
                return_exceptions=True,
            ),
            DEADLINE_S,
        )
        with pytest.raises(RunwareTaskError) as direct:
            await client.get_response(unknown)

        assert isinstance(state, TaskState)
        assert state.task_uuid == known.task_uuid
        assert isinstance(failure, RunwareTaskError)
        assert failure.category is ErrorCategory.NOT_FOUND
        assert (failure.code, failure.task_uuid) == (direct.value.code, direct.value.task_uuid)


async def test_a_refused_request_fails_every_check_in_it_with_a_retryable_error() -> None:
    async with sim_and_client(rate_503=1.0, client_overrides=BATCHING) as (_sim, client):
        uuids = [str(uuid.uuid4()) for _ in range(3)]
        batcher = GetResponseBatcher(client, batch_size=3, window_s=3600.0)

        outcomes = await asyncio.wait_for(
            asyncio.gather(*(batcher.get_response(u) for u in uuids), return_exceptions=True),
            DEADLINE_S,
        )

        for task_uuid, outcome in zip(uuids, outcomes, strict=True):
            assert isinstance(outcome, RunwareError)
            assert outcome.retryable
            assert outcome.http_status == 503
            assert outcome.task_uuid == task_uuid


async def test_a_caller_that_gives_up_does_not_hold_back_the_others() -> None:
    async with sim_and_client(client_overrides=BATCHING) as (sim, client):
        requests = [video() for _ in range(2)]
        for request in requests:
            await client.submit_video(request)
        batcher = GetResponseBatcher(client, batch_size=3, window_s=0.05)
        impatient = asyncio.create_task(batcher.get_response(requests[0].task_uuid))
        patient = asyncio.create_task(batcher.get_response(requests[1].task_uuid))
        await asyncio.sleep(0)  # both are waiting in the batcher now
        impatient.cancel()
        before = await _requests(sim)

        state = await asyncio.wait_for(patient, DEADLINE_S)

        assert state.task_uuid == requests[1].task_uuid
        assert impatient.cancelled()
        assert await _requests(sim) - before == 1


async def test_closing_sends_what_is_waiting_at_once() -> None:
    async with sim_and_client(client_overrides=BATCHING) as (_sim, client):
        request = video()
        await client.submit_video(request)
        batcher = GetResponseBatcher(client, batch_size=10, window_s=3600.0)
        waiting = asyncio.create_task(batcher.get_response(request.task_uuid))
        await asyncio.sleep(0)

        await asyncio.wait_for(batcher.aclose(), DEADLINE_S)

        assert waiting.done()
        assert (await waiting).task_uuid == request.task_uuid


def test_a_batch_size_below_one_is_refused() -> None:
    client = SimpleNamespace(get_responses=None, submit_videos=None)
    with pytest.raises(ValueError, match="batch_size"):
        GetResponseBatcher(client, batch_size=0, window_s=1.0)
    with pytest.raises(ValueError, match="batch_size"):
        SubmitBatcher(client, batch_size=0, window_s=1.0)
    with pytest.raises(ValueError, match="quiet_s"):
        SubmitBatcher(client, batch_size=2, window_s=1.0, quiet_s=-1.0)


# --- submits ------------------------------------------------------------------------------


async def test_submits_arriving_together_share_requests_up_to_the_batch_size() -> None:
    async with sim_and_client() as (sim, client):
        requests = [video() for _ in range(5)]
        # A window far longer than the deadline: only full batches, and closing, send.
        batcher = SubmitBatcher(client, batch_size=3, window_s=3600.0)
        before = await _requests(sim)

        first_three = asyncio.gather(*(batcher.submit_video(r) for r in requests[:3]))
        results = await asyncio.wait_for(first_three, DEADLINE_S)
        last_two = asyncio.gather(*(batcher.submit_video(r) for r in requests[3:]))
        await asyncio.sleep(0)  # both wait in the batcher
        await asyncio.wait_for(batcher.aclose(), DEADLINE_S)
        results += await asyncio.wait_for(last_two, DEADLINE_S)

        assert await _requests(sim) - before == 2
        assert [r.task_uuid for r in results] == [r.task_uuid for r in requests]
        assert not any(r.already_submitted for r in results)
        assert {t["task_uuid"] for t in await sim.tasks()} == {r.task_uuid for r in requests}


async def test_a_refused_submit_fails_only_its_own_caller_as_the_client_would() -> None:
    async with sim_and_client() as (sim, client):
        good, bad, known = video(), video(duration=5), video()
        await client.submit_video(known)
        batcher = SubmitBatcher(client, batch_size=3, window_s=3600.0)
        before = await _requests(sim)

        accepted, refused, again = await asyncio.wait_for(
            asyncio.gather(
                batcher.submit_video(good),
                batcher.submit_video(bad),
                batcher.submit_video(known),
                return_exceptions=True,
            ),
            DEADLINE_S,
        )
        assert await _requests(sim) - before == 1
        with pytest.raises(RunwareTaskError) as direct:
            await client.submit_video(bad)

        assert isinstance(accepted, SubmitResult)
        assert not accepted.already_submitted
        assert isinstance(refused, RunwareTaskError)
        assert (refused.code, refused.category) == (direct.value.code, ErrorCategory.VALIDATION)
        assert refused.task_uuid == bad.task_uuid
        assert isinstance(again, SubmitResult)
        assert again.already_submitted


async def test_a_submit_alone_goes_out_when_the_window_closes() -> None:
    async with sim_and_client() as (sim, client):
        batcher = SubmitBatcher(client, batch_size=16, window_s=0.05)
        request = video()

        result = await asyncio.wait_for(batcher.submit_video(request), DEADLINE_S)

        assert result.task_uuid == request.task_uuid
        assert (await sim.task(request.task_uuid))["accepted"]


async def test_a_burst_of_submits_goes_together_once_no_other_joins_for_the_quiet_gap() -> None:
    async with sim_and_client() as (sim, client):
        requests = [video() for _ in range(3)]
        # The window would outlast the deadline: only the quiet gap can send them in time.
        batcher = SubmitBatcher(client, batch_size=16, window_s=3600.0, quiet_s=0.05)
        before = await _requests(sim)

        results = await asyncio.wait_for(
            asyncio.gather(*(batcher.submit_video(r) for r in requests)), DEADLINE_S
        )

        assert await _requests(sim) - before == 1
        assert [r.task_uuid for r in results] == [r.task_uuid for r in requests]
        assert {t["task_uuid"] for t in await sim.tasks()} == {r.task_uuid for r in requests}


async def test_with_batch_size_one_every_submit_is_its_own_request() -> None:
    async with sim_and_client() as (sim, client):
        requests = [video() for _ in range(3)]
        batcher = SubmitBatcher(client, batch_size=1, window_s=3600.0)
        before = await _requests(sim)

        await asyncio.wait_for(
            asyncio.gather(*(batcher.submit_video(r) for r in requests)), DEADLINE_S
        )

        assert await _requests(sim) - before == 3
