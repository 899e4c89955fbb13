"""Image-task benchmark: `trainpad run` as a user would, against a plain transformers ``Trainer`` on pre-decoded
tensors (the floor). One JSON line per job.

Classification (the issue's reference job): tiny ViT (``tests.tiny_vision.build_tiny_vit``: hidden 32, 2 layers,
patch 8, 32x32 input), 2,000 32x32 coloured-shape images as class sub-folders, 5 epochs, batch 16, lr 3e-3, 10%
held out, evaluation each epoch. Targets: wall <= 1.25x the floor, peak RSS <= 1 GB.

Detection: tiny YOLOS (hidden 64, 2 layers, 3 detection tokens), 400 64x64 images (COCO JSON), 3 epochs, batch 16,
no evaluation during training (throughput). Target: training images/s within 1.5x of the floor. The mAP step
(post-processing + pycocotools on the validation predictions) is timed on its own: target <= 10% of an epoch.

    .venv/bin/python bench/bench_vision.py [--jobs classification,detection] [--images 2000] [--epochs 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import measured, trainpad_run, watch_peak_rss  # noqa: E402


def floor_run(kind: str, model: Path, data: Path, epochs: int, work: Path) -> dict:
    """The floor in its own process (imports included, as for `trainpad run`): wall, train time, peak RSS."""
    out = work / f"floor-{kind}.json"
    cmd = [sys.executable, __file__, "--floor", kind, "--model", str(model), "--data", str(data)]
    proc = subprocess.Popen([*cmd, "--epochs", str(epochs), "--out", str(out)], cwd=ROOT)
    worker, tree, wall = watch_peak_rss(proc)
    if proc.returncode != 0:
        raise SystemExit(f"floor {kind} failed")
    return {"wall_s": round(wall, 2), "peak_rss_all_mb": round(tree / 2**20), **json.loads(out.read_text())}


def _floor_main(args: argparse.Namespace) -> None:
    """Decode every image once into tensors up front, then a plain Trainer (same model, batch, epochs, lr)."""
    import torch
    from transformers import Trainer, TrainingArguments

    from engine.data import images as im
    from engine.vision import detection as vdet

    t0 = time.time()
    df = im.read_image_folder(Path(args.data))
    classify = args.floor == "classification"
    train, valid, model = (_floor_classification if classify else _floor_detection)(df, args.model)
    decode_s = time.time() - t0
    torch.set_num_threads(1)  # Trainpad's auto for models under 1M parameters
    targs = TrainingArguments(
        output_dir=tempfile.mkdtemp(),
        num_train_epochs=args.epochs,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=16,
        learning_rate=3e-3 if classify else 1e-3,
        report_to="none",
        disable_tqdm=True,
        save_strategy="no",
        use_cpu=True,
        remove_unused_columns=False,
        logging_steps=50,
        eval_strategy="epoch" if valid else "no",
    )
    collate = stack_collate if classify else vdet.detection_collate
    trainer = Trainer(model=model, args=targs, train_dataset=train, eval_dataset=valid, data_collator=collate)
    result = trainer.train()
    metrics = trainer.evaluate() if valid else {}
    out = {
        "decode_s": round(decode_s, 2),
        "train_runtime_s": round(result.metrics["train_runtime"], 2),
        "train_samples_per_second": round(result.metrics["train_samples_per_second"], 1),
        **{k: round(v, 4) for k, v in metrics.items() if k in ("eval_accuracy",)},
    }
    Path(args.out).write_text(json.dumps(out))


def _floor_classification(df, model_path: str) -> tuple:  # noqa: ANN001
    """Every image decoded, resized and normalised once; 10% held out (seeded); the model with a new head."""
    import torch
    from transformers import AutoModelForImageClassification

    from engine.data import images as im
    from engine.vision import encoders as ve

    spec = ve.pixel_spec(ve.load_processor(model_path))
    names = sorted(set(df["label"]))
    rows = [
        {
            "pixel_values": torch.from_numpy(ve.to_pixels(im.open_image(p).resize((spec.width, spec.height)), spec)),
            "labels": names.index(y),
        }
        for p, y in zip(df["image"], df["label"], strict=True)
    ]
    __import__("random").Random(0).shuffle(rows)
    n_valid = len(rows) // 10
    model = AutoModelForImageClassification.from_pretrained(
        model_path, num_labels=len(names), ignore_mismatched_sizes=True
    )
    return rows[n_valid:], rows[:n_valid], model


def _floor_detection(df, model_path: str) -> tuple:  # noqa: ANN001
    """Every image decoded and letterboxed once, with its boxes as the model takes them; no evaluation."""
    from transformers import AutoModelForObjectDetection

    ds = detection_set(df, model_path)
    return [ds[i] for i in range(len(ds))], None, AutoModelForObjectDetection.from_pretrained(model_path)


def detection_set(df, model_path: str | Path) -> object:  # noqa: ANN001
    """The detection table as Trainpad's evaluation dataset (64x64 letterboxed, no augmentation)."""
    from engine.vision import detection as vdet
    from engine.vision import encoders as ve

    names = ["circle", "square", "triangle"]
    params = argparse.Namespace(image_square_size=64, augmentation="none", seed=0, data_path="", valid_path="")
    boxes = [o["bbox"] for o in df["objects"]]
    classes = [[names.index(c) for c in o["category"]] for o in df["objects"]]
    return vdet.DetectionSet(list(df["image"]), boxes, classes, ve.load_processor(model_path), params, False)


def stack_collate(rows: list[dict]) -> dict:
    """The floor's collator: the rows already hold tensors."""
    import torch

    return {
        "pixel_values": torch.stack([r["pixel_values"] for r in rows]),
        "labels": torch.tensor([r["labels"] for r in rows]),
    }


def classification(work: Path, args: argparse.Namespace) -> dict:
    from tests.tiny_vision import build_tiny_vit, class_folders

    data = class_folders(work / "shapes", args.images // 3, seed=1)
    model = build_tiny_vit(work / "vit")
    floor = floor_run("classification", model, data, args.epochs, work)
    out = {"job": f"image_classification {args.images} images x {args.epochs} epochs", "floor": floor}
    for aug in ("crop_flip_color", "none"):
        run = trainpad_run(
            f"task: image_classification\nparams:\n  base_model: {model}\n  data_path: {data}\n  epochs: {args.epochs}\n"
            f"  batch_size: 16\n  learning_rate: 3.0e-3\n  valid_fraction: 0.1\n  augmentation: {aug}\n",
            work,
            aug,
        )
        out[f"trainpad_{aug}"] = {
            **measured(run),
            "eval_accuracy": round(run["metrics"]["eval_accuracy"], 4),
            "wall_vs_floor": round(run["wall_s"] / floor["wall_s"], 2),
        }
    return out


def detection(work: Path, args: argparse.Namespace) -> dict:
    from tests.tiny_vision import build_tiny_detector, detection_rows, write_detection

    data = write_detection(work / "coco", detection_rows(400, seed=1), "coco")
    model = build_tiny_detector(work / "yolos", "yolos", queries=3)
    floor = floor_run("detection", model, data, 3, work)
    run = trainpad_run(
        f"task: object_detection\nparams:\n  base_model: {model}\n  data_path: {data}\n  epochs: 3\n  batch_size: 16\n"
        "  learning_rate: 1.0e-3\n  valid_fraction: 0.1\n  image_square_size: 64\n  augmentation: flip_color\n"
        "  eval_strategy: 'no'\n",
        work,
        "detection",
    )
    ips = 0.9 * 400 * 3 / run["metrics"]["train_runtime"]
    return {
        "job": "object_detection 400 images x 3 epochs",
        "floor": floor,
        "trainpad": {
            **measured(run),
            "train_images_per_s": round(ips, 1),
            "floor_vs_trainpad_images_per_s": round(floor["train_samples_per_second"] / ips, 2),
            "eval_map_50": round(run["metrics"]["eval_map_50"], 4),
        },
        "map_step": map_step_time(work, run, model, data),
    }


def map_step_time(work: Path, run: dict, model: Path, data: Path) -> dict:
    """Time post-processing + pycocotools on 40 validation images' predictions, against one training epoch."""
    from types import SimpleNamespace

    import torch

    from engine.data import images as im
    from engine.vision import detection as vdet
    from engine.vision import encoders as ve

    df = im.read_image_folder(data).head(40)
    proc, names = ve.load_processor(model), ["circle", "square", "triangle"]
    ds = detection_set(df, model)
    batch = vdet.detection_collate([ds[i] for i in range(len(ds))])
    net = __import__("transformers").AutoModelForObjectDetection.from_pretrained(str(model)).eval()
    with torch.no_grad():
        out = net(pixel_values=batch["pixel_values"])
    pred = SimpleNamespace(predictions=[(out.logits.numpy(), out.pred_boxes.numpy())], label_ids=[batch["labels"]])
    t0 = time.time()
    vdet.coco_map(*vdet.detections(pred, proc, 64), names)
    seconds = time.time() - t0
    epoch = run["metrics"]["train_runtime"] / 3
    return {"map_s": round(seconds, 3), "epoch_s": round(epoch, 2), "share_of_epoch": round(seconds / epoch, 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", default="classification,detection")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--floor", default="")
    ap.add_argument("--model", default="")
    ap.add_argument("--data", default="")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    if args.floor:
        return _floor_main(args)
    with tempfile.TemporaryDirectory() as tmp:
        for job in args.jobs.split(","):
            work = Path(tmp) / job
            work.mkdir()
            print(json.dumps({"classification": classification, "detection": detection}[job](work, args)), flush=True)


if __name__ == "__main__":
    main()
