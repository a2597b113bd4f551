"""``python -m netlab.bench``: the command lives in :mod:`netlab.cli.bench`; this file only lets Python's ``-m`` find it."""

from .cli.bench import main

if __name__ == "__main__":
    main()
