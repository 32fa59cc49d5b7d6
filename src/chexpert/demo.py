"""``python -m chexpert.demo [OUT]``: the same as ``chexpert demo`` (an entry point, like ``__main__``).

The demo runs the commands a user runs, so it lives with them in :mod:`chexpert.cli.demo`; this
module keeps ``chexpert.demo.run_demo`` and ``python -m chexpert.demo`` working.
"""

from __future__ import annotations

import sys

from chexpert.cli.demo import main, run_demo

__all__ = ["run_demo", "main"]

if __name__ == "__main__":
    sys.exit(main())
