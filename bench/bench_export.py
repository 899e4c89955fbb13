"""Export time and file size per format: a tiny Llama and a ~27M-parameter Llama (GGUF f16 / q8_0 / q4_k_m), a tiny
BERT classifier (ONNX, ONNX int8). One JSON line per export. Untrained models: time and size do not depend on
training. Run: ``python bench/bench_export.py``."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.ship import gguf, onnx, tools  # noqa: E402
from tests.tiny import build_tiny_bert, build_tiny_llama  # noqa: E402


def params(model_dir: Path) -> int:
    from safetensors import safe_open

    total = 0
    for f in model_dir.glob("*.safetensors"):
        with safe_open(str(f), "pt") as st:
            for key in st.keys():
                n = 1
                for d in st.get_slice(key).get_shape():
                    n *= d
                total += n
    return total


def line(**fields) -> None:
    print(json.dumps(fields), flush=True)


def bench_gguf(name: str, model_dir: Path, out: Path) -> None:
    for quant in gguf.QUANTS:
        t = time.perf_counter()
        path = gguf.convert(model_dir, out / f"{name}-{quant}.gguf", quant, log=open(out / "convert.log", "a"))
        line(
            model=name,
            params=params(model_dir),
            format="gguf",
            quant=quant,
            seconds=round(time.perf_counter() - t, 2),
            bytes=path.stat().st_size,
        )


def main() -> None:
    out = Path(tempfile.mkdtemp(prefix="bench-export-"))
    if not tools.missing("gguf"):
        bench_gguf("tiny-llama", build_tiny_llama(out / "tiny-llama"), out)
        bench_gguf("llama-27m", build_tiny_llama(out / "llama-27m", hidden=512, layers=11, vocab_size=400), out)
    else:
        line(format="gguf", skipped=tools.missing("gguf"))
    if not tools.missing("onnx"):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        base = build_tiny_bert(out / "bert")
        cls = out / "bert-cls"
        AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=3).save_pretrained(str(cls))
        AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(cls))
        t = time.perf_counter()
        report = onnx.export(cls, out / "bert.onnx", "text-classification", int8=True)
        seconds = round(time.perf_counter() - t, 2)
        size = (out / "bert.onnx").stat().st_size
        line(
            model="tiny-bert",
            params=params(cls),
            format="onnx",
            seconds=seconds,
            bytes=size,
            max_diff=report["max_diff"],
        )
        line(model="tiny-bert", format="onnx-int8", bytes=Path(report["int8"]).stat().st_size)


if __name__ == "__main__":
    main()
