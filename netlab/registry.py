"""Name -> object tables for everything a config picks by name (layers, optimizers,
schedules, datasets, backends), so an unknown name is one error that lists the known ones."""

from __future__ import annotations

from .errors import ConfigError


class Registry(dict):
    """A dict of ``name -> entry`` whose look-up failures name the known entries.

    >>> SCHEDULES = Registry("schedule")
    >>> @SCHEDULES.register("constant")
    ... class Constant: ...
    """

    def __init__(self, kind: str, error: type[Exception] = ConfigError):
        super().__init__()
        self.kind, self.error = kind, error

    def register(self, name: str, entry=None):
        """Add ``entry`` under ``name``; without ``entry``, a decorator that adds what it decorates."""
        if entry is not None:
            if name in self:
                raise KeyError(f"{self.kind} {name!r} is registered twice")
            self[name] = entry
            return entry
        return lambda obj: self.register(name, obj)

    def lookup(self, name: str):
        """The entry called ``name``; an unknown name is an error that lists the known ones."""
        try:
            return self[name]
        except (KeyError, TypeError):
            raise self.error(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self)}") from None
