"""reelflow api service."""
