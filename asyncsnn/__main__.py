"""``python -m asyncsnn``: the command line (the same as the ``asyncsnn`` script)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
