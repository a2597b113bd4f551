"""Every error a user can cause, in one place.

The command-line apps print the message of a :class:`NetlabError` as one paragraph and exit
with status 2 (``debug=true`` shows the traceback instead); anything else is a bug.
"""


class NetlabError(Exception):
    """Base class of every error whose message is meant for the user, not a traceback."""


class ConfigError(NetlabError, ValueError):
    """A setting has the wrong type, an invalid value, or names something unknown."""


class DataError(NetlabError, ValueError):
    """A data file is missing, corrupt, or does not match what was expected."""


class BackendError(NetlabError, RuntimeError):
    """A backend cannot be used on this machine (library missing, no GPU, unknown name)."""


class CheckpointError(ConfigError):
    """A checkpoint is missing, unreadable, or does not fit the model or run it is used with."""


class OutputError(NetlabError, OSError):
    """An output could not be written (a missing or read-only folder, a full disk); what was
    saved before is intact, since outputs are replaced atomically."""

    def __str__(self):  # the sentence alone, without OSError's "[Errno N] ...: 'path'" wrapping
        return str(self.strerror)


class DivergedError(NetlabError):
    """The training loss became NaN or infinite."""


class Interrupted(NetlabError):
    """A run was stopped (Ctrl-C, or SIGTERM / SIGHUP: what Slurm preemption, ``docker stop``
    and a closed terminal send); the message says where it stopped and how to continue. The
    exit status is the shell's for that signal: 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP."""

    def __init__(self, message: str, signum: int = 2):
        super().__init__(message)
        self.exit_code = 128 + signum
