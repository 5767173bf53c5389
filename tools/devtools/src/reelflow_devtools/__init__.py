"""Development tools for reelflow: the `make run` launcher and the embedded MongoDB."""
