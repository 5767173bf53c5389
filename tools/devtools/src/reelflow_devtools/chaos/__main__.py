from reelflow_devtools.chaos.main import run_cli

run_cli()
