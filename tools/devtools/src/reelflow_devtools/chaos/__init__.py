"""``make chaos``: reelflow under crashes, outages, faults and forgeries, checked against Runware's truth."""
