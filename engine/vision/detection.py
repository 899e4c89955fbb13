"""Object detection: letterboxed square inputs, the detection dataset and collator, COCO mAP, the Trainer."""

from __future__ import annotations

from typing import Any

from engine.data import images as im
from engine.vision.encoders import CACHE_BYTES, PixelSpec, bases, pixel_spec, to_pixels


def letterbox(img: Any, size: int, fill: tuple[int, ...]) -> tuple[Any, float]:
    """``img`` scaled so its longer side is ``size`` and pasted top-left on a ``size`` x ``size`` canvas of
    ``fill``; returns the square image and the scale (boxes scale by it; the padding moves no box)."""
    from PIL import Image

    scale = size / max(img.size)
    w, h = max(1, round(img.width * scale)), max(1, round(img.height * scale))
    canvas = Image.new("RGB", (size, size), fill)
    canvas.paste(img.resize((w, h), Image.BILINEAR), (0, 0))
    return canvas, scale


def square_size(processor: Any, wanted: int = 0) -> int:
    """The side of the letterboxed square input: ``wanted`` when the user set it, else the model's own size from its
    image processor (``preprocessor_config.json``: height/width, else shortest_edge; the larger side of the two)."""
    if wanted:
        return int(wanted)
    spec = pixel_spec(processor)
    return max(spec.height, spec.width)


def square_spec(processor: Any, size: int) -> PixelSpec:
    """The processor's normalisation with a ``size`` x ``size`` input."""
    spec = pixel_spec(processor)
    return PixelSpec(size, size, spec.mean, spec.std)


def pad_colour(spec: PixelSpec) -> tuple[int, ...]:
    """The pixel that normalises to zero (padding then carries no signal)."""
    return tuple(round(m * 255) for m in spec.mean) if spec.std != (1.0, 1.0, 1.0) else (114, 114, 114)


class DetectionSet:
    """A map-style dataset of ``{"pixel_values", "labels": {"class_labels", "boxes"}}`` (boxes: centre x/y, width,
    height as fractions of the square image, as DETR-family models take them). Images are decoded and
    letterboxed once (kept in memory while under :data:`CACHE_BYTES`); training rows get box-aware flips and
    colour changes each epoch. ``size``: the square's side (default: :func:`square_size` of the processor and
    ``params.image_square_size``)."""

    def __init__(
        self,
        images: list[Any],
        boxes: list[list],
        classes: list[list[int]],
        processor: Any,
        params: Any,
        train: bool,
        size: int = 0,
    ):
        import random

        self.images, self.boxes, self.classes, self.train = images, boxes, classes, train
        self.size = size or square_size(processor, params.image_square_size)
        self.kind, self.bases = params.augmentation, bases(params)
        self.spec = square_spec(processor, self.size)
        self.rng = random.Random(params.seed)
        fits = self.size * self.size * 3 * len(images) <= CACHE_BYTES
        self.cache: dict[int, Any] | None = {} if fits else None

    def __len__(self) -> int:
        return len(self.images)

    def _decoded(self, i: int) -> tuple[Any, Any]:
        import numpy as np

        if self.cache is not None and i in self.cache:
            return self.cache[i]
        img, scale = letterbox(im.open_image(self.images[i], self.bases), self.size, pad_colour(self.spec))
        boxes = np.asarray(self.boxes[i], dtype=np.float32).reshape(-1, 4) * scale
        if self.cache is not None:
            self.cache[i] = (img, boxes)
        return img, boxes

    def __getitem__(self, i: int) -> dict[str, Any]:
        import numpy as np
        from PIL import Image

        img, boxes = self._decoded(i)
        if self.train and "flip" in self.kind and self.rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
            boxes = boxes.copy()
            boxes[:, 0] = self.size - boxes[:, 0] - boxes[:, 2]
        colour = tuple(self.rng.uniform(0.8, 1.2) for _ in range(3)) if self.train and "color" in self.kind else None
        x, y, w, h = (np.clip(boxes, 0, self.size) / self.size).T if len(boxes) else np.zeros((4, 0), np.float32)
        cxcywh = np.stack([x + w / 2, y + h / 2, w, h], axis=-1).astype(np.float32)
        return {
            "pixel_values": to_pixels(img, self.spec, colour),
            "labels": {"class_labels": np.asarray(self.classes[i], dtype=np.int64), "boxes": cxcywh},
        }


def detection_collate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the images; labels stay a list of per-image dicts of tensors."""
    import numpy as np
    import torch

    return {
        "pixel_values": torch.from_numpy(np.stack([r["pixel_values"] for r in rows])),
        "labels": [{k: torch.from_numpy(v) for k, v in r["labels"].items()} for r in rows],
    }


def coco_map(truth: list[dict], found: list[dict], names: list[str]) -> tuple[dict[str, float], dict[str, float]]:
    """COCO mAP with pycocotools: ``truth``/``found`` hold one dict per image, ``boxes`` as [x, y, w, h] pixels
    with ``labels`` (and ``scores`` for ``found``). Returns {map, map_50, map_75, map_small...} and AP per class
    (mAP@[.5:.95]; -1 for a class absent from the ground truth)."""
    import contextlib
    import io as _io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO()
    anns = [
        {
            "id": n + 1,
            "image_id": i,
            "category_id": int(c),
            "bbox": list(map(float, b)),
            "area": float(b[2] * b[3]),
            "iscrowd": 0,
        }
        for n, (i, c, b) in enumerate(
            (i, c, b) for i, t in enumerate(truth) for c, b in zip(t["labels"], t["boxes"], strict=True)
        )
    ]
    gt.dataset = {
        "images": [{"id": i} for i in range(len(truth))],
        "annotations": anns,
        "categories": [{"id": k, "name": n} for k, n in enumerate(names)],
    }
    with contextlib.redirect_stdout(_io.StringIO()):
        gt.createIndex()
        dets = [
            {"image_id": i, "category_id": int(c), "bbox": list(map(float, b)), "score": float(s)}
            for i, f in enumerate(found)
            for c, b, s in zip(f["labels"], f["boxes"], f["scores"], strict=True)
        ]
        if not dets or not anns:
            return {"map": 0.0, "map_50": 0.0, "map_75": 0.0}, {n: {"AP": 0.0, "AP50": 0.0, "AP75": 0.0} for n in names}
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    keys = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large")
    overall = {k: float(v) for k, v in zip(keys, ev.stats[:6], strict=True) if v >= 0 or k in keys[:3]}
    overall.update({k: max(0.0, overall[k]) for k in keys[:3]})  # -1: no box of that kind at all
    precision = ev.eval["precision"][:, :, :, 0, -1]  # IoU x recall x class, all areas, 100 detections
    per_class = {name: _class_ap(precision[:, :, k]) for k, name in enumerate(names)}
    return overall, per_class


def _class_ap(p: Any) -> dict[str, float]:
    """AP over IoU .5:.95, at IoU .5 and at .75 of one class (``p``: IoU x recall); -1 = no box of it to find."""

    def mean(rows: Any) -> float:
        return float(rows[rows > -1].mean()) if (rows > -1).any() else -1.0

    return {"AP": mean(p), "AP50": mean(p[0]), "AP75": mean(p[5])}


def detection_trainer() -> type:
    """A Trainer whose evaluation returns (logits, boxes) and the labels, whatever else the model outputs
    (auxiliary outputs, encoder states...), so ``compute_metrics`` gets the same thing for every detector."""
    import torch
    from transformers import Trainer

    class DetectionTrainer(Trainer):
        def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):  # noqa: ANN001
            inputs = self._prepare_inputs(inputs)
            with torch.no_grad():
                out = model(**inputs)
            if prediction_loss_only:
                return out.loss.detach(), None, None
            return out.loss.detach(), (out.logits.detach(), out.pred_boxes.detach()), inputs["labels"]

    return DetectionTrainer


def detections(pred: Any, processor: Any, size: int) -> tuple[list[dict], list[dict]]:
    """Ground truth and detections of an evaluation (batches kept apart: ``eval_do_concat_batches=False``) as
    per-image ``{"labels", "boxes": [[x, y, w, h]] pixels of the square input, "scores"}``; detections are decoded
    by the model's own processor (softmax or sigmoid/top-k, as the family needs)."""
    from types import SimpleNamespace

    import torch

    truth, found = [], []
    for (logits, boxes), labels in zip(pred.predictions, pred.label_ids, strict=True):
        out = SimpleNamespace(logits=torch.as_tensor(logits), pred_boxes=torch.as_tensor(boxes))
        for r in processor.post_process_object_detection(out, threshold=0.0, target_sizes=[(size, size)] * len(logits)):
            xyxy = r["boxes"].tolist()
            found.append(
                {
                    "labels": r["labels"].tolist(),
                    "scores": r["scores"].tolist(),
                    "boxes": [[a, b, c - a, d - b] for a, b, c, d in xyxy],
                }
            )
        for t in labels:
            cxcywh = (torch.as_tensor(t["boxes"]).reshape(-1, 4) * size).tolist()
            truth.append(
                {
                    "labels": torch.as_tensor(t["class_labels"]).tolist(),
                    "boxes": [[cx - w / 2, cy - h / 2, w, h] for cx, cy, w, h in cxcywh],
                }
            )
    return truth, found


def box_problems(name: str, boxes: list, cats: list, size: tuple[int, int], known: set | None) -> list[str]:
    """Boxes of one image that are empty, outside the image (1 pixel of slack) or of an unknown category."""
    w, h = size
    out = []
    for (x, y, bw, bh), c in zip(boxes, cats, strict=True):
        box = f"[{x:g}, {y:g}, {bw:g}, {bh:g}] ({c})"
        if bw <= 0 or bh <= 0:
            out.append(f"image `{name}`: box {box} has no area; boxes are [x, y, width, height].")
        elif x < -1 or y < -1 or x + bw > w + 1 or y + bh > h + 1:
            hint = " It looks like [x_min, y_min, x_max, y_max]: use [x, y, width, height]." if bw > x else ""
            out.append(f"image `{name}`: box {box} lies outside the {w}x{h} image.{hint}")
        if known is not None and c not in known:
            out.append(f"image `{name}`: category `{c}` never occurs in the training data.")
    return out
