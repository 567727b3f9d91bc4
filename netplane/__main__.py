from netplane.cli import run

run()
