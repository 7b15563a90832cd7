#!/usr/bin/env python
"""The seed's entry point: `python scripts/train.py <flags>` is `raysum train <flags>`."""

import sys

from raysum.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
