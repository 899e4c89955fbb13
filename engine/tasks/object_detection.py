"""Object detection: boxes and classes of the objects in an image, from COCO JSON, YOLO txt, Pascal VOC XML or the
Hugging Face ``objects: {bbox, category}`` layout (boxes as [x, y, width, height] in pixels)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import field_validator

from engine import runfiles
from engine.data import cells
from engine.data import images as im
from engine.errors import UserError
from engine.params import field
from engine.task import Column, Job, Task
from engine.vision import detection as vdet
from engine.vision import encoders as ve


class Params(ve.VisionParams):
    """The shared image options, a square input size and box-aware augmentation."""

    base_model: str = field(
        "facebook/detr-resnet-50",
        "Hub model id (e.g. `facebook/detr-resnet-50`, `PekingU/rtdetr_v2_r18vd`, `hustvl/yolos-tiny`) or a local "
        "model folder.",
    )
    image_square_size: int = field(
        0,
        "Images are scaled so their longer side is this, then padded to a square. 0: the model's own input size, "
        "from its image processor (preprocessor_config.json), e.g. 800 for DETR, 640 for RT-DETR.",
        ge=0,
        le=2048,
    )
    augmentation: Literal["flip_color", "flip", "none"] = field(
        "flip_color", "Random changes to training images each epoch (boxes follow the flips)."
    )
    weight_decay: float = field(1e-4, "Weight decay (L2) applied by the optimizer.", ge=0.0, le=1.0, advanced=True)

    @field_validator("image_square_size")
    @classmethod
    def _square_size(cls, value: int) -> int:
        if 0 < value < 32:
            raise ValueError(f"image_square_size {value} is too small: use 0 (the model's own size) or 32 to 2048")
        return value


COLUMNS = [
    ve.IMAGE_COLUMN,
    Column(
        "objects",
        'the boxes of the image: {"bbox": [[x, y, w, h], ...], "category": [...]} (pixels); COCO, YOLO and VOC '
        "folders give it",
        kind="any",
        aliases=("annotations", "labels"),
    ),
]


# ---- boxes --------------------------------------------------------------------------------


def parse_objects(value: Any, row: int) -> tuple[list[list[float]], list[str]]:
    """A row's boxes and category names from a dict of lists, a list of dicts, or their JSON text."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise UserError(f"Row {row}, column `objects`: not JSON ({value[:60]!r}).") from None
    if isinstance(value, (list, tuple)):
        value = {"bbox": [o.get("bbox") for o in value], "category": [o.get("category") for o in value]}
    if not isinstance(value, dict) or "bbox" not in value:
        raise UserError(f'Row {row}, column `objects`: expected {{"bbox": [[x, y, w, h], ...], "category": [...]}}.')
    boxes = [list(map(float, b)) for b in _as_list(value["bbox"])]
    cats = [cells.label_name(c) for c in _as_list(value.get("category", value.get("categories", [])))]
    if len(boxes) != len(cats) or any(len(b) != 4 for b in boxes):
        raise UserError(
            f"Row {row}, column `objects`: {len(boxes)} boxes but {len(cats)} categories, or a box "
            "without 4 numbers. Give one category per [x, y, w, h] box."
        )
    return boxes, cats


def _as_list(value: Any) -> list:
    return value.tolist() if hasattr(value, "tolist") else list(value or [])


def check_split(df: Any, params: Params, split: str, known: set | None = None) -> tuple[list[str], set]:
    """Objects parse, images decode, boxes fit their image; returns the problems and the categories seen."""
    rows, problems = cells.parse_rows(df["objects"], parse_objects, ([], []))
    decode, sizes = ve.check_split(df, params, split)
    problems = [f"{split} data: {p}" for p in problems[:10]] + decode
    cats = {c for _, cs in rows for c in cs}
    for i, size in sizes.items():
        name = Path(im.image_name(df["image"].iloc[i])).name
        problems += [f"{split} data: {p}" for p in vdet.box_problems(name, *rows[i], size, known)]
    return problems[:20], cats


def check_data(train: Any, valid: Any, params: Params) -> list[str]:
    problems, cats = check_split(train, params, "Training")
    if not cats and not problems:
        problems.append("The training data holds no boxes at all. Detection needs annotated objects.")
    if valid is not None:
        problems += check_split(valid, params, "Validation", known=cats)[0]
    return problems


# ---- training -----------------------------------------------------------------------------


def object_rows(objects: Any, where: str = "") -> list[tuple[list, list]]:
    """Each row's parsed (boxes, categories); a UserError listing the first ten rows that do not parse."""
    rows, problems = cells.parse_rows(objects, parse_objects, ([], []))
    if problems:
        raise UserError([f"{where}{p}" for p in problems[:10]])
    return rows


def dataset(df: Any, label2id: dict[str, int], processor: Any, params: Params, train: bool, size: int) -> Any:
    rows = object_rows(df["objects"])
    keep = [i for i, (_, cats) in enumerate(rows) if all(c in label2id for c in cats)]
    boxes = [rows[i][0] for i in keep]
    classes = [[label2id[c] for c in rows[i][1]] for i in keep]
    images = [df["image"].iloc[i] for i in keep]
    return vdet.DetectionSet(images, boxes, classes, processor, params, train=train, size=size)


def metrics(pred: Any, processor: Any, names: list[str], size: int, run_dir: Path) -> dict[str, float]:
    """COCO mAP@[.5:.95], mAP@.5, mAP@.75 (pycocotools); AP per class goes to ``per_class_ap.json``."""
    from engine import runfiles as rf

    overall, per_class = vdet.coco_map(*vdet.detections(pred, processor, size), names)
    rf.write_json(run_dir / "per_class_ap.json", per_class)
    return overall


def train(job: Job) -> dict[str, float]:
    from transformers import AutoModelForObjectDetection

    params = job.params
    rows = object_rows(job.train["objects"])
    id2label, label2id = cells.label_maps(c for _, cats in rows for c in cats)
    processor = ve.load_processor(params.base_model, params.trust_remote_code)
    model = ve.load_model(
        params,
        AutoModelForObjectDetection,
        heads=("class_labels_classifier", "bbox_predictor"),
        num_labels=len(id2label),
        id2label=id2label,
        label2id=label2id,
    )
    size = vdet.square_size(processor, params.image_square_size)
    train_set = dataset(job.train, label2id, processor, params, train=True, size=size)
    valid_set = dataset(job.valid, label2id, processor, params, False, size) if job.valid is not None else None
    runfiles.print_summary(
        "object detection",
        len(train_set),
        len(valid_set or []),
        classes=len(id2label),
        boxes=sum(len(c) for c in train_set.classes),
        size=f"{size}x{size}" + ("" if params.image_square_size else " (the model's image processor)"),
    )
    names = [id2label[i] for i in range(len(id2label))]
    compute = functools.partial(metrics, processor=processor, names=names, size=size, run_dir=job.run_dir)
    return ve.fit(
        job,
        model,
        processor,
        train_set,
        valid_set,
        trainer_cls=vdet.detection_trainer(),
        data_collator=vdet.detection_collate,
        compute_metrics=compute,
        args={"eval_do_concat_batches": False},
        side={"image_square_size": size},
    )


# ---- playground ---------------------------------------------------------------------------


def predict(model_dir: Path, inputs: Any, threshold: float = 0.5) -> Any:
    """``{"objects": [{"label", "score", "box": [x_min, y_min, x_max, y_max]}], "size": [w, h]}`` per image (boxes
    in the image's pixels, best first). A dict input may set ``threshold``."""
    import torch

    from engine import runfiles as rf

    if isinstance(inputs, dict) and "threshold" in inputs:
        threshold = float(inputs["threshold"])
    images, single = ve.as_images(inputs)
    model, processor = ve.load_for_predict(model_dir, "AutoModelForObjectDetection")
    size = vdet.square_size(processor, int(rf.read_side_file(model_dir).get("image_square_size") or 0))
    spec = vdet.square_spec(processor, size)
    out = []
    for img in images:
        square, scale = vdet.letterbox(img, size, vdet.pad_colour(spec))
        pixels = torch.from_numpy(ve.to_pixels(square, spec))[None].to(model.device)
        with torch.no_grad():
            raw = model(pixel_values=pixels)
        r = processor.post_process_object_detection(raw, threshold=threshold, target_sizes=[(size, size)])[0]
        found = [
            {
                "label": model.config.id2label[int(k)],
                "score": round(float(s), 4),
                "box": [round(float(v) / scale, 1) for v in b],
            }
            for s, k, b in zip(r["scores"], r["labels"], r["boxes"], strict=True)
        ]
        out.append({"objects": sorted(found, key=lambda o: -o["score"]), "size": list(img.size)})
    return out[0] if single else out


def evaluate(model_dir: Path, df: Any, options: dict[str, Any]) -> dict[str, Any]:
    """COCO mAP@[.5:.95], mAP@.5/.75 and AP per class on a test set (boxes [x, y, w, h] in pixels, categories the
    model's); precision/recall of the boxes scoring ``threshold`` (0.5) or more; images with the most missed or
    false boxes first."""
    from engine.vision import evaluation as vev

    found = lambda batch: predict(model_dir, {"image": batch, "threshold": 0.0})  # noqa: E731
    return vev.evaluate_detection(
        model_dir, object_rows(df["objects"], "Test data: "), list(df["image"]), found, options
    )


TASK = Task(
    name="object_detection",
    model_kind="vision",
    hub_pipeline="object-detection",
    title="Object detection",
    family="Vision",
    description="Find and box objects in images: products on shelves, defects, vehicles, people... Bring COCO JSON, "
    "YOLO txt labels, Pascal VOC XML or images + metadata.jsonl with `objects`, as a folder or ZIP.",
    params=Params,
    columns=COLUMNS,
    train=train,
    predict=predict,
    evaluate=evaluate,
    key_metric="eval_map",
    suggested_models=["hustvl/yolos-tiny", "PekingU/rtdetr_r18vd", "facebook/detr-resnet-50"],  # small first (CPU)
    greater_is_better=True,
    model_note="A DETR-family detector (AutoModelForObjectDetection): DETR, Conditional/Deformable DETR, YOLOS, "
    "RT-DETR/RT-DETRv2 or D-FINE; the class head is replaced for your categories.",
    check_data=check_data,
    data_summary=ve.data_summary,
    predict_input="image",
    autotrain_names=["object-detection"],
)
