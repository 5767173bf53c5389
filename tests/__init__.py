"""reelflow's tests."""

from pathlib import Path

#: the repository's root directory
ROOT = Path(__file__).resolve().parents[1]
