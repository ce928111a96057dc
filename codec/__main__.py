"""``python -m codec`` is the ``codec`` command."""

from .cli import main

main()
