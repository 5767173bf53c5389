from reelflow_devtools.bench.main import run

run()
