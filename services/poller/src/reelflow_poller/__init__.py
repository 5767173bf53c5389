"""reelflow poller service."""
