"""reelflow shared library."""
