"""The videoURL of a finished task serves a small, real MP4 from the simulator itself."""

import httpx

from reelflow_runware_sim.config import SimConfig
from reelflow_runware_sim.testing import RunningSimulator, running_simulator
from tests.sim.helpers import client_for, poll_until_done, send, video


async def test_a_finished_video_is_an_h264_mp4(http: httpx.AsyncClient) -> None:
    task = video("[sim:latency=0] a lantern")
    await send(http, task)
    url = (await poll_until_done(http, task["taskUUID"]))["data"][0]["videoURL"]

    answer = await http.get(url)
    head = await http.head(url)

    assert answer.status_code == 200
    assert answer.headers["content-type"] == "video/mp4"
    assert answer.content[4:8] == b"ftyp"
    assert b"avc1" in answer.content  # an H.264 track, which browsers play
    assert 1_000 < len(answer.content) < 50_000
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(answer.content))


async def test_a_video_that_is_unknown_or_not_finished_is_not_found(
    http: httpx.AsyncClient, runware_sim: RunningSimulator
) -> None:
    task = video("[sim:hang] a lantern")
    await send(http, task)
    pending = (await runware_sim.task(task["taskUUID"]))["video_uuids"][0]

    unfinished = await http.get(f"/video/{pending}.mp4")
    unknown = await http.get("/video/7ecb1071-66f0-4041-b695-b944668cdfff.mp4")

    assert (unfinished.status_code, unknown.status_code) == (404, 404)


async def test_a_video_link_stops_serving_once_its_ttl_has_passed() -> None:
    """``video_url_ttl`` (simulated seconds, Runware's ``ttl``) counts from the video's end."""
    async with (
        running_simulator(SimConfig(port=0, speedup=1000, seed=3, video_url_ttl=60)) as sim,
        client_for(sim) as http,
    ):
        task = video("[sim:latency=0] a lantern")
        await send(http, task)
        url = (await poll_until_done(http, task["taskUUID"]))["data"][0]["videoURL"]
        accepted = sim.state.tasks[task["taskUUID"]]
        done = accepted.submitted_at + accepted.generations[0].latency
        sim.state.clock = lambda: done  # the moment the video was done
        fresh = await http.get(url)
        sim.state.clock = lambda: done + sim.config.real_seconds(61)  # a second past the ttl
        expired = await http.get(url)
        stats = await sim.stats()

    assert fresh.status_code == 200
    assert expired.status_code == 404
    assert expired.json()["detail"] == "video link expired"
    assert stats["endpoints"]["GET /video expired"] == 1
