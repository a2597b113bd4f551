"""``python -m netlab.train``: the command lives in :mod:`netlab.cli.train`; this file only lets Python's ``-m`` find it."""

from .cli.train import main

if __name__ == "__main__":
    main()
