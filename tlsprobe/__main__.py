"""``python -m tlsprobe``: the command line."""

from tlsprobe.cli import main

raise SystemExit(main())
