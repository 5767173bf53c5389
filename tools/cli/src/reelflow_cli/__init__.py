"""``reelflow``: the command line client of reelflow's public API."""
