"""The example notebook (experiments/quickstart.ipynb), executed cell by cell in a real Jupyter
kernel, on the fixture's digits."""

from __future__ import annotations

import os

import pytest

from conftest import FIXTURE, ROOT

nbclient = pytest.importorskip("nbclient", reason="needs nbclient and ipykernel (pip install -e '.[dev]')")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")


def test_the_quickstart_notebook_runs_in_a_jupyter_kernel(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (data / "mnist").symlink_to(FIXTURE)  # NETLAB_DATA/mnist: the notebook's data.load and fit find it
    monkeypatch.setenv("NETLAB_DATA", str(data))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.chdir(tmp_path)
    nb = nbformat.read(ROOT / "experiments" / "quickstart.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = {i: "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in cell.get("outputs", []))
               for i, cell in enumerate(nb.cells) if cell.cell_type == "code"}
    shown = "\n".join(outputs.values())
    assert "seed_cnn on numpy" in shown and "done: test accuracy" in shown  # the run's log lines show
    assert "Run(" in outputs[1] and "test_accuracy" in outputs[2]
    assert "Conv2d" in outputs[4] and "total" in outputs[4]
    assert "test accuracy:" in outputs[6]
    assert any("image/png" in o.get("data", {}) for o in nb.cells[7].outputs)
    assert not [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs if o.output_type == "error"]
    assert len(list((tmp_path / "outputs").glob("*/*/results.json"))) == 1
