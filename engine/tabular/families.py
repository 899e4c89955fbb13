"""The model families: their first settings, known-good settings, search spaces, and one scikit-learn
pipeline per family (raw frame -> typed columns -> preprocessing -> estimator). xgboost is imported only when
an xgboost model is built."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import FunctionTransformer, Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from engine.tabular.columns import output_columns, prepare_frame
from engine.tabular.targets import Setup

SVM_CALIBRATION_FOLDS = 3


def default_params(family: str, problem: str) -> dict[str, Any]:
    """The first configuration tried for each family (close to each library's defaults)."""
    return {
        "xgboost": {  # shallow trees, slow learning, strong column sampling: robust on small tables
            "n_estimators": 500,
            "learning_rate": 0.03,
            "max_depth": 3,
            "min_child_weight": 1.0,
            "subsample": 0.8,
            "colsample_bytree": 0.5,
            "reg_lambda": 1.0,
            "reg_alpha": 1e-8,
        },
        "random_forest": {
            "n_estimators": 200,
            "max_features": 0.5 if problem == "regression" else 0.3,
            "min_samples_leaf": 1,
        },
        "extra_trees": {
            "n_estimators": 200,
            "max_features": 0.7 if problem == "regression" else 0.5,
            "min_samples_leaf": 1,
        },
        "hist_gradient_boosting": {
            "learning_rate": 0.1,
            "max_iter": 100,
            "max_leaf_nodes": 31,
            "min_samples_leaf": 20,
            "l2_regularization": 1e-6,
        },
        "linear": {"C": 1.0} if problem != "regression" else {"alpha": 1.0},
        "svm": {"C": 1.0, "gamma": "scale"},
        "knn": {"n_neighbors": 10, "weights": "distance", "p": 2},
    }[family]


def portfolio(family: str, problem: str) -> list[dict[str, Any]]:
    """Known-good configurations tried (in order) when a family is tuned, before the sampler's own picks."""
    xgb = {"min_child_weight": 1.0, "reg_lambda": 1.0, "reg_alpha": 1e-8}
    return {
        "xgboost": [
            {
                **xgb,
                "n_estimators": 100,
                "learning_rate": 0.3,
                "max_depth": 6,
                "subsample": 1.0,
                "colsample_bytree": 1.0,
            },
            {
                **xgb,
                "n_estimators": 300,
                "learning_rate": 0.05,
                "max_depth": 6,
                "subsample": 0.8,
                "colsample_bytree": 0.8,
            },
            {
                **xgb,
                "n_estimators": 300,
                "learning_rate": 0.05,
                "max_depth": 8,
                "min_child_weight": 3.0,
                "subsample": 0.7,
                "colsample_bytree": 0.6,
                "reg_lambda": 5.0,
            },
        ],
        "random_forest": [{"n_estimators": 300, "max_features": 0.6, "min_samples_leaf": 2}],
        "extra_trees": [{"n_estimators": 300, "max_features": 0.9, "min_samples_leaf": 2}],
        "hist_gradient_boosting": [
            {
                "learning_rate": 0.05,
                "max_iter": 300,
                "max_leaf_nodes": 15,
                "min_samples_leaf": 10,
                "l2_regularization": 1.0,
            },
            {
                "learning_rate": 0.1,
                "max_iter": 100,
                "max_leaf_nodes": 63,
                "min_samples_leaf": 5,
                "l2_regularization": 1e-6,
            },
        ],
        "linear": [{"alpha": 10.0}, {"alpha": 0.1}] if problem == "regression" else [{"C": 10.0}, {"C": 0.1}],
        "svm": [],  # the default (gamma "scale") runs first; optuna searches absolute gammas
        "knn": [{"n_neighbors": 5, "weights": "uniform", "p": 2}, {"n_neighbors": 25, "weights": "distance", "p": 1}],
    }[family]


def suggest_params(family: str, problem: str, trial: Any) -> dict[str, Any]:
    """One optuna trial's hyper-parameters for ``family``."""
    s = trial
    if family == "xgboost":
        return {
            "n_estimators": s.suggest_int("n_estimators", 50, 800, log=True),
            "learning_rate": s.suggest_float("learning_rate", 0.01, 0.3, log=True),
            "max_depth": s.suggest_int("max_depth", 2, 10),
            "min_child_weight": s.suggest_float("min_child_weight", 0.5, 20, log=True),
            "subsample": s.suggest_float("subsample", 0.5, 1.0),
            "colsample_bytree": s.suggest_float("colsample_bytree", 0.4, 1.0),
            "reg_lambda": s.suggest_float("reg_lambda", 1e-3, 10, log=True),
            "reg_alpha": s.suggest_float("reg_alpha", 1e-8, 1.0, log=True),
        }
    if family in ("random_forest", "extra_trees"):
        return {
            "n_estimators": s.suggest_int("n_estimators", 100, 500, step=50),
            "max_features": s.suggest_float("max_features", 0.1, 1.0),
            "min_samples_leaf": s.suggest_int("min_samples_leaf", 1, 10),
        }
    if family == "hist_gradient_boosting":
        return {
            "learning_rate": s.suggest_float("learning_rate", 0.01, 0.3, log=True),
            "max_iter": s.suggest_int("max_iter", 50, 500, log=True),
            "max_leaf_nodes": s.suggest_int("max_leaf_nodes", 8, 64, log=True),
            "min_samples_leaf": s.suggest_int("min_samples_leaf", 3, 50, log=True),
            "l2_regularization": s.suggest_float("l2_regularization", 1e-6, 10, log=True),
        }
    if family == "linear":
        key = "alpha" if problem == "regression" else "C"
        return {key: s.suggest_float(key, 1e-3, 1e2, log=True)}
    if family == "svm":
        return {"C": s.suggest_float("C", 1e-2, 1e3, log=True), "gamma": s.suggest_float("gamma", 1e-4, 1.0, log=True)}
    return {
        "n_neighbors": s.suggest_int("n_neighbors", 1, 50, log=True),
        "weights": s.suggest_categorical("weights", ["uniform", "distance"]),
        "p": s.suggest_int("p", 1, 2),
    }


def preprocessor(family: str, spec: dict[str, Any]) -> ColumnTransformer:
    """Imputation, scaling and categorical encoding suited to ``family`` (unknown categories handled)."""
    num, cat = output_columns(spec)
    if family in ("linear", "svm", "knn"):
        num_step: Any = make_pipeline(
            SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True), StandardScaler()
        )
        cat_step: Any = make_pipeline(
            SimpleImputer(strategy="constant", fill_value="__missing__"),
            OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=30, sparse_output=False),
        )
    elif family in ("random_forest", "extra_trees"):
        num_step = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)
        cat_step = OrdinalEncoder(
            handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1, max_categories=254
        )
    else:  # xgboost, hist_gradient_boosting: missing values native, categories as codes (unknown -> missing)
        num_step = "passthrough"
        cat_step = OrdinalEncoder(
            handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan, max_categories=254
        )
    parts = [(name, step, cols) for name, step, cols in (("num", num_step, num), ("cat", cat_step, cat)) if cols]
    return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)


def estimator(family: str, setup: Setup, spec: dict[str, Any], hp: dict[str, Any], seed: int) -> Any:
    """The model of ``family`` for the sub-task, wrapped for multi-label / multi-target where needed."""
    from sklearn import ensemble, linear_model, neighbors
    from sklearn.multioutput import MultiOutputClassifier, MultiOutputRegressor

    reg = setup.problem == "regression"
    num, cat = output_columns(spec)
    if family == "xgboost":
        import xgboost as xgb

        cls = xgb.XGBRegressor if reg else xgb.XGBClassifier
        model = cls(
            tree_method="hist",
            n_jobs=setup.threads,
            random_state=seed,
            verbosity=0,
            enable_categorical=bool(cat),
            feature_types=["q"] * len(num) + ["c"] * len(cat) if cat else None,
            max_cat_to_onehot=8,
            **hp,
        )
        return model
    if family == "random_forest":
        cls = ensemble.RandomForestRegressor if reg else ensemble.RandomForestClassifier
        model = cls(n_jobs=setup.threads, random_state=seed, **hp)
    elif family == "extra_trees":
        cls = ensemble.ExtraTreesRegressor if reg else ensemble.ExtraTreesClassifier
        model = cls(n_jobs=setup.threads, random_state=seed, **hp)
    elif family == "hist_gradient_boosting":
        cls = ensemble.HistGradientBoostingRegressor if reg else ensemble.HistGradientBoostingClassifier
        mask = [False] * len(num) + [True] * len(cat)
        model = cls(random_state=seed, categorical_features=mask if cat else None, early_stopping=False, **hp)
        if reg and len(setup.targets) > 1:
            return MultiOutputRegressor(model)
    elif family == "linear":
        model = linear_model.Ridge(**hp) if reg else linear_model.LogisticRegression(max_iter=2000, **hp)
    elif family == "svm":
        model = _svm(reg, seed, hp)
    else:
        cls = neighbors.KNeighborsRegressor if reg else neighbors.KNeighborsClassifier
        model = cls(n_jobs=setup.threads, **hp)
    return MultiOutputClassifier(model) if setup.problem == "multilabel" else model


def _svm(reg: bool, seed: int, hp: dict[str, Any]) -> Any:
    """RBF support vectors: probabilities by Platt scaling over ``SVM_CALIBRATION_FOLDS`` internal folds;
    regression targets standardised."""
    from sklearn import svm
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.compose import TransformedTargetRegressor

    if reg:
        return TransformedTargetRegressor(svm.SVR(**hp), transformer=StandardScaler())
    return CalibratedClassifierCV(svm.SVC(random_state=seed, **hp), cv=SVM_CALIBRATION_FOLDS, ensemble=False)


def build_pipeline(family: str, setup: Setup, spec: dict[str, Any], hp: dict[str, Any], seed: int) -> Pipeline:
    """The whole model: raw frame -> typed columns -> family preprocessing -> estimator."""
    frame = FunctionTransformer(prepare_frame, kw_args={"spec": spec}, validate=False)
    return Pipeline(
        [("frame", frame), ("prep", preprocessor(family, spec)), ("model", estimator(family, setup, spec, hp, seed))]
    )


def fit_pipeline(
    family: str, setup: Setup, spec: dict[str, Any], hp: dict[str, Any], seed: int, X: pd.DataFrame, y: np.ndarray
) -> Pipeline:
    """A new pipeline of ``family`` fit on ``X``, ``y`` (with the setup's threads)."""
    model = build_pipeline(family, setup, spec, hp, seed)
    y_fit = y.ravel() if setup.problem == "regression" and y.shape[1] == 1 else y
    with threadpool_limits(setup.threads):
        model.fit(X, y_fit)
    return model


def predict_scores(model: Pipeline, X: pd.DataFrame, setup: Setup) -> np.ndarray:
    """Scores in a fixed shape: (n,) P(class 1) for binary, (n, k) class / label probabilities, (n, t) values."""
    if setup.problem == "regression":
        return np.asarray(model.predict(X), dtype=float).reshape(len(X), -1)
    proba = model.predict_proba(X)
    final = model[-1]
    if setup.problem == "multilabel":
        if isinstance(proba, list):
            return np.column_stack(
                [_column_of(p, est.classes_, 1) for p, est in zip(proba, final.estimators_, strict=True)]
            )
        return np.asarray(proba).reshape(len(X), -1)
    full = np.zeros((len(X), len(setup.classes)))
    full[:, np.asarray(final.classes_, dtype=int)] = proba
    return full[:, 1] if setup.problem == "binary" else full


def _column_of(proba: np.ndarray, classes: np.ndarray, wanted: int) -> np.ndarray:
    hits = np.flatnonzero(np.asarray(classes) == wanted)
    return proba[:, hits[0]] if len(hits) else np.zeros(len(proba))
