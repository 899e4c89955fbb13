"""Tiny image models and learnable synthetic images built in-process (no Hub access needed)."""

from __future__ import annotations

import json
import random
from pathlib import Path

SHAPES = ["circle", "square", "triangle"]


def shape_image(shape: str, size: int = 32, rng: random.Random | None = None, box: tuple | None = None):
    """A ``shape`` on a dark noisy background, coloured with one dominant channel per shape (a signal a tiny model
    learns in a few epochs); ``box`` (x, y, w, h) places it (random otherwise).
    Returns the image and the box drawn."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = rng or random.Random(0)
    noise = np.random.default_rng(rng.randrange(2**31)).integers(0, 90, (size, size, 3), dtype=np.uint8)
    img = Image.fromarray(noise)
    if box is None:
        w = rng.randint(size // 3, size // 2)
        x, y = rng.randint(0, size - w - 1), rng.randint(0, size - w - 1)
        box = (x, y, w, w)
    x, y, w, h = box
    colour = [rng.randint(0, 90) for _ in range(3)]
    colour[SHAPES.index(shape) % 3] = rng.randint(170, 255)  # each shape has its own dominant channel
    colour = tuple(colour)
    draw = ImageDraw.Draw(img)
    if shape == "circle":
        draw.ellipse((x, y, x + w, y + h), fill=colour)
    elif shape == "square":
        draw.rectangle((x, y, x + w, y + h), fill=colour)
    else:
        draw.polygon([(x, y + h), (x + w / 2, y), (x + w, y + h)], fill=colour)
    return img, box


def class_folders(root: Path, n: int, size: int = 32, seed: int = 0) -> Path:
    """``root/<shape>/<i>.png``: ``n`` images per class."""
    rng = random.Random(seed)
    for shape in SHAPES:
        (root / shape).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shape_image(shape, size, rng)[0].save(root / shape / f"{i}.png")
    return root


def brightness_folder(root: Path, n: int, size: int = 32, seed: int = 0) -> Path:
    """Images + ``metadata.jsonl`` whose ``target`` is the brightness (0..1) of a grey square on noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        level = float(rng.uniform(0, 1))
        arr = rng.integers(0, 40, (size, size, 3)).astype(np.float32)
        x, y = rng.integers(0, size // 2, 2)
        arr[y : y + size // 2, x : x + size // 2] = 40 + level * 215
        Image.fromarray(arr.astype(np.uint8)).save(root / f"{i}.png")
        rows.append({"file_name": f"{i}.png", "target": round(level, 4)})
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def image_processor(size: int = 32):
    """A ViT image processor (PIL backend) resizing to ``size``."""
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    return ViTImageProcessorPil(size={"height": size, "width": size}, image_mean=[0.5] * 3, image_std=[0.5] * 3)


def build_tiny_vit(out_dir: Path, size: int = 32, hidden: int = 32, layers: int = 2, patch: int = 8) -> Path:
    """A 2-layer ViT with its processor, saved to ``out_dir``. Saved with a 2-class head: a head-less ``ViTModel``
    saved by transformers 5.24 loads into ``ViTForImageClassification`` with every encoder weight missing
    (its key renaming does not round-trip the ``vit.`` prefix); the head is replaced at load time anyway."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    cfg = ViTConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=hidden * 2,
        image_size=size,
        patch_size=patch,
    )
    ViTForImageClassification(cfg).save_pretrained(str(out_dir))
    image_processor(size).save_pretrained(str(out_dir))
    return out_dir
