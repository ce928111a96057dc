"""``python -m codec.train CONFIG [key=value ...] [--resume]``: the same as ``codec train``,
spelled as a module so that torchrun can start it (``torchrun ... -m codec.train``)."""

import sys

from ..cli import main

if __name__ == "__main__":
    main(["train", *sys.argv[1:]], prog_name="codec")
