"""Per-model validation: what each simulated model accepts, and the errors it gives."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from reelflow_runware_sim.testing import running_simulator
from tests.sim.helpers import client_for, send, video

# Each case is one request and answer, with fresh task UUIDs: one simulator serves them all.
pytestmark = pytest.mark.asyncio(loop_scope="module")

VEO_FAST = {"model": "google:3@3"}
VEO = {"model": "google:3@2", "duration": 8}
KLING = {"model": "klingai:5@3", "duration": 5, "width": 1920, "height": 1080}
SEEDANCE = {"model": "bytedance:2@1", "duration": 5, "width": None, "height": None}
HAILUO = {"model": "minimax:3@1", "duration": 6, "width": None, "height": None}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A client of a simulator shared by this module's tests."""
    async with running_simulator(seed=5) as sim, client_for(sim) as client:
        yield client


def task(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A video task from `base` and `changes`; a None value removes the field."""
    fields = {**base, **changes}
    built = video(**{k: v for k, v in fields.items() if v is not None})
    return {k: v for k, v in built.items() if fields.get(k, "") is not None}


@pytest.mark.parametrize(
    "accepted",
    [
        task(VEO_FAST),
        task(VEO_FAST, duration=8, width=1080, height=1920, seed=42),
        task(VEO_FAST, width=None, height=None, resolution="1080p"),
        task(
            VEO_FAST,
            width=None,
            height=None,
            inputs={"frameImages": [{"image": "https://x/a.png"}]},
        ),
        task(VEO),
        task(KLING, negativePrompt="blurry", CFGScale=0.5),
        task(KLING, duration=10, width=None, height=None),
        task(SEEDANCE, duration=1.2, seed=7, resolution="480p"),
        task(SEEDANCE, duration=12),
        task(HAILUO, duration=5.5, fps=25),
    ],
    ids=lambda t: f"{t['model']}-{t['duration']}",
)
async def test_a_task_within_its_model_rules_is_acknowledged(
    http: httpx.AsyncClient, accepted: dict[str, Any]
) -> None:
    answer = await send(http, accepted)

    assert answer.status_code == 200, answer.json()
    assert answer.json()["data"][0]["taskUUID"] == accepted["taskUUID"]


async def test_an_unsupported_duration_lists_the_allowed_values(http: httpx.AsyncClient) -> None:
    rejected = task(VEO_FAST, duration=5)

    answer = await send(http, rejected)

    assert answer.status_code == 400
    assert answer.json() == {
        "errors": [
            {
                "code": "unsupportedDuration",
                "message": "Invalid value for duration parameter. "
                "This duration is not supported by the model architecture.",
                "parameter": "duration",
                "type": "float",
                "allowedValues": [4, 6, 7, 8],
                "documentation": "https://runware.ai/docs/en/video-inference/api-reference"
                "#request-duration",
                "taskType": "videoInference",
                "taskUUID": rejected["taskUUID"],
            }
        ]
    }


@pytest.mark.parametrize(
    ("rejected", "code", "parameter", "allowed"),
    [
        (task(VEO, duration=10), "unsupportedDuration", "duration", [4, 6, 7, 8]),
        (task(VEO_FAST, width=1024, height=1024), "unsupportedDimensions", "width", None),
        (task(VEO_FAST, negativePrompt="blurry"), "unsupportedParameter", "negativePrompt", None),
        (task(VEO, fps=24), "unsupportedParameter", "fps", None),
        (task(VEO_FAST, resolution="720p"), "incompatibleParameters", "resolution", None),
        (
            task(VEO_FAST, width=None, height=None, resolution="8K"),
            "unsupportedResolution",
            "resolution",
            ["720p", "1080p", "4K"],
        ),
        (task(VEO_FAST, height=None), "missingHeight", "height", None),
        (task(KLING, duration=6), "unsupportedDuration", "duration", [5, 10]),
        (task(KLING, seed=3), "unsupportedParameter", "seed", None),
        (task(SEEDANCE, duration=12.5), "invalidDuration", "duration", None),
        (task(SEEDANCE, duration="5"), "invalidDuration", "duration", None),
        (task(HAILUO, fps=30), "unsupportedFps", "fps", [25]),
        (task(HAILUO, seed=3), "unsupportedParameter", "seed", None),
        (task(VEO_FAST, model="acme:9@9"), "invalidModel", "model", None),
        (task(VEO_FAST, model=None), "missingModel", "model", None),
        (task(VEO_FAST, positivePrompt="a"), "invalidPositivePrompt", "positivePrompt", None),
        (task(VEO_FAST, positivePrompt=None), "missingPositivePrompt", "positivePrompt", None),
        (task(VEO_FAST, duration=None), "missingDuration", "duration", None),
        (task(VEO_FAST, taskUUID="job-1"), "invalidTaskUUID", "taskUUID", None),
        (task(VEO_FAST, numberResults=5), "invalidNumberResults", "numberResults", None),
        (task(VEO_FAST, outputType="base64Data"), "unsupportedOutputType", "outputType", ["URL"]),
        (task(VEO_FAST, webhookURL="ftp://x"), "invalidWebhookURL", "webhookURL", None),
        (
            task(VEO_FAST, positivePrompt="a cat [sim:teleport]"),
            "invalidSimDirective",
            "positivePrompt",
            None,
        ),
    ],
    ids=lambda v: v["model"] if isinstance(v, dict) and "model" in v else None,
)
async def test_a_task_outside_its_model_rules_is_refused_with_the_parameter(
    http: httpx.AsyncClient,
    rejected: dict[str, Any],
    code: str,
    parameter: str,
    allowed: list[Any] | None,
) -> None:
    answer = await send(http, rejected)

    assert answer.status_code == 400
    [error] = answer.json()["errors"]
    assert (error["code"], error["parameter"]) == (code, parameter)
    assert error["taskType"] == "videoInference"
    assert error["message"]
    if allowed is not None:
        assert error["allowedValues"] == allowed


async def test_a_task_without_a_uuid_is_refused(http: httpx.AsyncClient) -> None:
    answer = await send(http, task(VEO_FAST, taskUUID=None))

    assert answer.status_code == 400
    assert answer.json()["errors"][0]["code"] == "missingTaskUUID"
