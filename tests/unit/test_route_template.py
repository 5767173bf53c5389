"""Metric labels and span names use the route's template, known before the route runs."""

from __future__ import annotations

import pytest

from reelflow_api.app import create_app
from reelflow_api.settings import Settings
from reelflow_api.telemetry import UNMATCHED, route_template


@pytest.mark.parametrize(
    ("method", "path", "template"),
    [
        ("GET", "/v1/projects/3f9c2a7d", "/v1/projects/{project_id}"),
        ("POST", "/v1/projects", "/v1/projects"),
        ("POST", "/v1/projects/3f9c2a7d/retry", "/v1/projects/{project_id}/retry"),
        ("POST", "/v1/webhooks/runware/the-secret", "/v1/webhooks/runware/{secret}"),
        ("DELETE", "/v1/projects/3f9c2a7d", "/v1/projects/{project_id}"),  # a 405 names it
        ("GET", "/v1/videos/p1/0/t1.mp4", "/v1/videos/{key:path}"),
        ("GET", "/static/js/main.js", "/static"),
        ("GET", "/metrics", "/metrics"),
        ("GET", "/wp-admin/setup.php", UNMATCHED),
    ],
)
def test_a_request_is_labelled_by_the_template_of_its_route(
    method: str, path: str, template: str
) -> None:
    app = create_app(Settings())
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}

    assert route_template(app.router.routes, scope) == template
