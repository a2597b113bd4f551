"""``--help`` of every command: its keys, each with its default and description, written once.

A key's description is the comment beside its field in the schema (``netlab/config.py``),
read with Python's own tokenizer; its default is the dataclass's. Each command's help lists
only that command's keys and config groups.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import sys
import tokenize
import typing

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from .. import config as schema


@functools.lru_cache(maxsize=None)
def _field_comments(module: str) -> dict[str, dict[str, str]]:
    """``class name -> {field -> the comment at the end of its line}`` for the top-level classes
    of ``module``, from one tokenizer pass and one parse of its source (``inspect.getsource`` per
    class re-parses the module each time: most of a command's start-up time, for help that is
    built on every start)."""
    source = inspect.getsource(sys.modules[module])
    by_line: dict[int, tuple[str, str]] = {}
    lines: dict[int, list] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        lines.setdefault(tok.start[0], []).append(tok)
    for number, toks in lines.items():
        toks = [t for t in toks if t.type not in (tokenize.INDENT, tokenize.DEDENT, tokenize.NL, tokenize.NEWLINE)]
        if (len(toks) >= 3 and toks[0].type == tokenize.NAME and toks[1].string == ":"
                and toks[-1].type == tokenize.COMMENT):
            by_line[number] = (toks[0].string, toks[-1].string.lstrip("#").strip())
    return {node.name: dict(by_line[n] for n in range(node.lineno, node.end_lineno + 1) if n in by_line)
            for node in ast.parse(source).body if isinstance(node, ast.ClassDef)}


@functools.lru_cache(maxsize=None)
def comments(cls) -> dict[str, str]:
    """``field -> the comment at the end of its line`` in the source of ``cls`` and its bases."""
    out = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            out.update(_field_comments(klass.__module__).get(klass.__qualname__, {}))
    return out


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else MISSING


def key_lines(cls, prefix: str, only=None, skip=()) -> list[str]:
    """``  key (default ...): description`` for every field of ``cls`` (recursively), or of ``only``."""
    hints, notes, lines = typing.get_type_hints(cls), comments(cls), []
    for f in dataclasses.fields(cls):
        if (only is not None and f.name not in only) or f"{prefix}{f.name}" in skip:
            continue
        if dataclasses.is_dataclass(hints[f.name]):
            lines += key_lines(hints[f.name], f"{prefix}{f.name}.", skip=skip)
            continue
        value = _default(f)
        default = "" if value is MISSING or value == MISSING else f" (default {value!r})"
        lines.append(f"  {prefix}{f.name}{default}" + (f": {notes[f.name]}" if f.name in notes else ""))
    return lines


def _train_keys() -> list[str]:
    keys = []
    for name, cls in (("backend", schema.BackendConfig), ("data", schema.DataConfig), ("train", schema.TrainConfig),
                      ("model", schema.ModelConfig), ("optimizer", schema.OptimizerConfig)):
        keys += key_lines(cls, f"{name}.", skip=("model.layers",))
    common = {f.name for f in dataclasses.fields(schema.OptimizerConfig)}
    for name, cls in schema.OPTIMIZER_CONFIGS.items():
        own = [f.name for f in dataclasses.fields(cls) if f.name not in common or f.name == "lr"]
        keys += [line.replace(f"optimizer.{field} (", f"optimizer.{field} (optimizer={name}, ")
                 for line, field in zip(key_lines(cls, "optimizer.", own), own)]
    return keys + key_lines(schema.Config, "", ("seed", "debug"))


TRAIN_GROUPS = ("backend", "data", "model", "optimizer", "logger", "experiment", "sweep")
SAVED_GROUPS = ("backend", "model")  # model=NAME: the model file of weights that do not say theirs

# command -> (what it does, the keys it takes, its config groups)
COMMANDS = {
    "train": ("train one model; -m sweeps", _train_keys, TRAIN_GROUPS),
    "evaluate": ("test loss and accuracy, per-class accuracy and confusion matrix of a trained model",
                 lambda: key_lines(schema.EvaluateConfig, "", skip=("model",)), SAVED_GROUPS),
    "predict": ("the class and probabilities a trained model gives your own images",
                lambda: key_lines(schema.PredictConfig, "", skip=("model",)), SAVED_GROUPS),
    "export": ("a trained model as an ONNX graph or safetensors weights",
               lambda: key_lines(schema.ExportConfig, "", skip=("model",)), SAVED_GROUPS),
    "serve": ("the draw-a-digit page of a trained model, in your browser",
              lambda: key_lines(schema.ServeConfig, "", skip=("model",)), SAVED_GROUPS),
    "bench": ("training throughput of netlab beside PyTorch on the same net, batch and threads",
              lambda: key_lines(schema.BenchConfig, "", skip=("model",)), SAVED_GROUPS),
    "lr_find": ("the learning-rate range test: loss against an exponentially growing lr, and a suggestion",
                lambda: _train_keys() + key_lines(schema.RangeTestConfig, "lr_find."),
                ("backend", "data", "model", "optimizer", "experiment")),
}


def group_lines(groups) -> list[str]:
    """``group: option, option, ...`` for each config group, its options from the ConfigStore
    (the schema's groups) and from ``conf/`` (model files and presets)."""
    cs, lines = ConfigStore.instance(), []
    for group in groups:
        options = {p.stem for p in (schema.CONF_DIR / group).glob("*.yaml")}
        try:
            options |= {name.removesuffix(".yaml") for name in cs.list(group)}
        except (OSError, KeyError, ValueError, AttributeError):  # not a stored group
            pass
        lines.append(f"{group}: {', '.join(sorted(options))}")
    return lines


def template(command: str) -> str:
    """The text of ``python -m netlab.COMMAND --help``."""
    what, keys, groups = COMMANDS[command]
    return "\n".join([
        f"netlab-{command} (python -m netlab.{command}): {what}.", "",
        "== Groups (group=option) ==", *group_lines(groups), "",
        "== Keys (key=value) ==", *(k.replace("$", "$$") for k in keys()), "",  # $ is the template's
        "== This run's config ==", "$CONFIG",
        "Exit status: 0 done, 2 bad input, 130 interrupted, 1 a crash (a bug). See README.md.",
    ])


def register() -> None:
    """Each command's help as a ``hydra/help`` option, ``netlab_<command>``, which its conf/*.yaml picks."""
    cs = ConfigStore.instance()
    assert set(COMMANDS) == set(schema.COMMANDS)
    for command in COMMANDS:
        cs.store(group="hydra/help", name=f"netlab_{command}",
                 node={"app_name": f"netlab-{command}", "header": "", "footer": "", "template": template(command)})
