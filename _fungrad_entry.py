"""The ``fungrad`` command's entry point, outside the package.

Importing :mod:`fungrad.cli` imports the whole package first; a Ctrl-C in
that first fraction of a second would otherwise print Python's traceback.
This module is tiny, so the command answers a Ctrl-C with one line however
early it comes.
"""

import sys


def main() -> int:
    try:
        from fungrad.cli import main as run
    except KeyboardInterrupt:
        print("fungrad: interrupted", file=sys.stderr)
        return 130
    return run()
