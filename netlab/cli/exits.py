"""How a command ends when something goes wrong: the exit policy that every command follows.

The rule (README, "Exit status"):
- 0: done;
- 2: bad input, said in one paragraph (``netlab: error: ...``): a value netlab checks, a
  file that is missing, corrupt or hostile, a full or read-only disk, and also what Hydra
  refuses while composing the config (an unknown option or key, a wrong type);
- 130: interrupted (Ctrl-C), saying where the run stopped and how to continue;
- 1: a crash, that is a bug in netlab (the traceback is shown).
``debug=true`` (or ``hydra.verbose=true``) shows the traceback of a netlab error instead.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import re
import sys
from pathlib import Path

from hydra.experimental.callback import Callback

from ..errors import NetlabError
from ..outputs import read_text
from ..sweeps import FAILURE_FILE, run_job

log = logging.getLogger(__name__)

EXIT_BAD_INPUT, EXIT_INTERRUPTED = 2, 130
# A file system that refuses a write is the machine's state, not a bug in netlab.
DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG}


class _State:
    task_started = False


def user_errors(fn):
    """Run a command's task; a user-caused error ends it with one paragraph and a documented status."""

    @functools.wraps(fn)
    def wrapper(cfg):
        _State.task_started = True
        if _in_sweep():
            return run_job(fn, cfg)
        try:
            return fn(cfg)
        except NetlabError as exc:
            if cfg.get("debug") or _hydra_verbose():
                raise
            fail(str(exc), getattr(exc, "exit_code", EXIT_BAD_INPUT))
        except KeyboardInterrupt:
            fail("interrupted (Ctrl-C) before the command finished; nothing it had already written "
                 "was damaged (outputs are replaced atomically)", EXIT_INTERRUPTED)
        except OSError as exc:
            if exc.errno not in DISK_ERRORS or cfg.get("debug"):
                raise
            where = f" {exc.filename}" if exc.filename else ""
            fail(f"cannot write{where}: {exc.strerror}. Files already saved are intact (checkpoints and "
                 f"results are replaced atomically); free space or choose a writable folder "
                 f"(hydra.run.dir=...) and run again", EXIT_BAD_INPUT)

    return wrapper


def _in_sweep() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:  # no Hydra app running (the Python API)
        return False


def shown(text) -> str:
    """``text`` (a file name, say) on one line, as it is: control characters, a newline among
    them, escaped; the C1 controls too (a terminal's 8-bit CSI, the NEL line break), the Unicode
    line and paragraph separators, which split lines as much as a newline does, and the
    bidirectional marks and overrides, which show a name's letters in another order."""
    return HIDDEN.sub(lambda m: m.group().encode("unicode_escape").decode(), str(text))


HIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def fail(message: str, status: int):
    """End the command: ``netlab: error: MESSAGE`` as one paragraph on stderr, and ``status``."""
    message = " ".join(message.split())
    log.debug("error: %s", message)
    print(f"netlab: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(status) from None


class SweepReport(Callback):
    """A Hydra callback: at the end of a sweep, one paragraph naming the jobs that failed, and
    exit status 2 when any did (0 when all finished)."""

    def on_multirun_end(self, config, **kwargs) -> None:
        root = Path(config.hydra.sweep.dir)
        jobs = [p for p in root.iterdir() if p.is_dir() and (p / ".hydra").is_dir()] if root.is_dir() else []
        failed = []
        for job in sorted(jobs):
            try:
                failed.append(json.loads(read_text(job / FAILURE_FILE)))
            except (OSError, ValueError):
                continue
        if failed:
            said = "; ".join(f"job {f.get('job')} ({' '.join(f.get('overrides', []))}): "
                             f"{str(f.get('message')).rstrip('.')}" for f in failed[:5])
            fail(f"{len(failed)} of {len(jobs)} jobs failed, the others finished: {said}"
                 f"{'; ...' if len(failed) > 5 else ''}. Each failed job's folder holds {FAILURE_FILE}; "
                 f"python -m netlab.summarize {root} shows them all", EXIT_BAD_INPUT)


def command(schema=None):
    """Wrap a ``@hydra.main`` function so that Hydra's own refusals of the command line (an
    unknown option or key, a wrong type, an override it cannot parse), raised before the task
    starts, are one ``netlab: error:`` paragraph with the valid choices or the nearest key, and
    exit status 2 like every other bad input; a crash inside the task keeps status 1 and its
    traceback. ``schema`` is the command's config dataclass (for the nearest key)."""

    def wrap(hydra_main):
        @functools.wraps(hydra_main)
        def run(*args, **kwargs):
            _State.task_started = False
            for stream in (sys.stdout, sys.stderr):  # a file name the terminal cannot show is escaped, not a crash
                if hasattr(stream, "reconfigure"):
                    stream.reconfigure(errors="backslashreplace")
            if _check_flags().help:
                _lazy_help_fields()
            before = os.environ.get("HYDRA_FULL_ERROR")
            os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises instead of printing its own report
            try:
                return hydra_main(*args, **kwargs)
            except Exception as exc:
                if _State.task_started:
                    raise
                fail(hydra_refusal(exc, schema), EXIT_BAD_INPUT)
            finally:
                if before is None:
                    os.environ.pop("HYDRA_FULL_ERROR", None)
                else:
                    os.environ["HYDRA_FULL_ERROR"] = before

        return run

    return wrap


def _check_flags():
    """The command line's flags as Hydra's argument parser reads them, a mistake said in one
    paragraph (argparse would print its usage text instead)."""
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()

    def refuse(message):
        fail(f"{message}; overrides are key=value, flags (--help, --cfg job, -m, --config-dir DIR) "
             f"come first", EXIT_BAD_INPUT)

    parser.error = refuse
    return parser.parse_args(sys.argv[1:])


def _lazy_help_fields() -> None:
    """``--help`` in a second instead of five: Hydra 1.3 fills every field a help template may
    name ($FLAGS_HELP, $HYDRA_CONFIG_GROUPS, $APP_CONFIG_GROUPS, $CONFIG) before it looks at the
    template, and each group list copies the whole config store once per group. netlab's
    templates (help.py) name only $CONFIG and list their own groups, so the fields are worked
    out when the template names them: the same text, for any template."""
    import string
    from collections.abc import Mapping

    from hydra._internal.hydra import Hydra
    from omegaconf import OmegaConf

    def hydra_group(group: str) -> bool:
        return group.startswith("hydra/") or group == "hydra"

    def get_help(self, help_cfg, cfg, args_parser, resolve: bool) -> str:
        fields = {"FLAGS_HELP": lambda: self.format_args_help(args_parser),
                  "HYDRA_CONFIG_GROUPS": lambda: self.format_config_groups(hydra_group),
                  "APP_CONFIG_GROUPS": lambda: self.format_config_groups(lambda g: not hydra_group(g)),
                  "CONFIG": lambda: OmegaConf.to_yaml(cfg, resolve=resolve)}

        class OnDemand(Mapping):
            def __getitem__(self, name):
                if name not in fields:
                    raise ValueError(f"hydra.help.template names ${name}; a help template may name "
                                     f"{', '.join('$' + f for f in fields)} (write $$ for a dollar sign)")
                return fields[name]()

            def __iter__(self):
                return iter(fields)

            def __len__(self):
                return len(fields)

        return string.Template(help_cfg.template).substitute(OnDemand())

    Hydra.get_help = get_help


def hydra_refusal(exc: Exception, schema=None) -> str:
    """What Hydra refused, in netlab's words: the option and its choices, the key and the nearest
    known one, the value and the type it must have, or the override it could not read."""
    text, cause = str(exc), exc.__cause__
    missing = re.search(r"Could not find '([^']+)/([^'/]+)'\s+Available options in '[^']+':\s+(.*?)"
                        r"(?:\nConfig search path|$)", text, re.S)
    if missing:
        group, option, choices = missing.groups()
        return f"unknown option {group}={option}; choose one of: {', '.join(choices.split())}"
    unknown = re.match(r"Could not override '([^']+)'", text)
    if unknown:
        return unknown_key(unknown.group(1), schema)
    merging = re.match(r"Error merging override (.+)", text)
    if merging:
        override, reason = merging.group(1), _first_line(cause) if cause else ""
        key, _, value = override.partition("=")
        not_optional = re.match(r"field '([^']+)' is not Optional", reason)
        if not_optional:
            return f"{override}: {key.lstrip('+~')} needs a value; it cannot be null"
        if re.match(r"Value '.*' is not a valid bool", reason):
            return f"{override}: {key.lstrip('+~')} must be true or false, not {value!r}"
        convert = re.match(r"Value '(.*)' of type '\w+' could not be converted to (\w+)", reason)
        if convert:
            kind = {"Float": "a number", "Integer": "an integer", "Boolean": "true or false"}.get(convert.group(2),
                                                                                              convert.group(2))
            return f"{override}: {key.lstrip('+~')} must be {kind}, not {convert.group(1)!r}"
        return f"cannot apply {override}: {reason or text}"
    composing = re.match(r"In '([^']+)': \w+ raised while composing config:\s*(.+)", text, re.S)
    if composing:
        where, reason = composing.group(1), _first_line(composing.group(2)).split(" value: ")[0]
        hint = (" (a list is written one '- ' entry per line: a model file's layers are a list, "
                "'- conv: {out: 16, kernel: 5}')" if "ListConfig" in reason else "")
        return f"the config file {where}.yaml does not fit netlab's schema: {reason}{hint}"
    parse = re.match(r"(\w+Exception): (.+?)\n( *)\^", text)
    if parse:
        line, where = parse.group(2), len(parse.group(3)) - len(parse.group(1)) - 2
        bad = line[where] if 0 <= where < len(line) else ""
        hint = f" at {bad!r} (character {where + 1})" if bad else ""
        return (f"cannot read the override {line!r}{hint}: Hydra's grammar takes letters, digits and a few "
                f"symbols unquoted; quote the value inside the override, e.g. \"key='my value'\"")
    kept = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith(
        ("full_key:", "object_type=", "reference_type=", "provider=", "Config search path", "See https",
         "Set the environment variable"))]
    return " ".join(kept) or type(exc).__name__


def unknown_key(key: str, schema=None) -> str:
    """``unknown setting KEY`` with the nearest key the command knows."""
    import difflib

    from ..config import schema_keys

    key = key.lstrip("+~")
    known = schema_keys(schema) if schema is not None else []
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f"unknown setting {key}" + (f"; did you mean {close[0]}?" if close else
                                       "; python -m netlab.<command> --help lists every key")


def _first_line(exc) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _hydra_verbose() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig

        return bool(HydraConfig.get().verbose)
    except Exception:
        return False
