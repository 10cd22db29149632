"""``python -m fungrad``: the same command as ``fungrad`` (see :mod:`fungrad.cli`)."""

import sys

try:
    from fungrad.cli import main
except KeyboardInterrupt:  # a Ctrl-C while the command is still loading: one line, as later
    print("fungrad: interrupted", file=sys.stderr)
    raise SystemExit(130) from None

raise SystemExit(main())
