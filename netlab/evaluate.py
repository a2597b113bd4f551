"""``python -m netlab.evaluate``: the command lives in :mod:`netlab.cli.evaluate`; this file only lets Python's ``-m`` find it."""

from .cli.evaluate import main

if __name__ == "__main__":
    main()
