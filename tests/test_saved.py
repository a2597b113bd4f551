"""A trained model read back (netlab.saved): unusable weights or normalisation, and hostile
embedded configs, are refused rather than predicted with; weights from outside are used with
the model file and normalisation the user names, never a guess."""

from __future__ import annotations

import json

import numpy as np
import pytest

from netlab import checkpoint, saved
from netlab.data.datasets import DATASETS, load_split
from netlab.errors import CheckpointError
from conftest import FIXTURE, cli, exported, plain_safetensors, tampered


@pytest.mark.parametrize("key,value,message", [
    ("model.0.weight", np.nan, "model.0.weight holds NaN"),
    ("model.3.bias", np.inf, "model.3.bias holds NaN or infinite"),
    ("data_mean", np.nan, "field 'data_mean' must be a finite number"),
    ("data_std", 0.0, "field 'data_std' must be a finite number > 0"),
    ("data_std", np.inf, "field 'data_std' must be a finite number > 0"),
])
def test_unusable_weights_or_normalisation_are_refused_not_predicted_with(run, tmp_path, key, value, message):
    def change(a):
        a[key] = np.full_like(a[key], value) if a[key].shape else np.asarray(value)

    with pytest.raises(CheckpointError, match=message):
        saved.load(tampered(run, tmp_path, change))


@pytest.mark.parametrize("case,config,message", [
    ("billion laughs", "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                       "c: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n", "anchors, aliases or tags"),
    ("python object tag", "model: !!python/object/apply:os.system ['echo hi']\n", "anchors, aliases or tags"),
    ("not a mapping", "- 1\n- 2\n", "not a mapping"),
    ("not YAML", "model: [unclosed\n", "not valid YAML"),
    ("unknown key", "seed: 0\nsurprise: 1\n", "unknown setting surprise"),
    ("invalid value", "optimizer: {name: sgd, lr: -1}\n", "embedded config is invalid"),
])
def test_hostile_embedded_configs_are_refused(run, tmp_path, case, config, message):
    def change(a):
        a["config"] = np.asarray(config)

    with pytest.raises(CheckpointError, match=message):
        saved.load(tampered(run, tmp_path, change))


def test_evaluate_and_predict_take_outside_weights_with_a_model_file(run, tmp_path):
    pytest.importorskip("safetensors")
    from PIL import Image

    plain = plain_safetensors(run, tmp_path / "plain.safetensors")
    ck = checkpoint.read(run, "best")
    # weights that do not say how their images were normalised are never fed a guess: evaluate,
    # like predict and serve, asks for mean= and std=
    guessed = cli("netlab.evaluate", f"checkpoint={plain}", "model=seed_cnn", f"data.root={FIXTURE}",
                  "data.verify=false", cwd=tmp_path)
    assert guessed.returncode == 2 and "give mean= and std=" in guessed.stderr
    assert not (tmp_path / "evaluation_plain_test.json").exists()
    done = cli("netlab.evaluate", f"checkpoint={plain}", "model=seed_cnn", f"data.root={FIXTURE}",
               "data.verify=false", f"mean={ck.mean}", f"std={ck.std}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    ours = json.loads((tmp_path / "evaluation_plain_test.json").read_text())
    theirs = json.loads((run / "results.json").read_text())
    assert ours["test_accuracy"] == pytest.approx(theirs["test_accuracy_at_best_step"])  # same weights, same stats
    images, _ = load_split(DATASETS["mnist"], FIXTURE, "test", verify=False)
    images = images[:, 0]  # (N, 1, 28, 28): one channel
    Image.fromarray(255 - images[0]).save(tmp_path / "d.png")
    no_stats = cli("netlab.predict", f"checkpoint={plain}", "model=seed_cnn", f"image={tmp_path / 'd.png'}",
                   cwd=tmp_path)
    assert no_stats.returncode == 2 and "give mean= and std=" in no_stats.stderr
    with_stats = cli("netlab.predict", f"checkpoint={plain}", "model=seed_cnn", f"image={tmp_path / 'd.png'}",
                     f"mean={ck.mean}", f"std={ck.std}", "json=true", cwd=tmp_path)
    exported_answer = cli("netlab.predict", f"checkpoint={exported(run)}", f"image={tmp_path / 'd.png'}",
                          "json=true", cwd=tmp_path)
    assert with_stats.returncode == 0 and exported_answer.returncode == 0, with_stats.stderr + exported_answer.stderr
    assert json.loads(with_stats.stdout)["probabilities"] == json.loads(exported_answer.stdout)["probabilities"]
    missing = cli("netlab.evaluate", f"checkpoint={plain}", f"data.root={FIXTURE}", cwd=tmp_path)
    assert missing.returncode == 2 and "name the model file it fits, e.g. model=seed_cnn" in missing.stderr
