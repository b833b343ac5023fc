"""`python -m nanovla ...` is the `nanovla` command (torchrun starts ranks this way: `-m nanovla`)."""

import sys

from nanovla.cli import main

if __name__ == "__main__":
    sys.exit(main())
