"""``python -m netlab.export``: the command lives in :mod:`netlab.cli.export`; this file only lets Python's ``-m`` find it."""

from .cli.export import main

if __name__ == "__main__":
    main()
