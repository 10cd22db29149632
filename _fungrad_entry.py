"""The ``fungrad`` command's entry point, outside the package.

Importing :mod:`fungrad.cli` imports the whole package first; a Ctrl-C in
that first fraction of a second would otherwise print Python's traceback,
and so would a broken install (a dependency missing, a damaged file). This
module is tiny, so the command answers a Ctrl-C with one line however early
it comes, and a package that cannot be imported with one line and exit code 1.
"""

import sys


def main() -> int:
    try:
        from fungrad.cli import main as run
    except KeyboardInterrupt:
        print("fungrad: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        print(
            f"fungrad: error: cannot load the fungrad command ({type(e).__name__}: {e}); "
            "python -c 'import fungrad.cli' shows where",
            file=sys.stderr,
        )
        return 1
    return run()
