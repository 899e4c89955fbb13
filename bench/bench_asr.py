"""Speech and vision-language benchmarks. One JSON line per job.

asr: is audio decoding/featurising the bottleneck? The tiny Whisper (``tests.tiny_audio``, 1 s window) trains on
the espeak-ng spoken-word corpus twice in this process, same seed and settings: once through the task's dataset
(clips decoded, resampled and featurised as batches are drawn) and once on features computed beforehand. Target:
on-the-fly train time <= 1.25x pre-computed.

vlm: `trainpad run` of the tiny LLaVA (``tests.tiny_vlm``) with LoRA on coloured-shape VQA. Targets: peak RSS of
the worker <= 1.2 GB, first optimizer step <= 8 s after `trainpad run` starts.

    .venv/bin/python bench/bench_asr.py [--jobs asr,vlm] [--epochs 6]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import measured, trainpad_run  # noqa: E402


def asr_trainer(model_dir: Path, dataset, collate, epochs: int, out: Path):  # noqa: ANN001
    import torch
    from transformers import Trainer, TrainingArguments, WhisperForConditionalGeneration

    torch.manual_seed(0)
    torch.set_num_threads(1)  # what the task picks for a model this small
    args = TrainingArguments(
        output_dir=str(out),
        num_train_epochs=epochs,
        per_device_train_batch_size=8,
        learning_rate=2e-3,
        report_to="none",
        disable_tqdm=True,
        save_strategy="no",
        logging_steps=50,
        use_cpu=True,
        seed=0,
        remove_unused_columns=False,
        dataloader_num_workers=0,
    )
    model = WhisperForConditionalGeneration.from_pretrained(str(model_dir))
    return Trainer(model=model, args=args, train_dataset=dataset, data_collator=collate)


def bench_asr(work: Path, epochs: int) -> dict:
    import pandas as pd
    from transformers import AutoProcessor

    from engine.audio import train as asr
    from tests.tiny_audio import WORDS, build_tiny_whisper, spoken_words

    words = WORDS[:12]
    rows = spoken_words(work / "clips", words, formats=("wav", "flac", "ogg"))
    df = pd.DataFrame(
        {
            "audio": [str(work / "clips" / r["file_name"]) for r in rows],
            "transcription": [r["transcription"] for r in rows],
        }
    )
    model_dir = build_tiny_whisper(work / "whisper", words, seconds=1)
    processor = AutoProcessor.from_pretrained(str(model_dir))
    clips = asr.Clips(df, processor, 8)
    collate = asr.collator(processor, processor.tokenizer.convert_tokens_to_ids("<|startoftranscript|>"))
    t0 = time.time()
    fresh = asr.Clips(df, processor, 8)  # its own cache: the on-the-fly run starts with nothing computed
    precomputed = [fresh[i] for i in range(len(fresh))]
    featurise_s = time.time() - t0
    times = {}
    for name, data in (("on_the_fly", clips), ("precomputed", precomputed)):
        result = asr_trainer(model_dir, data, collate, epochs, work / name).train()
        times[name] = round(result.metrics["train_runtime"], 2)
    ratio = times["on_the_fly"] / times["precomputed"]
    return {
        "job": "asr",
        "clips": len(df),
        "epochs": epochs,
        **{f"{k}_train_s": v for k, v in times.items()},
        "featurise_all_once_s": round(featurise_s, 2),
        "ratio": round(ratio, 3),
        "target": "<= 1.25",
        "ok": ratio <= 1.25,
    }


def bench_vlm(work: Path, epochs: int) -> dict:
    from tests.tiny import write_csv
    from tests.tiny_vlm import build_tiny_llava, shape_rows

    folder = work / "shapes"
    write_csv(folder / "metadata.csv", shape_rows(folder, 240))
    model = build_tiny_llava(work / "llava")
    config = (
        f"task: vlm\nname: bench-vlm\nparams:\n  base_model: {model}\n  data_path: {folder}\n  epochs: {epochs}\n"
        "  batch_size: 8\n  learning_rate: 0.003\n  max_length: 64\n  valid_fraction: 0.1\n  use_lora: true\n"
    )
    run = measured(trainpad_run(config, work, "vlm"))
    ok = run["peak_rss_worker_mb"] <= 1200 and run["first_step_s"] <= 8
    return {"job": "vlm", "examples": 240, **run, "target": "peak RSS <= 1200 MB, first step <= 8 s", "ok": ok}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", default="asr,vlm")
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    jobs = {"asr": bench_asr, "vlm": bench_vlm}
    for name in args.jobs.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(jobs[name](Path(tmp), args.epochs)), flush=True)


if __name__ == "__main__":
    main()
