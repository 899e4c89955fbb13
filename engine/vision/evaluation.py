"""Test-set evaluation for the image tasks: the test images resolved and checked before a model is loaded, and the
detection report (COCO mAP@[.5:.95] and mAP@.5, AP per class, and per image the boxes missed and the false ones).

UI-safe at module level: numpy and pycocotools are imported inside the functions that run in the eval job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.data import images as im
from engine.errors import UserError

SHOWN = 10  # problems listed before "... more"
MATCH_IOU = 0.5  # a found box hits a true box of its class when they overlap at least this much (per-image counts)


def test_images(values: list[Any], options: dict[str, Any]) -> list[Any]:
    """The test rows' images with relative paths made absolute (against the test file's folder, ``options["bases"]``);
    a UserError naming the row and file of every image that is missing or does not decode, before any model runs."""
    bases = [Path(b) for b in options.get("bases") or []]
    problems = []
    for i, value in enumerate(values):
        found = im.decoded_size(value, bases)  # the problem names the file as the test data does
        if isinstance(found, str):
            problems.append(f"Test data, row {i + 1}: {found}")
    if problems:
        more = [f"Test data: {len(problems) - SHOWN} more image(s) could not be read."] if len(problems) > SHOWN else []
        raise UserError(problems[:SHOWN] + more)
    return [im.resolve(v, bases) for v in values]


def shown_names(values: list[Any], options: dict[str, Any]) -> list[str]:
    """How each test image is named in the predictions table: its path as the test file gives it, or relative to
    the test folder or ZIP."""
    from engine.train.evaluation import shown_path

    return [shown_path(v, options.get("bases") or []) for v in values]


# ---- detection ----------------------------------------------------------------------------


def xyxy_to_xywh(box: list[float]) -> list[float]:
    x0, y0, x1, y1 = box
    return [x0, y0, x1 - x0, y1 - y0]


def iou_matrix(a: list[list[float]], b: list[list[float]]) -> Any:
    """Intersection over union of every [x, y, w, h] box of ``a`` with every box of ``b`` (len(a) x len(b))."""
    import numpy as np

    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, :2] + a[:, None, 2:], b[None, :, :2] + b[None, :, 2:])
    inter = np.clip(hi - lo, 0, None).prod(-1)
    union = a[:, 2:].prod(-1)[:, None] + b[:, 2:].prod(-1)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_boxes(truth: dict, found: dict, threshold: float, iou: float = MATCH_IOU) -> dict[str, int]:
    """One image's boxes found with a score >= ``threshold`` matched greedily (best score first) to the unmatched true
    box of the same class they overlap most (IoU >= ``iou``): ``{"matched", "missed", "false"}``."""
    kept = [k for k, s in enumerate(found["scores"]) if s >= threshold]
    kept.sort(key=lambda k: -found["scores"][k])
    overlaps = iou_matrix([found["boxes"][k] for k in kept], truth["boxes"])
    taken: set[int] = set()
    matched = 0
    for row, k in enumerate(kept):
        best, best_iou = None, iou
        for t, label in enumerate(truth["labels"]):
            if t not in taken and label == found["labels"][k] and overlaps[row, t] >= best_iou:
                best, best_iou = t, overlaps[row, t]
        if best is not None:
            taken.add(best)
            matched += 1
    return {"matched": matched, "missed": len(truth["labels"]) - matched, "false": len(kept) - matched}


def detection_report(
    truth: list[dict], found: list[dict], names: list[str], inputs: list[str], threshold: float
) -> dict[str, Any]:
    """COCO mAP@[.5:.95], mAP@.5 and mAP@.75 with AP per class (all detections, best 100 per image), precision and
    recall of the boxes scoring ``threshold`` or more (IoU .5); rows: images with the most missed plus false boxes
    first. ``truth``/``found`` hold per image ``labels`` (class ids), ``boxes`` ([x, y, w, h] pixels), ``scores``."""
    from engine.vision.detection import coco_map

    overall, per_class = coco_map(truth, found, names)
    present = {names[label] for t in truth for label in t["labels"]}
    per_class = {n: ap for n, ap in per_class.items() if n in present}  # a class absent from the test set has no AP
    counts = [match_boxes(t, f, threshold) for t, f in zip(truth, found, strict=True)]
    hits = sum(c["matched"] for c in counts)
    n_found, n_true = hits + sum(c["false"] for c in counts), hits + sum(c["missed"] for c in counts)
    metrics: dict[str, Any] = {k: round(float(v), 6) for k, v in overall.items()}
    metrics |= {"precision": hits / n_found if n_found else 0.0, "recall": hits / n_true if n_true else 0.0}
    metrics |= {"score_threshold": threshold, "per_class_ap": per_class}
    rows = [
        {
            "row": i + 1,
            "input": name,
            "reference": _boxes_text(t, names),
            "prediction": _boxes_text(f, names, threshold),
        }
        | c
        | {"errors": c["missed"] + c["false"]}
        for i, (name, t, f, c) in enumerate(zip(inputs, truth, found, counts, strict=True))
    ]
    rows.sort(key=lambda r: (-r["errors"], -r["missed"], r["row"]))
    return {"metrics": metrics, "rows": rows, "key_metric": "map", "greater_is_better": True}


def _boxes_text(boxes: dict, names: list[str], threshold: float | None = None) -> str:
    """`circle [3, 4, 10, 12] 0.91; square [...]`: the boxes of an image (found ones: those over the threshold)."""
    scores = boxes.get("scores")
    keep = [k for k in range(len(boxes["labels"])) if threshold is None or scores[k] >= threshold]
    parts = [
        f"{names[boxes['labels'][k]]} [{', '.join(f'{v:.0f}' for v in boxes['boxes'][k])}]"
        + (f" {scores[k]:.2f}" if scores is not None else "")
        for k in keep
    ]
    return "; ".join(parts) or "(no boxes)"


def evaluate_detection(
    model_dir: Path, rows: list[tuple[list, list]], images: list[Any], predict: Any, options: dict[str, Any]
) -> dict[str, Any]:
    """Object detection's test-set report: ``rows`` the parsed (boxes [x, y, w, h], categories) of each image,
    ``predict`` a batch of images -> their detections (every score); categories checked against the model's."""
    from engine import runfiles
    from engine.train import evaluation

    id2label = (runfiles.read_json(Path(model_dir) / "config.json") or {}).get("id2label") or {}
    names = [str(id2label[k]) for k in sorted(id2label, key=int)]
    evaluation.unseen_labels_error(set(names), [c for _, cats in rows for c in cats], "category")
    index = {n: i for i, n in enumerate(names)}
    loaded = test_images(images, options)
    found = evaluation.batched(loaded, predict, options.get("batch_size") or 8, options.get("progress"))
    truth = [{"labels": [index[c] for c in cats], "boxes": boxes} for boxes, cats in rows]
    detections = [
        {
            "labels": [index[o["label"]] for o in f["objects"]],
            "scores": [o["score"] for o in f["objects"]],
            "boxes": [xyxy_to_xywh(o["box"]) for o in f["objects"]],
        }
        for f in found
    ]
    threshold = float(options.get("threshold") or 0.5)
    return detection_report(truth, detections, names, shown_names(images, options), threshold)
