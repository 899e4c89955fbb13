"""A tiny LLaVA-style image-text-to-text model (tiny CLIP vision tower + tiny Llama) with its processor (the PIL
image processor: no torchvision), and images of coloured shapes with questions about them."""

from __future__ import annotations

import random
from pathlib import Path

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 30), "blue": (30, 60, 220), "yellow": (230, 210, 20)}
SHAPES = ("square", "circle")
IMAGE_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>' }}{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def shape_image(path: Path, colour: str, shape: str, seed: int, size: int = 32) -> Path:
    """A ``shape`` in ``colour`` at a random place on a grey, noisy background."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(90, 160, (size, size, 3), dtype=np.uint8))
    draw = ImageDraw.Draw(img)
    r = int(rng.integers(7, 11))
    x, y = (int(v) for v in rng.integers(r, size - r, 2))
    box = (x - r, y - r, x + r, y + r)
    (draw.rectangle if shape == "square" else draw.ellipse)(box, fill=COLOURS[colour])
    img.save(path)
    return path


def shape_rows(folder: Path, n: int, seed: int = 0) -> list[dict]:
    """VQA rows {file_name, question, answer}: "what colour is the square?" -> "red"."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        colour, shape = rng.choice(sorted(COLOURS)), rng.choice(SHAPES)
        name = f"img{seed}-{i}.png"
        shape_image(folder / name, colour, shape, seed * 100_000 + i)
        rows.append({"file_name": name, "question": f"what colour is the {shape}?", "answer": colour})
    return rows


def build_tiny_llava(out_dir: Path, image_size: int = 32, patch: int = 8) -> Path:
    """LLaVA with a 2-layer CLIP vision tower (32x32 images, 16 patches) and a 2-layer Llama, with its processor."""
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    from tests.tiny import build_tokenizer, causal_lm_config

    out_dir.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(out_dir, vocab_size=400, chat_template=None)
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    images = LlavaImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    processor = LlavaProcessor(
        image_processor=images,
        tokenizer=tok,
        patch_size=patch,
        vision_feature_select_strategy="default",
        chat_template=IMAGE_TEMPLATE,
        image_token="<image>",
        num_additional_image_tokens=1,
    )
    processor.save_pretrained(str(out_dir))
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch,
        projection_dim=32,
    )
    text = LlamaConfig(**causal_lm_config(tok, 64, 2), tie_word_embeddings=True)
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tok.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        image_seq_length=(image_size // patch) ** 2,
    )
    torch.manual_seed(0)
    LlavaForConditionalGeneration(config).save_pretrained(str(out_dir))
    return out_dir
