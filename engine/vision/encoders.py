"""Helpers shared by the image tasks (classification, regression, detection).

Module level imports are light (the UI imports the task files); torch, transformers and Pillow are imported in
the functions that run in workers. Reading and decoding images lives in :mod:`engine.data.images`.

- parameters: :class:`VisionParams` (base model, augmentation, LoRA, early stopping);
- data: :data:`IMAGE_COLUMN`, :func:`bases`, :func:`check_split` (decode every image before launch),
  :func:`data_summary`;
- training: :func:`load_processor`, :func:`pixel_spec`, :class:`ImageSet` (decode once, resize once, augment per
  epoch, cached in memory), :func:`collate`, :func:`load_model` (LoRA optional), :func:`fit`;
- playground: :func:`as_images`, :func:`load_for_predict`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from engine.data import images as im
from engine.errors import UserError
from engine.params import LoraParams, field
from engine.task import Column

CACHE_BYTES = 512 * 2**20  # decoded training images kept in memory up to this size (then decoded each epoch)


class VisionParams(LoraParams):
    """Options shared by the image tasks."""

    base_model: str = field(
        "google/vit-base-patch16-224",
        "Hub model id (e.g. `google/vit-base-patch16-224`, `facebook/convnext-tiny-224`, `microsoft/resnet-50`) "
        "or a local model folder.",
    )
    learning_rate: float = field(5e-5, "Peak learning rate (2e-5..1e-4 suits pretrained models).", gt=0, le=1.0)
    augmentation: Literal["crop_flip_color", "crop_flip", "flip", "none"] = field(
        "crop_flip_color",
        "Random changes to training images each epoch: crop (random resized crop), flip (horizontal) and color "
        "(brightness/contrast/saturation). Drop color when colour is what you predict.",
    )
    lora_target_modules: str = field(
        "all-linear",
        "Layers that get adapters: all-linear (every linear layer but the new head, which is trained in full), or "
        "layer names separated by commas (e.g. q_proj,v_proj for ViT in transformers 5; query,value before).",
        show_if={"use_lora": True},
        advanced=True,
    )
    cpu_threads: int = field(
        0, "CPU threads for training (0 = auto: all cores, 1 for tiny models). Ignored on GPU.", ge=0, advanced=True
    )
    early_stopping_patience: int = field(
        5,
        "Stop when the validation metric has not improved for N evaluations, and keep the best model (0 = off).",
        ge=0,
        advanced=True,
    )


IMAGE_COLUMN = Column(
    "image",
    "the image: a file path (relative paths are read from the data file's folder) or a Hub dataset image",
    kind="any",
    aliases=("img", "file_name", "image_path", "filename", "path", "file", "filepath"),
)


# ---- data ---------------------------------------------------------------------------------


bases = im.data_bases  # relative image paths are looked up in the data's folders


def check_split(df: Any, params: Any, split: str) -> tuple[list[str], dict[int, tuple[int, int]]]:
    """Decode the split's images (a sample for big sets); problems name the split and file; sizes by row."""
    report = im.check_images(list(df["image"]), bases(params), seed=params.seed)
    problems = [f"{split} data: {p}" for p in report["problems"][:10]]
    if len(report["problems"]) > 10:
        problems.append(f"{split} data: {len(report['problems']) - 10} more image(s) could not be read.")
    return problems, report["sizes"]


def data_summary(task: Any, params: Any) -> str:
    """Markdown for Check: the layout found, image counts and the label (or category) counts."""
    from engine.data.splits import check_data, load_splits

    if check_data(task, params):
        return ""
    train, valid = load_splits(task, params)
    lines = [f"**{len(train)}** training images" + (f", **{len(valid)}** validation" if valid is not None else "")]
    if fmt := train.attrs.get("format"):
        lines.append(f"Layout found: {fmt}.")
    for name, df in (("training", train), ("validation", valid)):
        if df is not None and len(df) > im.MAX_CHECKED:
            lines.append(f"The check decoded a random sample of {im.MAX_CHECKED} of the {len(df)} {name} images.")
    if "objects" in train or task.stratify_role:  # class (or box category) counts
        lines.append(im.counts_note(train.rename(columns={task.stratify_role or "": "label"})).split(". ", 1)[-1])
    return "\n\n".join(lines)


# ---- preprocessing ------------------------------------------------------------------------


@dataclass(frozen=True)
class PixelSpec:
    """What the model's image processor does, so training images are prepared the same way (but faster)."""

    height: int
    width: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def load_processor(source: str | Path, trust_remote_code: bool = False) -> Any:
    """The model's image processor, PIL/numpy backend (the torchvision "fast" ones need torchvision)."""
    from transformers import AutoImageProcessor

    try:
        return AutoImageProcessor.from_pretrained(str(source), trust_remote_code=trust_remote_code, backend="pil")
    except (TypeError, ValueError):
        return AutoImageProcessor.from_pretrained(str(source), trust_remote_code=trust_remote_code)


def pixel_spec(processor: Any) -> PixelSpec:
    """Target size (crop size, else size; ``shortest_edge`` gives a square) and normalisation of a processor."""

    def known(value: Any) -> dict[str, int]:  # SizeDict or dict; unset entries are None
        return {k: v for k, v in dict(value or {}).items() if v is not None}

    size = known(getattr(processor, "crop_size", None)) or known(getattr(processor, "size", None))
    if "height" in size:
        h, w = size["height"], size["width"]
    else:
        h = w = size.get("shortest_edge") or size.get("longest_edge") or 224
    normalize = getattr(processor, "do_normalize", True)
    mean = tuple(processor.image_mean) if normalize else (0.0, 0.0, 0.0)
    std = tuple(processor.image_std) if normalize else (1.0, 1.0, 1.0)
    return PixelSpec(int(h), int(w), mean, std)


def augment(img: Any, spec: PixelSpec, kind: str, rng: Any) -> Any:
    """One random variant of a (cached, slightly larger) training image, resized to the model's size, as a
    normalised array: crop and flip on the PIL image, colour changes (brightness, contrast, saturation; numpy,
    ~10x cheaper than PIL's ImageEnhance) on the pixels."""
    from PIL import Image

    w, h = img.size
    if "crop" in kind:
        area = w * h * rng.uniform(0.6, 1.0)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = min(w, round(math.sqrt(area * ratio))), min(h, round(math.sqrt(area / ratio)))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        img = img.crop((x, y, x + cw, y + ch))
    img = img.resize((spec.width, spec.height), Image.BILINEAR) if img.size != (spec.width, spec.height) else img
    if "flip" in kind and rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    colour = tuple(rng.uniform(0.8, 1.2) for _ in range(3)) if "color" in kind else None
    return to_pixels(img, spec, colour)


def to_pixels(img: Any, spec: PixelSpec, colour: tuple[float, float, float] | None = None) -> Any:
    """A PIL image of the model's size as a normalised float32 CHW array; ``colour`` = (brightness, contrast,
    saturation) factors applied first (1 = unchanged)."""
    import numpy as np

    arr = np.asarray(img, dtype=np.float32) * (1 / 255.0)
    if colour is not None:
        brightness, contrast, saturation = colour
        arr = arr * brightness
        arr = (arr - arr.mean()) * contrast + arr.mean()
        grey = arr @ np.asarray([0.299, 0.587, 0.114], np.float32)
        arr = np.clip((arr - grey[..., None]) * saturation + grey[..., None], 0.0, 1.0)
    arr = (arr - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


class ImageSet:
    """A map-style dataset of ``{"pixel_values", "labels"}``: training rows are decoded and resized once (kept in
    memory while under :data:`CACHE_BYTES`) and augmented each epoch; evaluation rows are passed through the
    model's own processor once and kept."""

    def __init__(self, images: list[Any], labels: list[Any], processor: Any, params: Any, train: bool):
        import random

        self.images, self.labels, self.processor, self.train = images, labels, processor, train
        self.spec, self.kind, self.bases = pixel_spec(processor), params.augmentation, bases(params)
        self.rng = random.Random(params.seed)
        scale = 1.15 if "crop" in self.kind and train else 1.0
        self.stored = (round(self.spec.width * scale), round(self.spec.height * scale))
        per_image = self.stored[0] * self.stored[1] * 3 * (1 if train else 4)
        self.cache: dict[int, Any] | None = {} if per_image * len(images) <= CACHE_BYTES else None

    def __len__(self) -> int:
        return len(self.images)

    def _decoded(self, i: int) -> Any:
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        img = im.open_image(self.images[i], self.bases)
        if self.train:
            img = img.resize(self.stored)
        else:
            img = self.processor(images=img, return_tensors="np")["pixel_values"][0]
        if self.cache is not None:
            self.cache[i] = img
        return img

    def __getitem__(self, i: int) -> dict[str, Any]:
        img = self._decoded(i)
        if self.train:
            img = augment(img, self.spec, self.kind, self.rng)
        return {"pixel_values": img, "labels": self.labels[i]}


def collate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack pixel arrays and labels into tensors (float labels for regression)."""
    import numpy as np
    import torch

    labels = np.asarray([r["labels"] for r in rows])
    return {
        "pixel_values": torch.from_numpy(np.stack([r["pixel_values"] for r in rows])),
        "labels": torch.from_numpy(labels.astype(np.float32 if labels.dtype.kind == "f" else np.int64)),
    }


# ---- model and training -------------------------------------------------------------------


def load_model(params: Any, model_cls: Any, heads: tuple[str, ...] = ("classifier",), **config: Any) -> Any:
    """``model_cls.from_pretrained`` with a new head (``ignore_mismatched_sizes``: a checkpoint's 1,000 ImageNet
    classes give way to the user's) and LoRA adapters when asked (the new head is trained in full)."""
    model = model_cls.from_pretrained(
        params.base_model, trust_remote_code=params.trust_remote_code, ignore_mismatched_sizes=True, **config
    )
    if not params.use_lora:
        return model
    from peft import LoraConfig, get_peft_model

    targets = params.lora_target_modules
    lora = LoraConfig(
        r=params.lora_r,
        lora_alpha=params.lora_alpha,
        lora_dropout=params.lora_dropout,
        target_modules=targets if targets == "all-linear" else [t.strip() for t in targets.split(",") if t.strip()],
        modules_to_save=[h for h in heads if any(n.split(".")[0] == h for n, _ in model.named_modules())],
    )
    try:
        return get_peft_model(model, lora)
    except ValueError as e:
        raise UserError(
            f"LoRA could not be added to `{params.base_model}` ({e}). Set lora_target_modules to layer names "
            "of this model (e.g. q_proj,v_proj), or all-linear, or turn use_lora off."
        ) from None


def dataloader_workers(n_rows: int, cached: bool) -> int:
    """Worker processes for decoding: none when the images are cached or few (a process costs more than it saves)."""
    from engine.train.trainer import available_cores

    return 0 if cached or n_rows < 2000 else min(4, available_cores() // 2)


def fit(
    job: Any,
    model: Any,
    processor: Any,
    train_set: Any,
    valid_set: Any,
    trainer_cls: Any = None,
    side: dict[str, Any] | None = None,
    **trainer_kw: Any,
) -> dict[str, float]:
    """Train with the Hugging Face ``Trainer`` (or ``trainer_cls``; events, Stop, early stopping and best model on
    the task's key metric) and save the model (merged when it has LoRA adapters) with its processor to
    run_dir/model, with ``side`` settings for predict in the side file."""
    from transformers import Trainer

    from engine import runfiles as rf
    from engine.train import trainer as tu

    has_eval = bool(valid_set)
    cached = getattr(train_set, "cache", None) is not None
    args = tu.training_arguments(
        job,
        len(train_set),
        len(valid_set or []),
        remove_unused_columns=False,
        dataloader_num_workers=dataloader_workers(len(train_set), cached),
        **trainer_kw.pop("args", {}),
    )
    trainer = (trainer_cls or Trainer)(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=valid_set if has_eval else None,
        callbacks=tu.callbacks(job.params, job.run_dir, has_eval),
        **trainer_kw,
    )

    def save(model_dir: Path) -> None:
        final = trainer.model.merge_and_unload() if hasattr(trainer.model, "merge_and_unload") else trainer.model
        final.save_pretrained(str(model_dir))
        processor.save_pretrained(str(model_dir))
        rf.write_side_file(model_dir, {"task": job.task.name, **(side or {})})

    return tu.train_and_save(trainer, job.params, job.run_dir, has_eval, save=save)


# ---- playground ---------------------------------------------------------------------------


def as_images(inputs: Any) -> tuple[list[Any], bool]:
    """Playground inputs as decoded RGB images, and whether a single image was given: a path, a PIL image, an
    array, bytes, ``{"image": ...}``, or a list of those."""
    if isinstance(inputs, dict) and not {"bytes", "path"} & set(inputs):
        inputs = inputs.get("image", inputs.get("inputs"))
    if inputs is None or (isinstance(inputs, str) and not inputs.strip()):
        raise UserError("Give an image (upload one, or a path to an image file) to predict on.")
    if isinstance(inputs, (list, tuple)):
        return [im.open_image(x) for x in inputs], False
    return [im.open_image(inputs)], True


@functools.lru_cache(maxsize=2)
def _loaded(model_dir: str, model_cls_name: str) -> tuple[Any, Any]:
    import torch
    import transformers

    model = getattr(transformers, model_cls_name).from_pretrained(model_dir)
    model.eval().to("cuda" if torch.cuda.is_available() else "cpu")
    return model, load_processor(model_dir)


def load_for_predict(model_dir: str | Path, model_cls_name: str) -> tuple[Any, Any]:
    """The saved model (eval mode, GPU when there is one) and its processor; cached per folder for the playground."""
    return _loaded(str(Path(model_dir).resolve()), model_cls_name)


# ---- object detection ---------------------------------------------------------------------
