"""reelflow notifier service."""
