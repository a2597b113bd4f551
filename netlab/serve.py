"""``python -m netlab.serve``: the command lives in :mod:`netlab.cli.serve`; this file only lets Python's ``-m`` find it."""

from .cli.serve import main

if __name__ == "__main__":
    main()
