"""Tabular bundles and search checkpoints saved by earlier versions still load, predict and resume.

The fixtures in ``tests/fixtures/tabular_v1`` were saved before ``engine/tabular_utils.py`` became the
``engine/tabular`` package: their pickles name ``engine.tabular_utils.prepare_frame``.
"""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

import joblib
import pytest

from engine.params import validate_params
from engine.task import Job, get_task

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "tabular_v1"
FAMILIES = ["linear", "xgboost"]
TASK = get_task("tabular")


@pytest.mark.parametrize("family", FAMILIES)
def test_bundle_saved_by_the_old_module_still_predicts(family):
    model_dir = FIXTURES / family
    pickle = zlib.decompress((model_dir / "model.joblib").read_bytes())
    assert b"engine.tabular_utils" in pickle  # the fixture really names the old module
    expected = json.loads((model_dir / "expected.json").read_text())
    out = TASK.predict(model_dir, expected["rows"])
    assert [r["prediction"] for r in out] == [r["prediction"] for r in expected["predictions"]]
    for got, want in zip(out, expected["predictions"], strict=True):
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_search_saved_by_the_old_module_resumes(tmp_path, family):
    checkpoint = tmp_path / "checkpoint-old"
    checkpoint.mkdir()
    shutil.copy(FIXTURES / family / "search.joblib", checkpoint)
    data = shutil.copy(FIXTURES / "data.csv", tmp_path / "data.csv")
    params = validate_params(
        TASK.params,
        {
            "data_path": str(data),
            "target_columns": "label",
            "column_mapping": {"id": "row_id"},
            "model": family,
            "num_trials": 1,
            "cv_folds": 2,
            "time_limit": 60,
            "feature_importance": False,
            "seed": 0,
            "resume_from": str(checkpoint),
        },
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    metrics = TASK.train(Job(task=TASK, params=params, run_dir=run_dir, train=None))
    before = joblib.load(checkpoint / "search.joblib")["leaderboard"]
    assert metrics["n_trials"] == len(before) + 1 and metrics["best_model"] == family
    trials = sorted(r["trial"] for r in metrics["leaderboard"] if r["model"] != "ensemble")
    assert trials == list(range(1, len(before) + 2))  # the earlier trials kept, one more run on top
    assert len(TASK.predict(run_dir / "model", {"x": 1.0, "city": "Lima"})["probabilities"]) == 2
