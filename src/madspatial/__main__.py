"""``python -m madspatial`` and ``torchrun -m madspatial pretrain ...`` run the CLI."""

from __future__ import annotations

import sys


def _main() -> int:
    # imported here so `python -m madspatial --help` stays cheap and a broken optional
    # subcommand never prevents the module from starting
    from madspatial.cli import main

    return main()


if __name__ == "__main__":
    sys.exit(_main())
