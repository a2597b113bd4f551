"""``python -m netlab.lr_find``: the command lives in :mod:`netlab.cli.lr_find`; this file only lets Python's ``-m`` find it."""

from .cli.lr_find import main

if __name__ == "__main__":
    main()
