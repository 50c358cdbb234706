"""``python -m torchdispatch_returnn demo``: convert the bundled example encoder."""

from __future__ import annotations

import logging
import sys

from .demo import main as demo_main
from .support import support_markdown


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m torchdispatch_returnn {demo,support} ...\n\n"
              "  demo   convert the bundled small encoder (conv frontend + transformer blocks) to RETURNN,\n"
              "         print a summary and the parity verdict, write the config and checkpoint\n"
              "  support [--out FILE]   the generated table of supported torch callables (SUPPORTED.md)")
        return 0 if argv else 2
    if argv[0] == "support":
        text = support_markdown()
        if len(argv) > 2 and argv[1] == "--out":
            with open(argv[2], "w") as f:
                f.write(text)
            print(f"written {argv[2]}")
        else:
            sys.stdout.write(text)
        return 0
    if argv[0] == "demo":
        return demo_main(argv[1:])
    print(f"unknown command {argv[0]!r}; try: python -m torchdispatch_returnn demo", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
