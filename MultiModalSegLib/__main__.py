"""``python -m MultiModalSegLib`` is the same as the ``mmseg`` console script."""

import sys

from MultiModalSegLib.cli import main

if __name__ == "__main__":
    sys.exit(main())
