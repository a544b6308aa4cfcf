"""Benchmark script: same as ``disagg-gym bench`` (see disagg_gym/bench.py)."""

import sys

from disagg_gym.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", *sys.argv[1:]]))
