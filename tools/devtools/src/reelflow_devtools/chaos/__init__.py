"""``make chaos``: reelflow under crashes, outages, faults and forgeries, judged by Runware."""
