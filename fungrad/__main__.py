"""``python -m fungrad``: the same command as ``fungrad`` (see :mod:`fungrad.cli`)."""

from fungrad.cli import main

raise SystemExit(main())
