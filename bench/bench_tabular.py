"""Tabular bench: Trainpad's tabular task vs a default-parameter xgboost on scikit-learn's datasets.

    python bench/bench_tabular.py [--time-limit 25] [--datasets breast_cancer wine ...] [--model auto]

Each dataset is split 80/20 with ``train_test_split(random_state=seed)``, stratified for classification
as AutoTrain does (breast cancer, seed 42: the 455 / 114 split of the issue's AutoTrain numbers),
written to CSV, and trained through the task's ``train`` in this process. Prints a markdown table:
dataset x metric x wall time, averaged over the seeds.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn import datasets
from sklearn.metrics import accuracy_score, log_loss, r2_score, root_mean_squared_error
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.params import validate_params  # noqa: E402
from engine.task import Job  # noqa: E402
from engine.tasks import tabular  # noqa: E402

LOADERS = {
    "breast_cancer": datasets.load_breast_cancer,
    "wine": datasets.load_wine,
    "iris": datasets.load_iris,
    "digits": datasets.load_digits,
    "diabetes": datasets.load_diabetes,
}
AUTOTRAIN = {"breast_cancer": "AutoTrain xgboost, 20 trials (from the issue): logloss ~0.035, accuracy ~0.98, 26-29 s"}


def split(name: str, folder: Path, seed: int) -> tuple[Path, Path, bool]:
    frame = LOADERS[name](as_frame=True).frame
    frame = frame.rename(columns={frame.columns[-1]: "target"})
    strat = None if name == "diabetes" else frame["target"]  # AutoTrain's split: stratified for classification
    train, valid = train_test_split(frame, test_size=0.2, random_state=seed, stratify=strat)
    paths = folder / f"{name}_train.csv", folder / f"{name}_valid.csv"
    train.to_csv(paths[0], index=False)
    valid.to_csv(paths[1], index=False)
    return paths[0], paths[1], name == "diabetes"


def xgboost_default(train_csv: Path, valid_csv: Path, regression: bool) -> tuple[dict[str, float], float]:
    import pandas as pd
    import xgboost as xgb

    tr, va = pd.read_csv(train_csv), pd.read_csv(valid_csv)
    X, y, Xv, yv = tr.drop(columns="target"), tr["target"], va.drop(columns="target"), va["target"]
    t0 = time.time()
    if regression:
        pred = xgb.XGBRegressor(n_jobs=1).fit(X, y).predict(Xv)
        return {"rmse": root_mean_squared_error(yv, pred), "r2": r2_score(yv, pred)}, time.time() - t0
    model = xgb.XGBClassifier(n_jobs=1).fit(X, y)
    proba = model.predict_proba(Xv)
    return {
        "logloss": log_loss(yv, proba, labels=model.classes_),
        "accuracy": accuracy_score(yv, model.classes_[proba.argmax(1)]),
    }, time.time() - t0


def trainpad(
    train_csv: Path, valid_csv: Path, run_dir: Path, time_limit: int, model: str, refit: bool, folds: int = 5
) -> tuple[dict, float]:
    params = validate_params(
        tabular.Params,
        {
            "data_path": str(train_csv),
            "valid_path": str(valid_csv),
            "time_limit": time_limit,
            "model": model,
            "refit_full": refit,
            "cv_folds": folds,
        },
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(run_dir / "train.log", "w") as log, contextlib.redirect_stdout(log):
        metrics = tabular.train(Job(task=tabular.TASK, params=params, run_dir=run_dir, train=None))
    return metrics, time.time() - t0


def print_per_seed(results: dict[tuple[str, str], list[tuple]]) -> None:
    print("\n| dataset | seed | metric | trainpad | xgboost default | trainpad s | trials |")
    print("|---|---|---|---|---|---|---|")
    for (name, metric), runs in results.items():
        for r in runs:
            print(f"| {name} | {r[6]} | {metric} | {r[0]:.4f} | {r[1]:.4f} | {r[2]:.1f} | {r[5]} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=int, default=25)
    ap.add_argument("--model", default="auto")
    ap.add_argument("--seeds", type=int, nargs="*", default=[42], help="one split per seed; the table shows means")
    ap.add_argument("--datasets", nargs="*", default=list(LOADERS))
    ap.add_argument("--bag", action="store_true", help="predict with the fold models (refit_full off)")
    ap.add_argument("--cv-folds", type=int, default=5)
    ap.add_argument("--per-seed", action="store_true", help="also print one row per dataset, seed and metric")
    args = ap.parse_args()
    results: dict[tuple[str, str], list[tuple]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets:
            for seed in args.seeds:
                train_csv, valid_csv, regression = split(name, Path(tmp), seed)
                run_dir = Path(tmp) / f"run-{name}-{seed}"
                ours, t_ours = trainpad(
                    train_csv, valid_csv, run_dir, args.time_limit, args.model, not args.bag, args.cv_folds
                )
                base, t_base = xgboost_default(train_csv, valid_csv, regression)
                for metric, value in base.items():
                    results.setdefault((name, metric), []).append(
                        (ours[f"eval_{metric}"], value, t_ours, t_base, ours["best_model"], ours["n_trials"], seed)
                    )
                print(f"{name} seed {seed}: done in {t_ours:.1f}s", file=sys.stderr, flush=True)
    seeds = " ".join(map(str, args.seeds))
    print(
        f"\ntime_limit={args.time_limit}s, model={args.model}, refit_full={not args.bag}, cv_folds={args.cv_folds}, "
        f"80/20 splits, seeds {seeds} (means over seeds)\n"
    )
    print(
        "| dataset | metric | trainpad | xgboost default | wins | trainpad s | xgboost s | best family (last) | trials |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for (name, metric), runs in results.items():
        lower = metric in ("logloss", "rmse")
        ours, base = np.mean([r[0] for r in runs]), np.mean([r[1] for r in runs])
        wins = sum((r[0] <= r[1]) if lower else (r[0] >= r[1]) for r in runs)
        print(
            f"| {name} | {metric} ({'lower' if lower else 'higher'} better) | {ours:.4f} | {base:.4f} | "
            f"{wins}/{len(runs)} | {np.mean([r[2] for r in runs]):.1f} | {np.mean([r[3] for r in runs]):.1f} | "
            f"{runs[-1][4]} | {np.mean([r[5] for r in runs]):.0f} |"
        )
    if args.per_seed:
        print_per_seed(results)
    for name in args.datasets:
        if name in AUTOTRAIN:
            print(f"\n{name}: {AUTOTRAIN[name]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
