"""The default recipe on real photos: >= 95% on a held-out 20% of flowers12 (minutes: e2e)."""

from __future__ import annotations

import json

import pytest

from edgepipe.cli import main
from edgepipe.train import run_dir as rd


@pytest.mark.e2e
def test_default_recipe_reaches_95_percent_on_held_out_flowers(flowers12, mobilenet_v2_weights, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(flowers12), "--out", str(out), "--weights", str(mobilenet_v2_weights), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    run = rd.load_run(out)
    assert run.input_spec.height == 224 and run.config["alpha"] == 1.0
    assert summary["n_val"] == 144 and len(run.split["train"]) == 576
    assert summary["accuracy"] >= 0.95, summary
    # The saved model, run on the held-out files as evaluate does, gives the same number.
    assert main(["evaluate", str(out), "--split", "val", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["accuracy"] == pytest.approx(summary["accuracy"])
    assert report["macro_f1"] >= 0.95
