"""The Runware client against the simulator, over real HTTP."""
