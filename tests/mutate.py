"""Mutation testing: do the tests notice when the code is broken on purpose?

Run from anywhere, with the project's Python (stdlib only)::

    python tests/mutate.py                                  # every mutation, whole tests/ directory
    python tests/mutate.py --module netlab/optim.py --tests tests/test_optim.py
    python tests/mutate.py --list                           # the table, and which entries are stale
    python tests/mutate.py -k adam-no-bias-m -k onecycle    # some entries (id, or part of one)

``MUTATIONS`` below is the table. Each entry is ``Mutation(id, file, old, new, what)``: in
``file`` (relative to the repository root) the text ``old``, which must occur exactly once,
is replaced by ``new`` -- a plausible bug, described in ``what``. For every selected entry the
runner copies the working tree (tracked files plus untracked files git does not ignore, as
they are on disk now) into a temporary directory, applies the replacement there only, and runs
``python -m pytest -x -q -p no:cacheprovider -m "not slow" -n auto <tests>`` in that copy with
``PYTHONPATH`` set to it. The working tree itself is never written to. An entry may name the
test files that mirror its module (``first``): they run first, in the order given (the file whose
test is meant to catch the mutant first, to fail fast), and when they already fail the mutant is
caught by the default suite too (which includes them), so the rest is skipped.

Outcomes, one line per mutation and a summary line:
  CAUGHT    pytest exited 1: some test failed, as it should.
  SURVIVED  pytest exited 0: every test passed with the bug in place; a test is missing.
  STALE     ``old`` does not occur exactly once in ``file`` (the code moved on): fix the entry.
  ERROR     any other exit status (collection error, no tests collected, a mutation that does
            not import); the end of pytest's output is printed below the line.
  TIMEOUT   pytest ran longer than --timeout seconds.
Exit status: 1 if any mutation survived; otherwise 2 if any was STALE, ERROR or TIMEOUT; else 0.

To add a mutation, append an entry: keep ``old`` short but unique in its file, and ``new``
valid Python (a mutant that does not import is an ERROR, not a catch).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple


class Mutation(NamedTuple):
    id: str
    file: str
    old: str
    new: str
    what: str
    first: tuple[str, ...] = ()  # test files to run before the whole suite (the module's mirror)


MUTATIONS: list[Mutation] = [
    # ------------------------------------------------------------------ netlab/optim.py
    Mutation("adam-no-bias-m", "netlab/optim.py",
             "(lr / (1 - b1 ** t)) * (m / denom)", "lr * (m / denom)",
             "Adam without bias correction of the first moment m"),
    Mutation("adam-no-bias-v", "netlab/optim.py",
             "xp.sqrt(v) * (1.0 / math.sqrt(1 - b2 ** t)) + self.hp.eps", "xp.sqrt(v) + self.hp.eps",
             "Adam without bias correction of the second moment v"),
    Mutation("weight-decay-ignored", "netlab/optim.py",
             "g = g + self.weight_decay * p", "g = g",
             "weight_decay ignored by every optimizer"),
    Mutation("nesterov-as-momentum", "netlab/optim.py",
             "g = g + momentum * buf if self.hp.nesterov else buf", "g = buf",
             "SGD nesterov=True treated as plain heavy-ball momentum"),
    Mutation("rmsprop-no-momentum", "netlab/optim.py",
             "            step = buf\n", "            step = step\n",
             "RMSprop momentum ignored (buffer kept but not used)"),
    Mutation("cosine-warmup-off-by-one", "netlab/optim.py",
             "base_lr * (step + 1) / self.warmup_steps", "base_lr * step / self.warmup_steps",
             "Cosine warm-up uses step instead of step + 1 (starts at 0)"),
    Mutation("cosine-min-lr-ignored", "netlab/optim.py",
             "return self.min_lr + 0.5 * (base_lr - self.min_lr) * (1.0 + math.cos(math.pi * t))",
             "return 0.5 * base_lr * (1.0 + math.cos(math.pi * t))",
             "Cosine decays to 0 whatever min_lr"),
    Mutation("onecycle-peak-off-by-one", "netlab/optim.py",
             "peak = float(self.pct_start * self.total_steps) - 1",
             "peak = float(self.pct_start * self.total_steps)",
             "OneCycle peak one step late (pct_start*total, not -1)"),
    Mutation("sgd-first-buffer-scaled", "netlab/optim.py",
             'buf = g if "momentum_buffer" not in state else momentum * state["momentum_buffer"] + g',
             'buf = (1 - momentum) * g if "momentum_buffer" not in state '
             'else momentum * state["momentum_buffer"] + g',
             "SGD's first momentum buffer is not the gradient"),
    Mutation("adagrad-eps-inside-sqrt", "netlab/optim.py",
             "p - lr * (g / (xp.sqrt(s) + self.hp.eps))", "p - lr * (g / xp.sqrt(s + self.hp.eps))",
             "Adagrad adds eps inside the square root"),
    Mutation("steplr-early", "netlab/optim.py",
             "base_lr * self.gamma ** (step // self.step_size)", "base_lr * self.gamma ** ((step + 1) // self.step_size)",
             "StepLR decays one step early"),
    Mutation("lr-of-next-step", "netlab/optim.py",
             "        lr = self.lr\n        self.steps += 1\n", "        self.steps += 1\n        lr = self.lr\n",
             "the optimizer uses the next step's lr"),
    # -------------------------------------------------------------- resume: netlab/resume.py
    Mutation("resume-from-step-0", "netlab/resume.py",
             "trainer.at = type(trainer.at)(**ck.counters)", "trainer.at = type(trainer.at)()",
             "resume checks the checkpoint, then retrains from step 0", ("tests/test_resume.py",)),
    Mutation("resume-ignores-weights", "netlab/resume.py",
             "trainer.model.load_state_dict(ck.model)", "trainer.model.load_state_dict(trainer.model.state_dict())",
             "resume keeps the fresh weights", ("tests/test_resume.py",)),
    Mutation("resume-ignores-rng", "netlab/resume.py",
             "rng.load_state_dict(ck.rngs[name])", "pass",
             "resume restarts the dropout and augmentation streams", ("tests/test_resume.py",)),
    Mutation("resume-drops-running-sums", "netlab/resume.py",
             "trainer.running.load_state_dict(ck.running)", "trainer.running.reset()",
             "resume forgets the training sums since the last evaluation", ("tests/test_resume.py",)),
    Mutation("resume-drops-history", "netlab/resume.py",
             "trainer.log = metrics.MetricsLog.from_columns(ck.metrics)", "trainer.log = metrics.MetricsLog()",
             "resume forgets the metrics so far", ("tests/test_resume.py",)),
    # ------------------------------------------------------------------ the loop: netlab/training.py
    Mutation("seed-ignored-by-init", "netlab/training.py",
             "nn.manual_seed(cfg.seed)", "nn.manual_seed(0)",
             "the initial weights ignore the seed", ("tests/test_training.py",)),
    Mutation("seed-ignored-by-streams", "netlab/training.py",
             "root = backend.Generator(cfg.seed)", "root = backend.Generator(0)",
             "dropout and augmentation ignore the seed", ("tests/test_training.py",)),
    Mutation("early-stop-one-late", "netlab/callbacks.py",
             "trainer.at.evals_since_best >= self.patience", "trainer.at.evals_since_best > self.patience",
             "early stopping one evaluation late", ("tests/test_callbacks.py",)),
    Mutation("no-epoch-end-evaluation", "netlab/training.py",
             "at.step % tc.eval_every == 0 or at.batch == self.steps_per_epoch or last",
             "at.step % tc.eval_every == 0 or last",
             "no evaluation at the end of an epoch", ("tests/test_training.py",)),
    Mutation("best-not-saved", "netlab/callbacks.py",
             '            trainer.save("best")\n', "            pass\n",
             "best.npz is never written", ("tests/test_callbacks.py",)),
    # ------------------------------------------------------- checkpoint writing and format
    Mutation("write-in-place", "netlab/outputs.py",
             'fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")',
             "fd, tmp = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), str(path)",
             "checkpoints written in place instead of atomically", ("tests/test_outputs.py",)),
    Mutation("temp-file-left", "netlab/outputs.py",
             "            os.unlink(tmp)\n", "            pass\n",
             "a failed write leaves its temporary file", ("tests/test_outputs.py",)),
    Mutation("rng-counter-not-saved", "netlab/checkpoint.py",
             'state["seed"], state["counter"]', 'state["seed"], 0',
             "checkpoints lose the random streams' counters", ("tests/test_checkpoint.py",)),
    Mutation("optimizer-state-not-saved", "netlab/checkpoint.py",
             "out.update({OPTIM + k: v for k, v in self.optimizer.items()})", "pass",
             "checkpoints lose the optimizer state", ("tests/test_checkpoint.py", "tests/test_resume.py")),
    # ---------------------------------------------------------------------------- layers
    Mutation("input-grad-false-skips-conv-grads", "netlab/nn/im2col.py",
             "    dy2 = xp.reshape(xp.permute_dims(dy, CHWN), (layer.out_channels, -1))\n",
             "    if not input_grad:\n        return None\n"
             "    dy2 = xp.reshape(xp.permute_dims(dy, CHWN), (layer.out_channels, -1))\n",
             "backward(input_grad=False) returns before the conv fills its gradients", ("tests/test_nn.py",)),
    Mutation("conv-bias-grad-halved", "netlab/nn/im2col.py",
             'layer.grads["bias"] = xp.sum(dy2, axis=1)', 'layer.grads["bias"] = 0.5 * xp.sum(dy2, axis=1)',
             "conv bias gradient wrong", ("tests/test_nn.py",)),
    Mutation("fft-conv-not-conjugated", "netlab/nn/fft.py",
             "y = xp.conj(kernel) @ spectrum", "y = kernel @ spectrum",
             "the FFT conv computes a convolution, not PyTorch's correlation", ("tests/test_nn.py",)),
    Mutation("fft-conv-too-short", "netlab/nn/fft.py",
             "n = max(size + pad, kernel, size + 2 * pad - kernel + 1)", "n = max(size + pad, kernel)",
             "the FFT length ignores outputs longer than image + padding", ("tests/test_nn.py",)),
    Mutation("fft-conv-weight-grad-unrolled", "netlab/nn/fft.py",
             "taps = ([(a - ph) % lengths[0] for a in range(kh)]", "taps = ([(a + ph) % lengths[0] for a in range(kh)]",
             "the FFT conv's weight gradient is read at the wrong taps", ("tests/test_nn.py",)),
    Mutation("dft-conv-not-conjugated", "netlab/nn/dft.py",
             "_real_blocks(kr, np.negative(ki))", "_real_blocks(kr, ki)",
             "the planar FFT conv multiplies by the kernel's spectrum, not its conjugate", ("tests/test_nn.py",)),
    Mutation("dft-conv-weight-grad-unrolled", "netlab/nn/dft.py",
             "rows = [(i - ph) % lh for i in range(kh) for _ in range(kw)]",
             "rows = [(i + ph) % lh for i in range(kh) for _ in range(kw)]",
             "the planar FFT conv's kernel taps are rolled the wrong way", ("tests/test_nn.py",)),
    Mutation("dft-conv-bias-scaled-wrong", "netlab/nn/dft.py",
             "* float(math.prod(lengths))", "* float(lengths[0])",
             "the planar FFT conv's bias at the DC frequency is not scaled by the transform's size", ("tests/test_nn.py",)),
    Mutation("dft-conv-weight-grad-imaginary-sign", "netlab/nn/dft.py",
             "np.subtract(g[:, :, 0, :, 1], g[:, :, 1, :, 0], out=parts[1])",
             "np.subtract(g[:, :, 1, :, 0], g[:, :, 0, :, 1], out=parts[1])",
             "the planar FFT conv's weight gradient takes the imaginary part with the wrong sign", ("tests/test_nn.py",)),
    Mutation("auto-never-fft", "netlab/nn/layers.py",
             'and layer.in_channels >= 4):\n        return "fft"', 'and layer.in_channels >= 4):\n        return "im2col"',
             "auto never takes the fast path", ("tests/test_nn.py",)),
    Mutation("maxpool-ties-to-last", "netlab/nn/layers.py",
             "greater = xp.astype(view > out, index_dtype)", "greater = xp.astype(view >= out, index_dtype)",
             "max-pool routes a tie to the last element", ("tests/test_nn.py",)),
    Mutation("avgpool-divisor", "netlab/nn/layers.py",
             "out * (1.0 / (kh * kw))", "out * (1.0 / (kh * kw + 1))",
             "average pooling divides by the wrong count", ("tests/test_nn.py",)),
    Mutation("phase-first-row-floored", "netlab/nn/im2col.py",
             "first = -(-(pad - phase) // stride) if pad > phase else 0", "first = (pad - phase) // stride if pad > phase else 0",
             "a strided convolution puts a phase's first pixel one row early (floor for ceil)", ("tests/test_nn.py",)),
    Mutation("phase-window-swaps-strides", "netlab/nn/im2col.py",
             "slice(j // sw, j // sw + out_w)", "slice(j // sh, j // sh + out_w)",
             "kernel column offsets are divided by the row stride", ("tests/test_nn.py",)),
    Mutation("phase-col2im-overwrites", "netlab/nn/im2col.py",
             "planes[_phase_window(i, j, sh, sw, out_h, out_w)] += cols", "planes[_phase_window(i, j, sh, sw, out_h, out_w)] = cols",
             "the layer's col2im overwrites overlapping windows instead of summing", ("tests/test_nn.py",)),
    Mutation("phase-gather-wrong-plane", "netlab/nn/im2col.py",
             "dx[image] = planes[plane]", "dx[image] = planes[(plane[1] % sh, plane[0] % sw) + plane[2:]]",
             "a strided convolution's dx reads its pixels from the wrong phase plane", ("tests/test_nn.py",)),
    Mutation("col2im-overwrites", "netlab/nn/im2col.py",
             "dx[window(i, j, sh, sw, out_h, out_w)] += cols", "dx[window(i, j, sh, sw, out_h, out_w)] = cols",
             "col2im overwrites overlapping windows instead of summing", ("tests/test_nn.py",)),
    Mutation("dropout-no-rescale", "netlab/nn/layers.py",
             "self.mask = xp.astype(keep, x.dtype) * (1.0 / (1.0 - self.p))", "self.mask = xp.astype(keep, x.dtype)",
             "inverted dropout without the 1/(1-p) scale", ("tests/test_nn.py",)),
    Mutation("batchnorm-biased-running-var", "netlab/nn/layers.py",
             " * (count / max(count - 1, 1))", "",
             "batch norm's running variance without Bessel's correction", ("tests/test_nn.py",)),
    Mutation("linear-weight-grad", "netlab/nn/layers.py",
             'self.grads["weight"] = xp.matrix_transpose(dy) @ self.x',
             'self.grads["weight"] = 0.5 * (xp.matrix_transpose(dy) @ self.x)',
             "linear weight gradient wrong", ("tests/test_nn.py",)),
    Mutation("relu-passes-negatives", "netlab/nn/layers.py",
             "dy * self.xp.astype(self.y > 0, dy.dtype)", "dy * self.xp.astype(self.y >= 0, dy.dtype)",
             "ReLU's backward lets every gradient through", ("tests/test_nn.py",)),
    Mutation("relu-swaps-with-anything", "netlab/nn/sequential.py",
             "type(layers[order[i]]) is ReLU and type(layers[order[i + 1]]) is MaxPool2d",
             "type(layers[order[i]]) is ReLU",
             "the pool-before-ReLU reordering moves ReLU past layers it does not commute with",
             ("tests/test_nn.py",)),
    # ------------------------------------------------------ data: split and normalisation
    Mutation("val-overlaps-train", "netlab/data/pipeline.py",
             "val_idx, train_idx = order[:n_val], order[n_val:]", "val_idx, train_idx = order[:n_val], order[n_val - 1:]",
             "one validation image is also trained on", ("tests/test_data.py",)),
    Mutation("stats-from-all-images", "netlab/data/pipeline.py",
             "mean, std = statistics(train)", "mean, std = statistics(train_images)",
             "normalisation statistics include the validation images", ("tests/test_data.py",)),
    Mutation("normalize-multiplies-std", "netlab/data/pipeline.py",
             "return (x - mean) * (1.0 / std)", "return (x - mean) * std",
             "normalisation multiplies by std", ("tests/test_data.py",)),
    Mutation("loader-ignores-start", "netlab/data/pipeline.py",
             "for b in range(start, len(self)):", "for b in range(0, len(self)):",
             "the loader restarts its epoch on resume", ("tests/test_data.py",)),
    Mutation("generator-counter-stuck", "netlab/backend.py",
             "        self.counter += 1\n", "",
             "every draw of a generator gives the same numbers", ("tests/test_backend.py",)),
    # ------------------------------------------------------------------------- evaluation
    Mutation("evaluation-skips-normalisation", "netlab/metrics.py",
             "xb, yb = normalize(x[lo:hi, ...], mean, std), y[lo:hi]", "xb, yb = x[lo:hi, ...], y[lo:hi]",
             "evaluation feeds unnormalised images", ("tests/test_metrics.py",)),
    Mutation("confusion-transposed", "netlab/metrics.py",
             "return xp.matrix_transpose(true1h) @ pred1h", "return xp.matrix_transpose(pred1h) @ true1h",
             "the confusion matrix is transposed", ("tests/test_metrics.py",)),
    Mutation("correct-uses-argmin", "netlab/losses.py",
             "hits = xp.argmax(logits, axis=1) == xp.astype(labels, xp.int64)",
             "hits = xp.argmin(logits, axis=1) == xp.astype(labels, xp.int64)",
             "accuracy counts the least likely class", ("tests/test_losses.py",)),
    # ------------------------------------------------------------------------- prediction
    Mutation("digit-always-inverted", "netlab/data/images.py",
             "    if np.median(border) > 0.5:\n        gray = 1.0 - gray", "    if True:\n        gray = 1.0 - gray",
             "a user's digit is always inverted", ("tests/test_data.py",)),
    Mutation("digit-not-centred", "netlab/data/images.py",
             "top = int(np.clip(round((size - 1) / 2 - cy), 0, size - new_h))", "top = 0",
             "a user's digit is not centred by mass", ("tests/test_data.py",)),
    Mutation("predict-skips-normalisation", "netlab/inference.py",
             "return normalize(backend.from_numpy(self.trained.xp, x), self.trained.mean, self.trained.std)",
             "return backend.from_numpy(self.trained.xp, x)",
             "predict feeds an unnormalised image", ("tests/test_inference.py",)),
    # ------------------------------------------------------------- config, sweeps, commands
    Mutation("val-fraction-unchecked", "netlab/config.py",
             "val_fraction: float = setting(0.1, FRACTION)", "val_fraction: float = setting(0.1)",
             "data.val_fraction is not checked", ("tests/test_config.py",)),
    Mutation("exit-status-1", "netlab/cli/exits.py",
             "EXIT_BAD_INPUT, EXIT_INTERRUPTED = 2, 130", "EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 130",
             "user errors exit 1 instead of the documented 2", ("tests/test_cli.py",)),
    Mutation("optuna-loses-weight-decay", "conf/sweep/optuna_lr.yaml",
             "      optimizer.weight_decay: tag(log, interval(1e-6, 1e-3))\n", "",
             "the Optuna search space loses weight_decay", ("tests/test_experiments.py",)),
    Mutation("summary-repeats-common-overrides", "netlab/cli/summarize.py",
             'r["overrides"] = " ".join(o for o in r.pop("shown") if o not in common) or "(defaults)"',
             'r["overrides"] = " ".join(r.pop("shown")) or "(defaults)"',
             "the sweep summary does not tell runs apart", ("tests/test_experiments.py",)),
    Mutation("study-not-a-sweep", "conf/experiment/study_lr.yaml",
             "  mode: MULTIRUN", "  mode: RUN",
             "a study preset runs one ordinary run without -m", ("tests/test_config.py",)),
    # ------------------------------------------------------------------------ reliability
    Mutation("no-run-folder-lock", "netlab/outputs.py",
             "fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)", "pass",
             "two runs may write into one folder", ("tests/test_outputs.py",)),
    Mutation("finished-run-overwritten", "netlab/outputs.py",
             "if held and not resumes_here:", "if False:",
             "a folder holding a finished run is written over", ("tests/test_outputs.py",)),
    Mutation("ctrl-c-not-deferred", "netlab/console.py",
             "                    self._previous[signum] = signal.signal(signum, self._handle)",
             "                    pass",
             "a Ctrl-C can land inside a checkpoint write", ("tests/test_console.py",)),
    Mutation("non-finite-state-saved", "netlab/callbacks.py",
             "        if not all_finite(xp, arrays.values()):", "        if False:",
             "weights are saved without checking they are finite", ("tests/test_callbacks.py",)),
    Mutation("resume-ignores-changed-settings", "netlab/resume.py",
             "    if changed:\n", "    if False:\n",
             "a resumed run with another seed or batch size continues silently", ("tests/test_resume.py",)),
    Mutation("no-model-size-bound", "netlab/models.py",
             "if self.parameters > MAX_PARAMETERS or values > MAX_ACTIVATIONS:", "if False:",
             "a model file may ask for any size", ("tests/test_models.py",)),
    Mutation("idx-counts-checked-late", "netlab/data/datasets.py",
             "if image_shape[0] != label_shape[0]:", "if False:",
             "IDX files are decompressed before their counts are compared", ("tests/test_data.py",)),
    Mutation("exif-ignored", "netlab/data/images.py",
             "img = ImageOps.exif_transpose(img)", "img = img",
             "photos are read sideways", ("tests/test_data.py",)),
    Mutation("16-bit-clipped", "netlab/data/images.py",
             'if img.mode.startswith("I;16"):', "if False:",
             "16-bit images go through convert('L') and clip", ("tests/test_data.py",)),
    # ---------------------------------------------------------------------------------------------
    # Issue 24: the suite's blind spots. Bugs that vanish at the values tests happen to use (gamma
    # = 1, square padding and strides, equal probabilities, evaluation and checkpoints on the same
    # steps, a constant lr, default sizes), forward maths consistent with its own backward, wiring
    # (settings that never reach their code), text that is there but wrong, resume state beyond the
    # bit-identical test, and the edges of the random numbers. Caught by tests/references.py and
    # the property tests.
    # ------------------------------------------------------------ layers: forward, gamma != 1, squares
    Mutation("bn-backward-mean-of-dy", "netlab/nn/layers.py",
             "        dx -= (gb / count)[:, None]\n        dx *= scale",
             "        dx *= scale\n        dx -= (gb / count)[:, None]",
             "batch norm's backward subtracts the mean of dy unscaled (right only at gamma / std = 1)", ("tests/test_nn.py",)),
    Mutation("bn-backward-projection-of-dy", "netlab/nn/layers.py",
             "dx = xhat * (gw / -count)[:, None]", "dx = xhat * (gw * self.params[\"weight\"] / -count)[:, None]",
             "batch norm's backward scales the projection on xhat by gamma twice (right only at gamma = 1)", ("tests/test_nn.py",)),
    Mutation("bn-eval-backward-without-gamma", "netlab/nn/layers.py",
             "return self.restore(dy * scale)", "return self.restore(dy * self.inv_std)",
             "batch norm's evaluation-mode dx forgets gamma", ("tests/test_nn.py",)),
    Mutation("bn-beta-inside-gamma", "netlab/nn/layers.py",
             'y += self.params["bias"][:, None]', 'y += self.params["weight"][:, None] * self.params["bias"][:, None]',
             "batch norm scales beta by gamma (gamma * (xhat + beta))", ("tests/test_nn.py",)),
    Mutation("bn-eval-uses-batch-statistics", "netlab/nn/layers.py",
             "        if self.training:\n            mean = xp.sum(rows, axis=1, keepdims=True) / count",
             "        if True:\n            mean = xp.sum(rows, axis=1, keepdims=True) / count",
             "batch norm normalises with the batch's statistics in evaluation too", ("tests/test_nn.py",)),
    Mutation("bn-eps-outside-sqrt", "netlab/nn/layers.py",
             "self.inv_std = 1.0 / xp.sqrt(var + self.eps)", "self.inv_std = 1.0 / (xp.sqrt(var) + self.eps)",
             "batch norm adds eps to the standard deviation, not the variance", ("tests/test_nn.py",)),
    Mutation("maxpool-pads-with-zeros", "netlab/nn/layers.py",
             "enumerate(self._windows(x, value=-math.inf))", "enumerate(self._windows(x))",
             "max pooling pads with zeros, so a negative window's max becomes 0", ("tests/test_nn.py",)),
    Mutation("pool-skips-zeros-of-uncovered-edge", "netlab/nn/layers.py",
             "covered = tiled and (h, w) == (kh * self.out_hw[0], kw * self.out_hw[1])", "covered = tiled",
             "a pool whose windows leave the last row or column out hands back garbage there instead of zeros",
             ("tests/test_nn.py",)),
    Mutation("pool-strides-swapped", "netlab/nn/layers.py",
             "        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding\n        n, c, h, w",
             "        (kh, kw), (sw, sh), (ph, pw) = self.kernel_size, self.stride, self.padding\n        n, c, h, w",
             "pooling reads its (height, width) stride as (width, height)", ("tests/test_nn.py",)),
    Mutation("pool-padding-swapped", "netlab/nn/layers.py",
             "        self.padding = pair(padding)\n", "        self.padding = pair(padding)[::-1]\n",
             "pooling pads height by the width's padding and the other way round", ("tests/test_nn.py",)),
    Mutation("conv-padding-swapped", "netlab/nn/layers.py",
             "pair(kernel_size), pair(stride), pair(padding)", "pair(kernel_size), pair(stride), pair(padding)[::-1]",
             "convolution pads height by the width's padding and the other way round", ("tests/test_nn.py",)),
    Mutation("gelu-constant", "netlab/nn/layers.py",
             "C = math.sqrt(2.0 / math.pi)", "C = math.sqrt(2.0 * math.pi)",
             "GELU's tanh form with sqrt(2 pi) for sqrt(2 / pi) (forward and backward agree)", ("tests/test_nn.py",)),
    # ---------------------------------------------------------------- loss and optimizers
    Mutation("label-smoothing-over-k-minus-1", "netlab/losses.py",
             "target = target * (1.0 - smoothing) + smoothing / k",
             "target = target * (1.0 - smoothing) + smoothing / (k - 1)",
             "label smoothing spreads s / (K - 1), not s / K (targets no longer sum to 1)", ("tests/test_losses.py",)),
    Mutation("adamw-decay-as-l2", "netlab/optim.py",
             "    DECOUPLED = True\n", "    DECOUPLED = False\n",
             "AdamW's weight decay added to the gradient, as Adam's L2", ("tests/test_optim.py",)),
    Mutation("adamw-decay-at-base-lr", "netlab/optim.py",
             "p = p * (1.0 - lr * self.weight_decay)", "p = p * (1.0 - self.base_lr * self.weight_decay)",
             "AdamW decays at the base lr, not the step's (right only with a constant lr)", ("tests/test_optim.py",)),
    Mutation("clip-norm-ignored", "netlab/optim.py",
             "scale = self._clip_scale(named) if self.hp.clip_norm else None", "scale = None",
             "optimizer.clip_norm has no effect", ("tests/test_optim.py",)),
    Mutation("clip-norm-of-last-parameter", "netlab/optim.py",
             "total = part if total is None else total + part", "total = part",
             "clipping measures the last parameter's norm, not the global one", ("tests/test_optim.py",)),
    Mutation("clip-scales-up", "netlab/optim.py",
             "return xp.minimum(self.hp.clip_norm / (xp.sqrt(total) + 1e-6), 1.0)",
             "return self.hp.clip_norm / (xp.sqrt(total) + 1e-6)",
             "clipping also scales small gradients up to clip_norm", ("tests/test_optim.py",)),
    # ---------------------------------------------------- the loop: evaluation and checkpoint steps
    Mutation("evaluate-on-checkpoint-steps", "netlab/training.py",
             "evaluate = at.step % tc.eval_every == 0 or", "evaluate = at.step % tc.checkpoint_every == 0 or",
             "evaluation follows checkpoint_every (right when both are equal)", ("tests/test_training.py",)),
    Mutation("checkpoint-on-evaluation-steps", "netlab/training.py",
             "save = at.step % tc.checkpoint_every == 0 or last", "save = at.step % tc.eval_every == 0 or last",
             "last.npz follows eval_every (right when both are equal)", ("tests/test_training.py",)),
    # ------------------------------------------------------------- wiring: settings that never arrive
    Mutation("threads-ignored", "netlab/training.py",
             "            backend.set_threads(cfg.backend.threads)", "            backend.set_threads(None)",
             "backend.threads has no effect", ("tests/test_config.py", "tests/test_training.py")),
    Mutation("eval-batch-size-ignored", "netlab/training.py",
             "metrics.evaluate(self.model, x, y, self.cfg.train.eval_batch_size, self.mean, self.std)",
             "metrics.evaluate(self.model, x, y, 1000, self.mean, self.std)",
             "train.eval_batch_size has no effect (its default is used)", ("tests/test_config.py", "tests/test_training.py")),
    Mutation("val-fraction-not-passed", "netlab/training.py",
             "val_fraction=dc.val_fraction, seed=cfg.seed,", "val_fraction=0.1, seed=cfg.seed,",
             "data.val_fraction never reaches the split (its default is used)", ("tests/test_config.py", "tests/test_training.py")),
    Mutation("label-smoothing-not-passed", "netlab/training.py",
             "losses.softmax_cross_entropy(logits, yb, self.cfg.train.label_smoothing)",
             "losses.softmax_cross_entropy(logits, yb)",
             "train.label_smoothing never reaches the loss", ("tests/test_config.py", "tests/test_training.py")),
    Mutation("normalize-always", "netlab/training.py",
             "(self.splits.mean, self.splits.std) if dc.normalize else (0.0, 1.0)", "(self.splits.mean, self.splits.std)",
             "data.normalize=false still normalises", ("tests/test_config.py", "tests/test_training.py")),
    Mutation("conv-algorithm-not-passed", "netlab/training.py",
             "self.model = models.build(cfg.model, cfg.backend.conv).to(xp)", "self.model = models.build(cfg.model).to(xp)",
             "backend.conv never reaches the model (auto everywhere)", ("tests/test_config.py", "tests/test_training.py")),
    Mutation("dropout-default-fixed", "netlab/models.py",
             'p = a.get("p", b.cfg.dropout)', 'p = a.get("p", 0.25)',
             "model.dropout is ignored (the seed CNN's 0.25 is used)", ("tests/test_config.py", "tests/test_models.py")),
    Mutation("augment-translate-with-rotate-p", "netlab/data/augment.py",
             "shifted = rng.random(xp, (n,), dtype, device) < s.translate_p",
             "shifted = rng.random(xp, (n,), dtype, device) < s.rotate_p",
             "shifts are drawn with rotate_p (right when both probabilities are equal)", ("tests/test_data.py",)),
    Mutation("augment-degrees-not-radians", "netlab/data/augment.py",
             "s.rotate_p, s.degrees * math.pi / 180, dtype", "s.rotate_p, s.degrees, dtype",
             "rotation angles drawn in [-degrees, degrees] radians", ("tests/test_data.py",)),
    Mutation("augment-same-shift-both-axes", "netlab/data/augment.py",
             "            dy = xp.where(shifted, rng.uniform(xp, -s.pixels, s.pixels, (n,), dtype, device), 0.0)\n",
             "            dy = dx\n",
             "the y shift repeats the x shift (diagonal shifts only)", ("tests/test_data.py",)),
    Mutation("augment-translation-needs-rotation", "netlab/data/augment.py",
             "if s.rotate_p or s.translate_p:", "if s.rotate_p:",
             "translate_p alone (rotate_p=0) never shifts", ("tests/test_data.py",)),
    Mutation("augment-positive-values-only", "netlab/data/augment.py",
             "value = rng.uniform(xp, -strength, strength, (n,), dtype, device)",
             "value = rng.uniform(xp, 0.0, strength, (n,), dtype, device)",
             "angles and shifts only ever positive", ("tests/test_data.py",)),
    Mutation("augment-blotch-with-noise-p", "netlab/data/augment.py",
             "x = blotch(xp, x, rng, s.blotch_p, s.blotch_min, s.blotch_max)",
             "x = blotch(xp, x, rng, s.noise_p, s.blotch_min, s.blotch_max)",
             "blotches drawn with noise_p (right when both are equal, as the defaults' 0)", ("tests/test_data.py",)),
    Mutation("augment-noise-std-fixed", "netlab/data/augment.py",
             "x = noise(xp, x, rng, s.noise_p, s.noise_std)", "x = noise(xp, x, rng, s.noise_p, 0.1)",
             "data.augment.noise_std is ignored (its default 0.1 is used)", ("tests/test_data.py",)),
    Mutation("blotch-never-largest", "netlab/data/augment.py",
             "span = size_max - size_min + 1", "span = size_max - size_min",
             "a blotch of side blotch_max is never drawn", ("tests/test_data.py",)),
    Mutation("uniform-closed-at-zero", "netlab/backend.py",
             "xp.minimum((top + 0.5) * (1.0 / (1 << 24)),", "xp.minimum(top * (1.0 / (1 << 24)),",
             "random() can return 0, and Box-Muller log(0) = -inf", ("tests/test_data.py", "tests/test_backend.py")),
    Mutation("uniform-reaches-one-in-float32", "netlab/backend.py",
             "return xp.minimum((top + 0.5) * (1.0 / (1 << 24)), 1.0 - 2.0 ** -24)",
             "return (top + 0.5) * (1.0 / (1 << 24))",
             "float32 random() rounds the top draw to exactly 1.0 (p = 1 then fails to pick)",
             ("tests/test_data.py", "tests/test_backend.py")),
    Mutation("augment-x-shift-chosen-per-axis", "netlab/data/augment.py",
             "            dx = xp.where(shifted, rng.uniform(xp, -s.pixels, s.pixels, (n,), dtype, device), 0.0)\n",
             "            dx = self._pick(xp, rng, n, s.translate_p, s.pixels, dtype, device)\n",
             "the x shift picks its images apart from the y shift (images shifted with 1 - (1 - p)^2)",
             ("tests/test_data.py",)),
    # -------------------------------------------------- text that is there but wrong; resume state
    Mutation("early-stop-names-the-last-step", "netlab/callbacks.py",
             "% at step {trainer.at.best_step})", "% at step {trainer.at.step})",
             "the early-stopping line names the current step as the best", ("tests/test_callbacks.py",)),
    Mutation("epoch-line-from-zero", "netlab/callbacks.py",
             '"epoch %d of %d done in %s", at.epoch + 1,', '"epoch %d of %d done in %s", at.epoch,',
             "the epoch line counts epochs from 0", ("tests/test_callbacks.py",)),
    Mutation("done-line-swaps-test-and-val", "netlab/callbacks.py",
             '100 * results["test_accuracy"], 100 * results["val_accuracy"],',
             '100 * results["val_accuracy"], 100 * results["test_accuracy"],',
             "the last log line gives validation accuracy as test accuracy", ("tests/test_callbacks.py",)),
    Mutation("summary-best-by-best-val-column", "netlab/cli/summarize.py",
             'key=lambda r: r["val_accuracy"], default=None)', 'key=lambda r: r["best_val_accuracy"], default=None)',
             "the summary's best run is chosen by another column", ("tests/test_cli.py",)),
    Mutation("resume-forgets-best-val", "netlab/resume.py",
             "trainer.best_val, trainer.train_time, trainer.elapsed_before = ck.best_val,",
             "trainer.best_val, trainer.train_time, trainer.elapsed_before = -1.0,",
             "a resumed run forgets the best validation accuracy before the interruption",
             ("tests/test_training.py", "tests/test_resume.py")),
    Mutation("snapshot-drops-best-val", "netlab/resume.py",
             "best_val=trainer.best_val, train_time_s=", "best_val=-1.0, train_time_s=",
             "checkpoints do not keep the best validation accuracy", ("tests/test_training.py", "tests/test_resume.py")),
    # --------------------------------------------------------- command defaults that matter for safety
    Mutation("serve-all-interfaces-by-default", "netlab/config.py",
             'host: str = "127.0.0.1"', 'host: str = "0.0.0.0"',
             "the page listens on every interface by default", ("tests/test_serve.py", "tests/test_config.py")),
    Mutation("serve-any-host-by-default", "netlab/cli/serve.py",
             'hosts = cfg.allowed_hosts or (LOOPBACK_HOSTS if _loopback(cfg.host) else ["*"])',
             'hosts = cfg.allowed_hosts or ["*"]',
             "the page answers any Host header on 127.0.0.1 (DNS rebinding)", ("tests/test_serve.py",)),
    Mutation("export-out-unchecked", "netlab/cli/export.py",
             'check_output(cfg.out, "out", inputs=[source])', "pass",
             "export out= may write over a run's own files", ("tests/test_cli.py", "tests/test_export.py")),
    Mutation("mlflow-ignores-environment", "netlab/loggers.py",
             'uri = self.settings.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")',
             "uri = self.settings.tracking_uri",
             "logger=mlflow ignores MLFLOW_TRACKING_URI (checked without mlflow installed)",
             ("tests/test_config.py", "tests/test_loggers.py")),
    Mutation("results-not-a-run-file", "netlab/outputs.py",
             'RUN_FILES = ("results.json", "metrics.csv",', 'RUN_FILES = ("metrics.csv",',
             "an output may be written over a run's results.json", ("tests/test_cli.py", "tests/test_outputs.py")),
]

_ids = [m.id for m in MUTATIONS]
assert len(_ids) == len(set(_ids)), f"duplicate mutation ids: {sorted(i for i in _ids if _ids.count(i) > 1)}"

ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- helpers
def repo_files(root: Path) -> list[str]:
    """Tracked files and untracked files git does not ignore, relative to ``root``."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=root, check=True, capture_output=True).stdout
    return sorted({f for f in out.decode().split("\0") if f})


def copy_tree(root: Path, files: list[str], dest: Path) -> None:
    for rel in files:
        src = root / rel
        if not src.exists() and not src.is_symlink():  # deleted in the working tree
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir() and not src.is_symlink():  # a submodule
            shutil.copytree(src, target, symlinks=True)
        else:
            shutil.copy2(src, target, follow_symlinks=False)


def occurrences(root: Path, m: Mutation) -> int:
    path = root / m.file
    if not path.is_file():
        return 0
    return path.read_text(encoding="utf-8").count(m.old)


def normalise(root: Path, file: str) -> str:
    p = Path(file)
    p = p.resolve() if p.is_absolute() else (Path.cwd() / p).resolve()
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return Path(file).as_posix().removeprefix("./")


def mirror(root: Path, file: str) -> list[str]:
    """The test module that mirrors ``file`` (netlab/optim.py -> tests/test_optim.py), if any."""
    test = Path("tests") / f"test_{Path(file).stem}.py"
    return [test.as_posix()] if (root / test).is_file() else []


def select(mutations, modules, keys):
    chosen = mutations
    if modules:
        chosen = [m for m in chosen if m.file in modules]
    if keys:
        chosen = [m for m in chosen if any(k == m.id or k in m.id for k in keys)]
    return chosen


def run_pytest(copy: Path, tests: list[str], timeout: float, workers: str = "auto"):
    """(status, seconds, output) of pytest in ``copy``, on ``workers`` xdist workers (``0``: in
    one process, what a few mirror files run fastest in)."""
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", "not slow", "-n", workers,
           *tests]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=copy, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # pytest and anything it started, nothing else
        except ProcessLookupError:
            pass
        out, _ = proc.communicate()
        return "TIMEOUT", time.perf_counter() - t0, out
    seconds = time.perf_counter() - t0
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # anything the tests started and left running
    except ProcessLookupError:
        pass
    status = {0: "SURVIVED", 1: "CAUGHT"}.get(proc.returncode, "ERROR")
    if status == "ERROR":
        out = f"pytest exit status {proc.returncode}\n{out}"
    return status, seconds, out


def imports_from(copy: Path, file: str) -> str | None:
    """An error message if the top-level package of ``file`` would not be imported from ``copy``
    (an installed copy shadowing PYTHONPATH would make every mutant survive)."""
    parts = Path(file).parts
    if not file.endswith(".py") or len(parts) < 2 or not (copy / parts[0] / "__init__.py").is_file():
        return None
    code = ("import importlib.util, sys; s = importlib.util.find_spec(sys.argv[1]); "
            "print(s.origin if s else '')")
    env = dict(os.environ, PYTHONPATH=str(copy))
    res = subprocess.run([sys.executable, "-c", code, parts[0]], cwd=copy, env=env, capture_output=True, text=True)
    origin = res.stdout.strip()
    if not origin or not Path(origin).resolve().is_relative_to(copy.resolve()):
        return f"package {parts[0]!r} is imported from {origin or '(nowhere)'!r}, not from the copy"
    return None


# -------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--module", action="append", default=[],
                    help="only mutations of this file (repeatable), e.g. netlab/optim.py")
    ap.add_argument("-k", dest="keys", action="append", default=[],
                    help="only the mutation with this id, or whose id contains it (repeatable)")
    ap.add_argument("--tests", default="tests",
                    help='what pytest runs, one string split like a shell line (default: "tests")')
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per mutation (default 600)")
    ap.add_argument("--list", action="store_true", help="print the selected mutations and exit")
    args = ap.parse_args(argv)

    modules = {normalise(ROOT, m) for m in args.module}
    chosen = select(MUTATIONS, modules, args.keys)
    if not chosen:
        print("no mutation matches --module/-k", file=sys.stderr)
        return 2
    width = max(len(m.id) for m in chosen)
    fwidth = max(len(m.file) for m in chosen)

    if args.list:
        for m in chosen:
            n = occurrences(ROOT, m)
            state = "ok" if n == 1 else f"STALE (found {n} times)"
            print(f"{m.id:<{width}}  {m.file:<{fwidth}}  {state:<8}  {m.what}")
        return 0

    tests = shlex.split(args.tests)
    files = repo_files(ROOT)
    counts: dict[str, int] = {}
    total_t0 = time.perf_counter()
    for m in chosen:
        n = occurrences(ROOT, m)
        details = ""
        if n != 1:
            status, seconds = "STALE", 0.0
            details = f"`old` found {n} times in {m.file}, expected exactly once"
        else:
            with tempfile.TemporaryDirectory(prefix=f"mutate-{m.id}-") as tmp:
                copy = Path(tmp)
                copy_tree(ROOT, files, copy)
                target = copy / m.file
                text = target.read_text(encoding="utf-8")
                target.write_text(text.replace(m.old, m.new, 1), encoding="utf-8")
                problem = imports_from(copy, m.file)
                if problem:
                    status, seconds, details = "ERROR", 0.0, problem
                else:
                    status, seconds, out = "SURVIVED", 0.0, ""
                    first = list(m.first) or mirror(copy, m.file)
                    if first and args.tests == "tests":
                        status, seconds, out = run_pytest(copy, first, args.timeout, workers="0")
                    if status == "SURVIVED":
                        status, more, out = run_pytest(copy, tests, args.timeout)
                        seconds += more
                    if status in ("ERROR", "TIMEOUT"):
                        details = "\n".join(out.rstrip().splitlines()[-15:])
                    if status == "TIMEOUT":
                        details = f"killed after --timeout {args.timeout:g}s\n{details}".rstrip()
        counts[status] = counts.get(status, 0) + 1
        print(f"{m.id:<{width}}  {m.file:<{fwidth}}  {m.what:<60}  {status:<8}  {seconds:6.1f}s", flush=True)
        if details:
            print("    " + details.replace("\n", "\n    "), flush=True)

    order = ["CAUGHT", "SURVIVED", "STALE", "ERROR", "TIMEOUT"]
    summary = ", ".join(f"{counts.get(s, 0)} {s.lower()}" for s in order if counts.get(s, 0) or s in order[:2])
    print(f"{len(chosen)} mutations: {summary} in {time.perf_counter() - total_t0:.1f}s")
    if counts.get("SURVIVED"):
        return 1
    if any(counts.get(s) for s in ("STALE", "ERROR", "TIMEOUT")):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
