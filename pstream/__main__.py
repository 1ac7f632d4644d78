"""`python -m pstream` / `pstream`: the command line (pstream/cli/main.py)."""

import sys

from pstream.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
