"""``python -m torchdispatch_returnn`` (also the ``torchdispatch-returnn`` console script): see :mod:`.cli`."""

from __future__ import annotations

import sys

from .cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
