"""reelflow submitter service."""
