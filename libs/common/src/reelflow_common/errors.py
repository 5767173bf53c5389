"""The error tree of reelflow. "Retry" versus "give up" is a type, never a parsed message."""

from __future__ import annotations


class ReelflowError(Exception):
    """Base of every error reelflow raises on purpose."""


class TransientError(ReelflowError):
    """Something we depend on is unavailable for now; the same work may succeed later."""


class InvalidMessage(ReelflowError):
    """A message cannot be understood; retrying it can never help."""
