"""``python -m netlab.predict``: the command lives in :mod:`netlab.cli.predict`; this file only lets Python's ``-m`` find it."""

from .cli.predict import main

if __name__ == "__main__":
    main()
