"""Image classification: one label per image, from class sub-folders, a metadata file, a table of image paths
or a Hub image dataset."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from engine import runfiles
from engine.data import cells
from engine.errors import UserError
from engine.task import Column, Job, Task
from engine.train import charts
from engine.train import metrics as metrics_lib
from engine.vision import encoders as ve


class Params(ve.VisionParams):
    """Classification uses the shared image options as they are."""


COLUMNS = [
    ve.IMAGE_COLUMN,
    Column(
        "target",
        "the class of the image (class sub-folders give it from the folder name)",
        kind="label",
        aliases=("label", "labels", "class", "category"),
    ),
]


def labels_of(values: Any) -> tuple[list[str], list[str]]:
    """Each row's label as a string, and the rows without one (problems, 1-based)."""
    labels = [cells.label_name(v) if not cells.is_missing(v) else "" for v in values]
    empty = [i for i, x in enumerate(labels) if not x]
    problems = []
    if empty:
        from engine.data.cells import row_numbers

        problems.append(f"{len(empty)} image(s) have no label (row(s) {row_numbers(empty)}). Label or remove them.")
    return labels, problems


def check_data(train: Any, valid: Any, params: Params) -> list[str]:
    """Every image decodes, every image has a label, two classes at least, validation classes known."""
    labels, problems = labels_of(train["target"])
    names = set(labels) - {""}
    if len(names) < 2:
        problems.append(
            f"The training images hold a single class ({', '.join(names) or 'none'}). Classification needs at "
            "least two: one sub-folder (or label) per class."
        )
    problems += ve.check_split(train, params, "Training")[0]
    if valid is not None:
        vlabels, vproblems = labels_of(valid["target"])
        problems += [f"Validation data: {p}" for p in vproblems]
        problems += cells.unseen_problem(names, [[x] for x in vlabels if x])
        problems += ve.check_split(valid, params, "Validation")[0]
    return problems


# ---- training -----------------------------------------------------------------------------


def metrics(pred: Any, id2label: dict[int, str], run_dir: Path) -> dict[str, float]:
    """Accuracy, F1/precision/recall, top-5 accuracy (over 5 classes); the confusion matrix goes to
    ``confusion_matrix.json`` in the run folder (rewritten at each evaluation: the last is the final model's)."""
    import numpy as np
    from sklearn.metrics import top_k_accuracy_score

    labels, logits = np.asarray(pred.label_ids), np.asarray(pred.predictions)
    out = metrics_lib.classification_metrics(labels, logits)
    ids = list(range(len(id2label)))
    if len(ids) > 5:
        out["top5_accuracy"] = float(top_k_accuracy_score(labels, logits, k=5, labels=ids))
    charts.write_confusion(run_dir, labels, logits.argmax(-1), [id2label[i] for i in ids])
    return out


def train(job: Job) -> dict[str, float]:
    from transformers import AutoModelForImageClassification

    params = job.params
    labels, problems = labels_of(job.train["target"])
    if problems:
        raise UserError(problems)
    id2label, label2id = cells.label_maps(labels)
    processor = ve.load_processor(params.base_model, params.trust_remote_code)
    model = ve.load_model(
        params, AutoModelForImageClassification, num_labels=len(id2label), id2label=id2label, label2id=label2id
    )
    train_set = ve.ImageSet(list(job.train["image"]), [label2id[x] for x in labels], processor, params, train=True)
    valid_set = None
    if job.valid is not None:
        vlabels, _ = labels_of(job.valid["target"])
        keep = [
            i
            for i in range(len(vlabels))
            if i not in cells.warn_unseen(label2id, [[x] for x in vlabels], "label", "left out of evaluation")
        ]
        images = [job.valid["image"].iloc[i] for i in keep]
        valid_set = ve.ImageSet(images, [label2id[vlabels[i]] for i in keep], processor, params, train=False)
    spec = ve.pixel_spec(processor)
    runfiles.print_summary(
        "image classification",
        len(train_set),
        len(valid_set or []),
        classes=len(id2label),
        size=f"{spec.width}x{spec.height}",
        augmentation=params.augmentation,
    )
    compute = functools.partial(metrics, id2label=id2label, run_dir=job.run_dir)
    return ve.fit(job, model, processor, train_set, valid_set, data_collator=ve.collate, compute_metrics=compute)


# ---- playground ---------------------------------------------------------------------------


def predict(model_dir: Path, inputs: Any, top_k: int = 5) -> Any:
    """``{"label": best, "scores": {label: probability}}`` (the ``top_k`` best) per image."""
    import torch

    images, single = ve.as_images(inputs)
    model, processor = ve.load_for_predict(model_dir, "AutoModelForImageClassification")
    batch = processor(images=images, return_tensors="pt").to(model.device)
    with torch.no_grad():
        probs = model(**batch).logits.softmax(-1).cpu()
    out = []
    for row in probs:
        best = row.topk(min(top_k, len(row)))
        scores = {
            model.config.id2label[int(i)]: round(float(p), 6) for p, i in zip(best.values, best.indices, strict=True)
        }
        out.append({"label": next(iter(scores)), "scores": scores})
    return out[0] if single else out


def evaluate(model_dir: Path, df: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Accuracy, F1, per-class report and confusion matrix on a test set of images; test labels must be the model's;
    wrong predictions first (most confident at the top)."""
    from engine.train import evaluation
    from engine.vision import evaluation as vev

    labels, problems = labels_of(df["target"])
    if problems:
        raise UserError([f"Test data: {p}" for p in problems])
    config = runfiles.read_json(Path(model_dir) / "config.json") or {}
    evaluation.unseen_labels_error({str(v) for v in (config.get("id2label") or {}).values()}, labels)
    images = vev.test_images(list(df["image"]), options)
    out = evaluation.batched(
        images, lambda batch: predict(model_dir, batch), options.get("batch_size") or 16, options.get("progress")
    )
    names = vev.shown_names(list(df["image"]), options)
    return evaluation.classification(labels, [o["label"] for o in out], [o["scores"] for o in out], names)


TASK = Task(
    name="image_classification",
    model_kind="vision",
    hub_pipeline="image-classification",
    title="Image classification",
    family="Vision",
    description="Sort images into classes: products, defects, plants, animals, documents... Bring a folder or ZIP "
    "of class sub-folders, images + metadata.csv, a table of image paths, or a Hub image dataset.",
    params=Params,
    columns=COLUMNS,
    train=train,
    predict=predict,
    evaluate=evaluate,
    key_metric="eval_f1_macro",
    suggested_models=[
        "microsoft/resnet-18",
        "facebook/convnext-tiny-224",
        "google/vit-base-patch16-224-in21k",
    ],  # small first (CPU)
    greater_is_better=True,
    model_note="An image model (AutoModelForImageClassification), e.g. ViT, ConvNeXt, Swin, ResNet, EfficientNet "
    "or MobileViT; a classification head is added for your classes.",
    stratify_role="target",
    check_data=check_data,
    data_summary=ve.data_summary,
    predict_input="image",
    autotrain_names=["image-classification"],
)
