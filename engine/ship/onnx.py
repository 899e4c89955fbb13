"""ONNX for the encoder tasks (text classification/regression, token classification, sentence embeddings, image
classification/regression), runnable with onnxruntime, validated against torch like optimum's exporter does.

optimum-onnx would be the natural exporter, but its latest release (0.1.0) requires transformers < 4.58 and does
not import with the transformers 5 that Trainpad trains with; so the graph is written by ``torch.onnx.export`` and
checked here the way optimum checks it: the same inputs through torch and onnxruntime, outputs within ``atol``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.ship import tools

# The task's Hub pipeline -> how its model is loaded, what it takes, what it gives.
PIPELINES = {
    "text-classification": ("AutoModelForSequenceClassification", "text", "logits"),
    "token-classification": ("AutoModelForTokenClassification", "text", "logits"),
    "sentence-similarity": ("SentenceTransformer", "text", "sentence_embedding"),
    "image-classification": ("AutoModelForImageClassification", "image", "logits"),
}
ATOL = 1e-4
OPSET = 17


def supports(pipeline: str | None) -> bool:
    return pipeline in PIPELINES


def export(model_dir: Path, out_file: Path, pipeline: str, int8: bool = False) -> dict[str, Any]:
    """Write ``out_file`` (and, with ``int8``, its dynamic int8 twin); return {"max_diff", "atol", ...}."""
    if why := tools.missing("onnx"):
        raise UserError(why)
    if not supports(pipeline):
        raise UserError(f"ONNX export covers encoder tasks ({', '.join(PIPELINES)}); this run's model is `{pipeline}`.")
    import torch

    loader, kind, output = PIPELINES[pipeline]
    module, inputs = _module_and_inputs(model_dir, loader, kind)
    names = list(inputs)
    axes = {n: {0: "batch", 1: "sequence"} for n in names} if kind == "text" else {names[0]: {0: "batch"}}
    axes[output] = {0: "batch", 1: "sequence"} if pipeline == "token-classification" else {0: "batch"}
    with torch.no_grad():
        torch.onnx.export(
            module,
            tuple(inputs.values()),
            str(out_file),
            input_names=names,
            output_names=[output],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    report = {"max_diff": validate(module, out_file, _other_inputs(inputs)), "atol": ATOL, "opset": OPSET}
    if int8:
        report["int8"] = str(quantize_int8(out_file))
    return report


def _module_and_inputs(model_dir: Path, loader: str, kind: str) -> tuple[Any, dict[str, Any]]:
    import torch

    if loader == "SentenceTransformer":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(model_dir), device="cpu").eval()
        tok = model.tokenizer
        module: Any = _SentenceEmbedding(model)
    else:
        import transformers

        model = getattr(transformers, loader).from_pretrained(str(model_dir), torch_dtype=torch.float32).eval()
        module = _Logits(model)
        tok = None if kind == "image" else transformers.AutoTokenizer.from_pretrained(str(model_dir))
    if kind == "image":
        size = model.config.image_size if hasattr(model.config, "image_size") else 224
        size = size if isinstance(size, int) else size.get("height", 224)
        return module, {"pixel_values": torch.randn(2, model.config.num_channels, size, size)}
    enc = tok(["an example sentence", "and another, longer, example sentence"], padding=True, return_tensors="pt")
    return module, {k: enc[k] for k in ("input_ids", "attention_mask")}


class _Logits:
    """A transformers model as a plain function of its inputs (what the ONNX graph computes)."""

    def __new__(cls, model: Any) -> Any:
        import torch

        class Logits(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, *args: Any) -> Any:
                names = ["pixel_values"] if args[0].dtype.is_floating_point else ["input_ids", "attention_mask"]
                return self.model(**dict(zip(names, args, strict=True))).logits

        return Logits().eval()


class _SentenceEmbedding:
    def __new__(cls, model: Any) -> Any:
        import torch

        class Embedding(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids: Any, attention_mask: Any) -> Any:
                return self.model({"input_ids": input_ids, "attention_mask": attention_mask})["sentence_embedding"]

        return Embedding().eval()


def _other_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    """Inputs of another shape than the traced ones (batch 3, other lengths): the dynamic axes are checked too."""
    import torch

    if "pixel_values" in inputs:
        return {"pixel_values": torch.randn(3, *inputs["pixel_values"].shape[1:])}
    ids = inputs["input_ids"]
    new_ids = ids[:1].repeat(3, 1)[:, : max(3, ids.shape[1] - 1)]
    mask = torch.ones_like(new_ids)
    mask[0, -1] = 0
    return {"input_ids": new_ids, "attention_mask": mask}


def validate(module: Any, path: Path, inputs: dict[str, Any]) -> float:
    """Largest difference between torch's and onnxruntime's outputs; UserError past ATOL."""
    import numpy as np
    import onnxruntime as ort
    import torch

    with torch.no_grad():
        want = module(*inputs.values()).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {k: v.numpy() for k, v in inputs.items()})[0]
    diff = float(np.abs(got - want).max())
    if not diff <= ATOL:
        raise UserError(f"The ONNX model's outputs differ from torch's by {diff:.2e} (more than {ATOL}); not kept.")
    return diff


def quantize_int8(path: Path) -> Path:
    """onnxruntime's dynamic int8 quantization (weights int8, activations quantized at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = path.with_name(path.stem + ".int8.onnx")
    quantize_dynamic(str(path), str(out), weight_type=QuantType.QInt8)
    return out
