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


def detection_rows(n: int, size: int = 64, seed: int = 0, most: int = 2) -> list[tuple]:
    """``n`` (image, boxes [[x, y, w, h]], categories) with one (or up to ``most``=2) shapes each, boxes tight
    around them."""
    from PIL import Image

    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        shapes = [rng.choice(SHAPES) for _ in range(rng.choice([1, 1, most]))]
        w = rng.randint(size // 4, size // 2)
        x, y = rng.randint(0, size // 2 - w // 2 - 1), rng.randint(0, size - w - 1)
        img, box = shape_image(shapes[0], size, rng, box=(x, y, w, w))
        boxes = [list(box)]
        if len(shapes) == 2:  # a second shape in the right half
            w2 = rng.randint(size // 5, size // 3)
            box2 = (rng.randint(size // 2 + 1, size - w2 - 1), rng.randint(0, size - w2 - 1), w2, w2)
            second, _ = shape_image(shapes[1], size, rng, box=box2)
            img.paste(second.crop((box2[0], box2[1], box2[0] + w2 + 1, box2[1] + w2 + 1)), box2[:2])
            boxes.append(list(box2))
        rows.append((img.convert("RGB") if isinstance(img, Image.Image) else img, boxes, shapes))
    return rows


def write_detection(root: Path, rows: list[tuple], fmt: str) -> Path:
    """``rows`` saved as a detection folder: ``coco`` (annotations.json), ``yolo`` (images/ + labels/ +
    classes.txt), ``voc`` (JPEG-free: PNG + Annotations/*.xml) or ``hf`` (metadata.jsonl with ``objects``)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    names = [f"images/{i}.png" for i in range(len(rows))]
    for name, (img, _, _) in zip(names, rows, strict=True):
        img.save(root / name)
    size = rows[0][0].size
    if fmt == "coco":
        objects = [(i, b, c) for i, (_, bs, cs) in enumerate(rows) for b, c in zip(bs, cs, strict=True)]
        anns = [
            {"id": n + 1, "image_id": i, "bbox": b, "category_id": SHAPES.index(c) + 1, "area": b[2] * b[3]}
            for n, (i, b, c) in enumerate(objects)
        ]
        data = {
            "images": [
                {"id": i, "file_name": name[7:], "width": size[0], "height": size[1]} for i, name in enumerate(names)
            ],
            "annotations": anns,
            "categories": [{"id": k + 1, "name": s} for k, s in enumerate(SHAPES)],
        }
        (root / "annotations.json").write_text(json.dumps(data))
    elif fmt == "yolo":
        (root / "labels").mkdir(exist_ok=True)
        (root / "classes.txt").write_text("\n".join(SHAPES))
        for i, (_, bs, cs) in enumerate(rows):
            lines = [
                f"{SHAPES.index(c)} {(x + w / 2) / size[0]} {(y + h / 2) / size[1]} {w / size[0]} {h / size[1]}"
                for (x, y, w, h), c in zip(bs, cs, strict=True)
            ]
            (root / "labels" / f"{i}.txt").write_text("\n".join(lines))
    elif fmt == "voc":
        (root / "Annotations").mkdir(exist_ok=True)
        for i, (_, bs, cs) in enumerate(rows):
            objs = "".join(
                f"<object><name>{c}</name><bndbox><xmin>{x}</xmin><ymin>{y}</ymin><xmax>{x + w}</xmax>"
                f"<ymax>{y + h}</ymax></bndbox></object>"
                for (x, y, w, h), c in zip(bs, cs, strict=True)
            )
            (root / "Annotations" / f"{i}.xml").write_text(
                f"<annotation><filename>{i}.png</filename><size><width>{size[0]}</width><height>{size[1]}</height>"
                f"</size>{objs}</annotation>"
            )
    else:
        lines = [
            json.dumps({"file_name": name, "objects": {"bbox": bs, "category": cs}})
            for name, (_, bs, cs) in zip(names, rows, strict=True)
        ]
        (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return root


def build_tiny_detector(out_dir: Path, kind: str = "detr", size: int = 64, queries: int = 10) -> Path:
    """A tiny DETR, Conditional/Deformable DETR, RT-DETR or D-FINE (ResNet/HGNetV2 backbone built from its config:
    ``use_pretrained_backbone=False``, no timm, nothing downloaded) or YOLOS with 3 classes, saved with its PIL
    image processor."""
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    labels = {"id2label": dict(enumerate(SHAPES)), "label2id": {s: i for i, s in enumerate(SHAPES)}}
    builders = {
        "yolos": _tiny_yolos,
        "rtdetr": _tiny_rtdetr,
        "detr": _tiny_detr,
        "conditional_detr": _tiny_conditional_detr,
        "deformable_detr": _tiny_deformable_detr,
        "dfine": _tiny_dfine,
    }
    model, processor = builders[kind](size, queries, labels)
    model.save_pretrained(str(out_dir))
    processor.save_pretrained(str(out_dir))
    return out_dir


def _tiny_yolos(size: int, queries: int, labels: dict):
    from transformers import YolosConfig, YolosForObjectDetection
    from transformers.models.detr.image_processing_pil_detr import DetrImageProcessorPil

    cfg = YolosConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        image_size=[size, size],
        patch_size=8,
        num_detection_tokens=queries,
        **labels,
    )
    return YolosForObjectDetection(cfg), DetrImageProcessorPil(size={"height": size, "width": size})


def _tiny_rtdetr(size: int, queries: int, labels: dict):
    from transformers import RTDetrConfig, RTDetrForObjectDetection, RTDetrResNetConfig
    from transformers.models.rt_detr.image_processing_pil_rt_detr import RTDetrImageProcessorPil

    backbone = RTDetrResNetConfig(
        embedding_size=16,
        hidden_sizes=[16, 32, 32, 64],
        depths=[1, 1, 1, 1],
        out_features=["stage2", "stage3", "stage4"],
    )
    cfg = RTDetrConfig(
        backbone_config=backbone,
        use_pretrained_backbone=False,
        encoder_hidden_dim=32,
        encoder_in_channels=[32, 32, 64],
        d_model=32,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        decoder_layers=2,
        num_queries=queries,
        num_denoising=10,
        decoder_in_channels=[32, 32, 32],
        anchor_image_size=None,
        **labels,
    )
    return RTDetrForObjectDetection(cfg), RTDetrImageProcessorPil(size={"height": size, "width": size})


def _tiny_detr(size: int, queries: int, labels: dict):
    from transformers import DetrConfig, DetrForObjectDetection, ResNetConfig
    from transformers.models.detr.image_processing_pil_detr import DetrImageProcessorPil

    backbone = ResNetConfig(
        embedding_size=16, hidden_sizes=[16, 32, 64, 64], depths=[1, 1, 1, 1], out_features=["stage4"]
    )
    cfg = DetrConfig(
        use_timm_backbone=False,
        use_pretrained_backbone=False,
        backbone_config=backbone,
        d_model=64,
        encoder_layers=1,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        num_queries=queries,
        **labels,
    )
    return DetrForObjectDetection(cfg), DetrImageProcessorPil(size={"height": size, "width": size})


def _detr_like(levels: list[str], queries: int, labels: dict) -> dict:
    """Config fields shared by the tiny DETR variants (a from-config ResNet backbone)."""
    from transformers import ResNetConfig

    backbone = ResNetConfig(embedding_size=16, hidden_sizes=[16, 32, 64, 64], depths=[1, 1, 1, 1], out_features=levels)
    return dict(
        use_timm_backbone=False,
        use_pretrained_backbone=False,
        backbone_config=backbone,
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,  # Deformable DETR ties its box heads across decoder layers: needs two
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        num_queries=queries,
        **labels,
    )


def _tiny_conditional_detr(size: int, queries: int, labels: dict):
    from transformers import ConditionalDetrConfig, ConditionalDetrForObjectDetection
    from transformers.models.conditional_detr import ConditionalDetrImageProcessorPil

    cfg = ConditionalDetrConfig(**_detr_like(["stage4"], queries, labels))
    return ConditionalDetrForObjectDetection(cfg), ConditionalDetrImageProcessorPil(
        size={"height": size, "width": size}
    )


def _tiny_deformable_detr(size: int, queries: int, labels: dict):
    from transformers import DeformableDetrConfig, DeformableDetrForObjectDetection
    from transformers.models.deformable_detr import DeformableDetrImageProcessorPil

    cfg = DeformableDetrConfig(**_detr_like(["stage2", "stage3", "stage4"], queries, labels), num_feature_levels=3)
    return DeformableDetrForObjectDetection(cfg), DeformableDetrImageProcessorPil(size={"height": size, "width": size})


def _tiny_dfine(size: int, queries: int, labels: dict):
    from transformers import DFineConfig, DFineForObjectDetection, HGNetV2Config
    from transformers.models.rt_detr.image_processing_pil_rt_detr import RTDetrImageProcessorPil

    backbone = HGNetV2Config(
        stem_channels=[3, 8, 8],
        stage_in_channels=[8, 16, 32, 64],
        stage_mid_channels=[8, 16, 32, 64],
        stage_out_channels=[16, 32, 64, 64],
        stage_num_blocks=[1, 1, 1, 1],
        stage_downsample=[False, True, True, True],
        stage_light_block=[False, False, True, True],
        stage_kernel_size=[3, 3, 5, 5],
        stage_numb_of_layers=[2, 2, 2, 2],
        hidden_sizes=[16, 32, 64, 64],
        depths=[1, 1, 1, 1],
        out_features=["stage2", "stage3", "stage4"],
    )
    cfg = DFineConfig(
        backbone_config=backbone,
        use_pretrained_backbone=False,
        encoder_hidden_dim=32,
        encoder_in_channels=[32, 64, 64],
        d_model=32,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        decoder_layers=2,
        decoder_n_points=[2, 2, 2],
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        num_queries=queries,
        num_denoising=5,
        decoder_in_channels=[32, 32, 32],
        anchor_image_size=None,
        **labels,
    )
    return DFineForObjectDetection(cfg), RTDetrImageProcessorPil(size={"height": size, "width": size})
