"""``python -m netlab.summarize``: the command lives in :mod:`netlab.cli.summarize`; this file only lets Python's ``-m`` find it."""

from .cli.summarize import main

if __name__ == "__main__":
    main()
