"""The command-line apps, one leaf module each (nothing imports them), and what they share:
the exit policy (``exits``) and ``--help`` (``help``).

``python -m netlab.train`` runs ``netlab/train.py``, which only calls ``netlab.cli.train.main``;
so do the console scripts (``netlab-train``, ...). Every command is a Hydra app on the configs
in ``netlab.config.CONF_DIR``.
"""

from .. import config, sweeps  # noqa: F401  (the schema and the sweep presets' resolvers, before Hydra composes)
from . import help

help.register()
CONF = str(config.CONF_DIR)
