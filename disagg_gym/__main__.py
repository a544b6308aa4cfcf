"""``python -m disagg_gym``: the ``disagg-gym`` command."""

from disagg_gym.cli import main

raise SystemExit(main())
