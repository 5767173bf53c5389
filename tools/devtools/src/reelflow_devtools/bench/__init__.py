"""``make bench``: reelflow's services as processes against the simulator, measured and checked."""
