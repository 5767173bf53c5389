"""The REST API as the contract describes it, with every failure turned into a ``CliError``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

from reelflow_cli.errors import (
    BadArgument,
    CliError,
    LimitRefused,
    NotFound,
    TryLater,
    Unauthorized,
    Unreachable,
)
from reelflow_cli.times import utc_minute

TIMEOUT_S = 30.0

Json = dict[str, Any]


class Client:
    """One tenant's view of the API (``Authorization: Bearer <key>``)."""

    def __init__(self, url: str, api_key: str, *, transport: httpx.BaseTransport | None = None):
        self.url = url
        self._http = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "reelflow-cli"},
            timeout=TIMEOUT_S,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- the API ------------------------------------------------------------------

    def config(self) -> Json:
        return self._call("GET", "/v1/config")

    def create(self, body: Json) -> Json:
        return self._call("POST", "/v1/projects", json=body)

    def get(self, project_id: str) -> Json:
        return self._call("GET", f"/v1/projects/{project_id}")

    def scenes(self, project_id: str) -> Json:
        """What the project asked for: its model and each scene's prompt, duration, size."""
        return self._call("GET", f"/v1/projects/{project_id}/scenes")

    def list(self, *, status: str | None, limit: int, cursor: str | None) -> Json:
        params: dict[str, str | int] = {"limit": limit}
        if status:
            params["status"] = status
        if cursor:
            params["cursor"] = cursor
        return self._call("GET", "/v1/projects", params=params)

    def retry(self, project_id: str) -> Json:
        return self._call("POST", f"/v1/projects/{project_id}/retry")

    def cancel(self, project_id: str) -> Json:
        return self._call("POST", f"/v1/projects/{project_id}/cancel")

    def usage(self, month: str | None) -> Json:
        return self._call("GET", "/v1/usage", params={"month": month} if month else {})

    def ws_ticket(self) -> str:
        ticket: str = self._call("POST", "/v1/ws-tickets")["ticket"]
        return ticket

    # --- plumbing -----------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> Json:
        with _transport_errors(self.url):
            answer = self._http.request(method, path, **kwargs)
        if answer.is_success:
            body: Json = answer.json()
            return body
        error = _problem(answer, self.url)
        error.problem = _problem_json(answer)
        raise error


def video_link(clip: Json, api_url: str) -> str | None:
    """Where a finished clip's video is: reelflow's copy when there is one (Runware's link
    expires), whole; a copy's ``stored_url`` may be a path on the API (``/v1/videos/…``)."""
    link = clip.get("stored_url") or clip.get("video_url")
    if not link:
        return None
    return urljoin(f"{api_url.rstrip('/')}/", str(link))


def download(url: str, target: Path) -> int:
    """Save ``url`` (a video: no API key is sent with it) to ``target``; the bytes written."""
    written = 0
    partial = target.with_name(target.name + ".part")
    with (
        _transport_errors(url),
        httpx.stream(
            "GET",
            url,
            timeout=TIMEOUT_S,
            follow_redirects=True,  # S3 storage: a presigned URL
        ) as answer,
    ):
        if not answer.is_success:
            raise CliError(f"could not download {url}: HTTP {answer.status_code}")
        with partial.open("wb") as out:
            for chunk in answer.iter_bytes():
                out.write(chunk)
                written += len(chunk)
    partial.replace(target)
    return written


@contextmanager
def _transport_errors(url: str) -> Iterator[None]:
    try:
        yield
    except httpx.TimeoutException as exc:
        raise Unreachable(f"{url} did not answer within {TIMEOUT_S:.0f} s") from exc
    except httpx.TransportError as exc:
        raise Unreachable(
            f"cannot reach reelflow at {url} ({type(exc).__name__}); is it running?"
            " Set REELFLOW_URL if it runs elsewhere."
        ) from exc


def _problem(answer: httpx.Response, url: str) -> CliError:
    try:
        problem = answer.json()
    except ValueError:
        problem = {}
    if not isinstance(problem, dict):
        problem = {}
    detail = str(problem.get("detail") or problem.get("title") or answer.reason_phrase)
    if answer.status_code == 401:
        return Unauthorized(f"the API key was not accepted by {url}: {detail}")
    if answer.status_code == 404:
        return NotFound("no such project (or it belongs to another tenant)")
    if answer.status_code == 422:
        errors = problem.get("errors") or []
        lines = [_describe(error) for error in errors if isinstance(error, dict)] or [detail]
        # The API lists the first few errors and counts the rest.
        if isinstance(omitted := problem.get("errors_omitted"), int) and omitted > 0:
            lines.append(f"and {omitted} more")
        return BadArgument("the request was refused:\n  " + "\n  ".join(lines))
    if problem.get("limit"):  # 402, 403 or 429: one of the tenant's limits
        return _refused_by_limit(answer, problem, detail)
    if answer.status_code in (429, 503):
        return TryLater(f"reelflow is busy or degraded ({answer.status_code}){_later(answer)}")
    return CliError(f"reelflow answered {answer.status_code}: {detail}")


def _problem_json(answer: httpx.Response) -> Json | None:
    """The API's problem+json (RFC 9457) of a refusal, as it sent it; None when the answer is
    none (a proxy's HTML page, say): the error is then told as a local one."""
    try:
        problem = answer.json()
    except ValueError:
        return None
    return problem if isinstance(problem, dict) and problem.get("title") else None


def _refused_by_limit(answer: httpx.Response, problem: Json, detail: str) -> CliError:
    """A 429 passes once clips end; a budget (402) resets, but not soon; a 403 stays."""
    refused = f"refused by the limit {problem['limit']}: {detail}"
    if answer.status_code == 429:
        return TryLater(f"{refused}{_later(answer)}")
    resets = f" (resets at {utc_minute(problem['resets_at'])})" if problem.get("resets_at") else ""
    return LimitRefused(f"{refused}{resets}")


def _later(answer: httpx.Response) -> str:
    retry = answer.headers.get("retry-after")
    return f"; try again in {retry} s" if retry else "; try again shortly"


def _describe(error: Json) -> str:
    """``scenes.0.duration: not a duration this model makes: google:3@3 (allowed: 4, 6, 8)``:
    the message says what the model allows, when it has a list."""
    loc = [str(part) for part in error.get("loc", []) if part != "body"]
    text = str(error.get("msg", ""))
    return f"{'.'.join(loc)}: {text}" if loc else text
