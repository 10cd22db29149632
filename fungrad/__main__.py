"""``python -m fungrad``: the same command as ``fungrad`` (see :mod:`fungrad.cli`)."""

import sys
from typing import Callable


def _command() -> Callable[[], int]:
    """The command's ``main``; if it cannot be imported, one line on stderr and an exit.

    Python imports the package itself before it runs this module, so a
    failure there is reported by Python; one in what the command imports is
    reported here, like the command's other errors, with where to see more.
    """
    try:
        from fungrad.cli import main
    except KeyboardInterrupt:  # a Ctrl-C while the command is still loading: one line, as later
        print("fungrad: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as e:  # a broken install: one line, not a traceback
        print(
            f"fungrad: error: cannot load the fungrad command ({type(e).__name__}: {e}); "
            "python -c 'import fungrad.cli' shows where",
            file=sys.stderr,
        )
        raise SystemExit(1) from None
    return main


if __name__ == "__main__":
    raise SystemExit(_command()())
