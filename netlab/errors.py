"""Errors a user can cause. The apps print their message as one paragraph and exit non-zero."""


class NetlabError(Exception):
    """Base class of every error whose message is meant for the user, not a traceback."""


class ConfigError(NetlabError, ValueError):
    """A setting has the wrong type or an invalid value."""


class DivergedError(NetlabError):
    """The training loss became NaN or infinite."""
