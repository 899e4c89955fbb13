"""Image regression (image scoring): predict one number from an image, e.g. a quality score, an age, a count."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any, Literal

from engine import runfiles
from engine.data.cells import row_numbers
from engine.errors import UserError
from engine.params import field
from engine.task import Column, Job, Task
from engine.train import charts
from engine.train import metrics as metrics_lib
from engine.vision import encoders as ve


class Params(ve.VisionParams):
    """The shared image options; colour changes are off by default (colour may be what the score is about)."""

    augmentation: Literal["crop_flip_color", "crop_flip", "flip", "none"] = field(
        "flip",
        "Random changes to training images each epoch: crop (random resized crop), flip (horizontal) and color "
        "(brightness/contrast/saturation). Keep colour off when the score depends on colour or brightness.",
    )


COLUMNS = [
    ve.IMAGE_COLUMN,
    Column("target", "the number to predict for the image", kind="number", aliases=("score", "value", "label")),
]


def targets_of(values: Any) -> tuple[list[float], list[str]]:
    """Each row's target as a float, and the rows that hold no finite number (problems, 1-based)."""
    out, bad = [], []
    for i, v in enumerate(values):
        try:
            number = float(v.strip() if isinstance(v, str) else v)
        except (TypeError, ValueError):
            number = math.nan
        bad += [i] if not math.isfinite(number) else []
        out.append(number)
    if not bad:
        return out, []
    return out, [
        f"Column `target` must hold a finite number for every image, but row(s) {row_numbers(bad)} do not (e.g. "
        f"{list(values)[bad[0]]!r}). Fix or remove them; for classes use the image_classification task."
    ]


def check_data(train: Any, valid: Any, params: Params) -> list[str]:
    """Every target is a number and every image decodes, in both splits."""
    problems = [f"Training data: {p}" for p in targets_of(train["target"])[1]]
    problems += ve.check_split(train, params, "Training")[0]
    if valid is not None:
        problems += [f"Validation data: {p}" for p in targets_of(valid["target"])[1]]
        problems += ve.check_split(valid, params, "Validation")[0]
    return problems


def metrics(pred: Any, run_dir: Path) -> dict[str, float]:
    """``compute_metrics``: MSE, RMSE, MAE, R² and explained variance; the validation images' predicted and true
    values go to ``predictions.csv`` (the run page's scatter; rewritten at each evaluation, the last is the final
    model's)."""
    import numpy as np

    true, predicted = np.asarray(pred.label_ids).reshape(-1), np.asarray(pred.predictions).reshape(-1)
    charts.write_predictions(run_dir, true, predicted)
    return metrics_lib.regression_metrics(pred.label_ids, pred.predictions)


def image_set(df: Any, processor: Any, params: Params, train: bool) -> Any:
    targets, problems = targets_of(df["target"])
    if problems:
        raise UserError(problems)
    return ve.ImageSet(list(df["image"]), targets, processor, params, train=train)


def train(job: Job) -> dict[str, float]:
    from transformers import AutoModelForImageClassification

    params = job.params
    processor = ve.load_processor(params.base_model, params.trust_remote_code)
    model = ve.load_model(
        params,
        AutoModelForImageClassification,
        num_labels=1,
        problem_type="regression",
        id2label={0: "target"},
        label2id={"target": 0},
    )
    train_set = image_set(job.train, processor, params, train=True)
    valid_set = image_set(job.valid, processor, params, train=False) if job.valid is not None else None
    runfiles.print_summary("image regression", len(train_set), len(valid_set or []), augmentation=params.augmentation)
    compute = functools.partial(metrics, run_dir=job.run_dir)
    return ve.fit(job, model, processor, train_set, valid_set, data_collator=ve.collate, compute_metrics=compute)


def predict(model_dir: Path, inputs: Any) -> Any:
    """The predicted number per image (``{"score": x}``)."""
    import torch

    images, single = ve.as_images(inputs)
    model, processor = ve.load_for_predict(model_dir, "AutoModelForImageClassification")
    batch = processor(images=images, return_tensors="pt").to(model.device)
    with torch.no_grad():
        values = model(**batch).logits[:, 0].cpu().tolist()
    out = [{"score": round(float(v), 6)} for v in values]
    return out[0] if single else out


def evaluate(model_dir: Path, df: Any, options: dict[str, Any]) -> dict[str, Any]:
    """MSE, RMSE, MAE and R² on a test set of images; the images with the largest errors first."""
    from engine.train import evaluation
    from engine.vision import evaluation as vev

    targets, problems = targets_of(df["target"])
    if problems:
        raise UserError([f"Test data: {p}" for p in problems])
    images = vev.test_images(list(df["image"]), options)
    out = evaluation.batched(
        images, lambda batch: predict(model_dir, batch), options.get("batch_size") or 16, options.get("progress")
    )
    return evaluation.regression(targets, [o["score"] for o in out], vev.shown_names(list(df["image"]), options))


TASK = Task(
    name="image_regression",
    model_kind="vision",
    hub_pipeline="image-classification",
    title="Image regression",
    family="Vision",
    description="Predict a number from an image: a quality or aesthetic score, an age, a count, a price... Bring "
    "images + metadata.csv/jsonl (file_name, target), a table of image paths and numbers, or a Hub dataset.",
    params=Params,
    columns=COLUMNS,
    train=train,
    predict=predict,
    evaluate=evaluate,
    key_metric="eval_r2",
    suggested_models=[
        "microsoft/resnet-18",
        "facebook/convnext-tiny-224",
        "google/vit-base-patch16-224-in21k",
    ],  # small first (CPU)
    greater_is_better=True,
    model_note="An image model (AutoModelForImageClassification with problem_type=regression), e.g. ViT, ConvNeXt, "
    "Swin or ResNet; a one-output regression head is added.",
    check_data=check_data,
    data_summary=ve.data_summary,
    predict_input="image",
    autotrain_names=["image-regression", "image-scoring", "image_scoring"],
)
