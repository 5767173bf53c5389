"""The code label of reelflow_clips_finished_total is drawn from a bounded set."""

from __future__ import annotations

from prometheus_client import REGISTRY

from reelflow_common.domain import ClipStatus
from reelflow_common.store import TIMED_OUT
from reelflow_common.store.ends import FINISHED_CODES, code_label
from reelflow_submitter.handlers import BUDGET_EXCEEDED
from reelflow_submitter.service import RUNWARE_UNAVAILABLE


def test_a_failed_clips_code_is_kept_if_known_else_other() -> None:
    assert code_label(ClipStatus.FAILED, {"code": "insufficientCredits"}) == "insufficientCredits"
    assert code_label(ClipStatus.FAILED, {"code": "invalidPositivePrompt"}) == "other"
    assert code_label(ClipStatus.FAILED, {"code": "validation"}) == "validation"  # a category
    assert code_label(ClipStatus.FAILED, None) == "other"
    assert code_label(ClipStatus.SUCCESS, None) == ""
    assert code_label(ClipStatus.CANCELLED, {"code": "timedOut"}) == ""


def test_the_codes_reelflow_fails_clips_with_are_known() -> None:
    assert {TIMED_OUT, BUDGET_EXCEEDED, RUNWARE_UNAVAILABLE} <= FINISHED_CODES
    assert len(FINISHED_CODES) < 100  # a label's values, each a series per replica


def test_each_status_is_exported_at_zero_before_any_clip_ends() -> None:
    for status, code in (("success", ""), ("failed", "other"), ("cancelled", "")):
        labels = {"status": status, "code": code}
        assert REGISTRY.get_sample_value("reelflow_clips_finished_total", labels) is not None
