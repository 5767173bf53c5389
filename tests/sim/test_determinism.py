"""A seed fixes every draw, per task, whatever order tasks arrive in; latencies are long-tailed."""

import statistics
import uuid

from reelflow_runware_sim.config import SimConfig
from reelflow_runware_sim.state import SimState
from reelflow_runware_sim.testing import running_simulator
from reelflow_runware_sim.validation import validate_video
from tests.sim.helpers import client_for, send, video

DRAWN = ("latency_seconds", "video_uuids", "outcome")


async def drawn_futures(seed: int, tasks: list[dict[str, object]]) -> dict[str, tuple[object, ...]]:
    """Submit the tasks one by one and return what the simulator drew for each."""
    async with running_simulator(seed=seed, task_error_rate=0.5) as sim, client_for(sim) as http:
        for task in tasks:
            await send(http, task)
        views = await sim.tasks()
    return {view["task_uuid"]: tuple(view[key] for key in DRAWN) for view in views}


async def test_the_same_seed_draws_the_same_future_for_each_task_in_any_order() -> None:
    tasks = [video() for _ in range(4)]

    first = await drawn_futures(11, tasks)
    reversed_order = await drawn_futures(11, tasks[::-1])
    other_seed = await drawn_futures(12, tasks)

    assert first == reversed_order
    assert all(first[uuid_] != other_seed[uuid_] for uuid_ in first)


async def test_the_same_seed_draws_the_same_faults_per_request() -> None:
    rates = {"rate_429": 0.3, "rate_503": 0.3}

    async def statuses(seed: int) -> list[int]:
        async with running_simulator(seed=seed, **rates) as sim, client_for(sim) as http:
            return [(await send(http, video())).status_code for _ in range(20)]

    assert await statuses(5) == await statuses(5)
    assert await statuses(5) != await statuses(6)


async def test_veo_fast_latency_is_about_90_s_median_with_a_long_tail() -> None:
    state = SimState(SimConfig(seed=2024), clock=lambda: 0.0)
    latencies = []
    for _ in range(2_000):
        task = state.accept(validate_video(video(taskUUID=str(uuid.uuid4()))))
        latencies.append(task.generations[0].latency)
    state.reset()  # cancels the wake-up timers

    assert 80 < statistics.median(latencies) < 100
    assert 0.8 < sum(s < 180 for s in latencies) / len(latencies) < 0.95
    assert max(latencies) > 300
    assert min(latencies) >= 20
