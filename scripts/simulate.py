"""Simulation script: same as ``disagg-gym simulate`` (see disagg_gym/cli.py)."""

import sys

from disagg_gym.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["simulate", *sys.argv[1:]]))
