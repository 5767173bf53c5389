"""The videoURL of a finished task serves a small, real MP4 from the simulator itself."""

import httpx

from reelflow_runware_sim.testing import RunningSimulator
from tests.sim.helpers import poll_until_done, send, video


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
