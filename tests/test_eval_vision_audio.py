"""Evaluation of the image, detection, speech and VLM tasks on tiny models built in-process: the eval job's code run
in this process (submit's resolve, then the job), test files as tables with relative paths, folders and ZIPs; a
perfect score where the gold answers are the model's own predictions; worst rows first; plain errors for bad test
data. Plus object detection's input size taken from the model's image processor when unset (#24 item 5)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine import runfiles as rf
from engine.errors import UserError
from engine.eval.job import read_rows, run_eval
from engine.eval.submit import EvalRequest, resolve
from engine.task import all_tasks, get_task
from tests.tiny import write_csv
from tests.tiny_vision import SHAPES, build_tiny_detector, build_tiny_vit, class_folders, detection_rows

NO_RUNS = SimpleNamespace(store=SimpleNamespace(get_run=lambda _: None))  # every model here is a base model folder


def evaluate(tmp_path: Path, task: str, model_dir: Path, data: Path, **request) -> dict:
    """Queue-time checks (``submit.resolve``) then the eval job's work, in this process; its result."""
    _, _, args = resolve(NO_RUNS, EvalRequest(model=str(model_dir), task=task, data=str(data), batch_size=4, **request))
    job_dir = tmp_path / "job"
    job_dir.mkdir(exist_ok=True)
    rf.write_json(job_dir / "job.json", args)
    return run_eval(job_dir)


def problems(err: pytest.ExceptionInfo) -> str:
    return " ".join(map(str, err.value.problems))


def zip_folder(folder: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w") as zf:
        for f in sorted(folder.rglob("*")):
            zf.write(f, Path(folder.name) / f.relative_to(folder))
    return out


def test_the_image_speech_and_vlm_tasks_offer_evaluation():
    """The Evaluate page's task list and `trainpad eval` take the tasks whose Task.evaluate is set."""
    evaluable = {t.name for t in all_tasks() if t.evaluate is not None}
    assert {"image_classification", "image_regression", "object_detection", "asr", "vlm"} <= evaluable


def test_a_shared_instance_visitor_names_only_files_uploaded_with_the_test_data(tmp_path):
    """Paths inside a visitor's test table stay in its folder, and a folder is refused (a ZIP upload instead), before
    anything is queued; locally (no user) the same data is accepted."""
    from engine.eval.submit import submit_eval

    model = tmp_path / "model"
    model.mkdir()
    sneaky = write_csv(
        tmp_path / "t.csv", [{"image": "ok.png", "label": "a"}, {"image": "/etc/secret.png", "label": "b"}]
    )
    request = EvalRequest(model=str(model), task="image_classification", data=str(sneaky))
    with pytest.raises(UserError) as err:
        submit_eval(NO_RUNS, request, user="ann")
    assert "row 2: `secret.png` is not a file uploaded with the test file" in problems(err)
    assert resolve(NO_RUNS, request)[2]["data"] == str(sneaky)  # locally: fine
    vlm = write_csv(tmp_path / "v.csv", [{"image": '["a.png", "../../b.png"]', "answer": "x"}])
    with pytest.raises(UserError, match="b.png"):
        submit_eval(NO_RUNS, EvalRequest(model=str(model), task="vlm", data=str(vlm)), user="ann")
    folder = class_folders(tmp_path / "shapes", n=1)
    with pytest.raises(UserError, match="is a folder"):
        submit_eval(NO_RUNS, EvalRequest(model=str(model), task="image_classification", data=str(folder)), user="ann")


# ---- image classification and regression ----------------------------------------------------


@pytest.fixture(scope="module")
def tiny_vit_classifier(tmp_path_factory) -> Path:
    from transformers import ViTForImageClassification

    out = build_tiny_vit(tmp_path_factory.mktemp("models") / "vit")
    labels = dict(enumerate(SHAPES))
    model = ViTForImageClassification.from_pretrained(
        str(out),
        num_labels=3,
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
        ignore_mismatched_sizes=True,
    )
    model.save_pretrained(str(out))
    return out


@pytest.fixture(scope="module")
def shapes_folder(tmp_path_factory) -> Path:
    return class_folders(tmp_path_factory.mktemp("data") / "shapes", n=3)


def shape_table(folder: Path, out: Path, labels: list[str] | None = None) -> Path:
    """A CSV beside ``folder`` naming its images by relative path, with their labels (or ``labels``)."""
    files = sorted(folder.rglob("*.png"))
    rows = [{"path": str(f.relative_to(out.parent)), "label": f.parent.name} for f in files]
    for row, label in zip(rows, labels or [], strict=False):
        row["label"] = label
    return write_csv(out, rows)


@pytest.mark.slow
def test_image_classification_on_a_class_folder_zip_and_a_table_of_relative_paths(
    tiny_vit_classifier, shapes_folder, tmp_path
):
    from engine.tasks.image_classification import predict

    result = evaluate(
        tmp_path, "image_classification", tiny_vit_classifier, zip_folder(shapes_folder, tmp_path / "s.zip")
    )
    m = result["metrics"]
    assert result["n_examples"] == 9 and result["key_metric"] == "f1_macro"
    assert 0 <= m["accuracy"] <= 1 and 0 <= m["f1_macro"] <= 1
    assert sum(map(sum, m["confusion_matrix"]["matrix"])) == 9
    rows = read_rows(result["predictions_path"])
    assert [r["correct"] for r in rows] == sorted(r["correct"] for r in rows), "wrong predictions first"
    assert m["accuracy"] == pytest.approx(sum(r["correct"] for r in rows) / 9)
    assert {r["input"] for r in rows} == {f"{s}/{i}.png" for s in SHAPES for i in range(3)}, "named inside the ZIP"

    # gold = the model's own predictions: a perfect score, read from a table of paths relative to it
    files = sorted(shapes_folder.rglob("*.png"))
    own = [p["label"] for p in predict(tiny_vit_classifier, [str(f) for f in files])]
    table = shape_table(shapes_folder, shapes_folder.parent / "own.csv", own)
    perfect = evaluate(tmp_path, "image_classification", tiny_vit_classifier, table)["metrics"]
    assert perfect["accuracy"] == 1.0 and perfect["f1_macro"] == 1.0


def test_image_classification_on_a_runs_validation_split(tiny_vit_classifier, shapes_folder, tmp_path):
    """``--data valid``: the run's own data split again (class folders: absolute paths), shown relative to it."""
    params = {"base_model": str(tiny_vit_classifier), "data_path": str(shapes_folder), "valid_fraction": 0.34}
    spec = {"task": "image_classification", "model": "run-1", "model_dir": str(tiny_vit_classifier), "data": "valid"}
    rf.write_json(tmp_path / "job.json", spec | {"data_hash": "", "params": params, "batch_size": 4})
    result = run_eval(tmp_path)
    rows = read_rows(result["predictions_path"])
    assert result["n_examples"] == 3 and len(rows) == 3 and result["evaluation"]["data_hash"]
    assert all(not r["input"].startswith("/") and r["input"].endswith(".png") for r in rows)


def test_image_test_data_problems_are_named(tiny_vit_classifier, shapes_folder, tmp_path):
    table = shape_table(shapes_folder, shapes_folder.parent / "t.csv")
    rows = (shapes_folder.parent / "t.csv").read_text().splitlines()
    missing = shapes_folder.parent / "missing.csv"
    missing.write_text("\n".join([*rows[:3], "shapes/circle/nope.png,circle"]) + "\n")
    with pytest.raises(UserError) as err:
        evaluate(tmp_path, "image_classification", tiny_vit_classifier, missing)
    assert "row 3: Image `shapes/circle/nope.png` does not exist" in problems(err)

    no_label = write_csv(tmp_path / "no_label.csv", [{"path": "x.png"}])
    with pytest.raises(UserError) as err:
        evaluate(tmp_path, "image_classification", tiny_vit_classifier, no_label)
    assert "No column for `target`" in problems(err)

    unseen = shape_table(shapes_folder, shapes_folder.parent / "u.csv", ["hexagon"])
    with pytest.raises(UserError) as err:
        evaluate(tmp_path, "image_classification", tiny_vit_classifier, unseen)
    assert "'hexagon'" in problems(err) and "never saw" in problems(err)
    assert table.exists()


def test_image_regression_scores_and_largest_errors_first(tmp_path_factory, shapes_folder, tmp_path):
    from transformers import ViTForImageClassification

    from engine.tasks.image_regression import predict

    model_dir = build_tiny_vit(tmp_path_factory.mktemp("models") / "vit-reg")
    ViTForImageClassification.from_pretrained(
        str(model_dir), num_labels=1, problem_type="regression", ignore_mismatched_sizes=True
    ).save_pretrained(str(model_dir))
    files = sorted(shapes_folder.rglob("*.png"))
    own = [p["score"] for p in predict(model_dir, [str(f) for f in files])]
    rows = [{"image": str(f.relative_to(shapes_folder)), "score": s} for f, s in zip(files, own, strict=True)]
    perfect = evaluate(tmp_path, "image_regression", model_dir, write_csv(shapes_folder / "own.csv", rows))
    assert perfect["key_metric"] == "r2" and perfect["metrics"]["r2"] == pytest.approx(1.0)
    assert perfect["metrics"]["rmse"] == pytest.approx(0.0, abs=1e-5)

    shifted = [r | {"score": r["score"] + i} for i, r in enumerate(rows)]
    result = evaluate(tmp_path, "image_regression", model_dir, write_csv(shapes_folder / "shifted.csv", shifted))
    m, table = result["metrics"], read_rows(result["predictions_path"])
    assert m["mae"] == pytest.approx(sum(range(9)) / 9, abs=1e-4) and m["r2"] < 1
    assert [r["abs_error"] for r in table] == sorted((r["abs_error"] for r in table), reverse=True)
    assert table[0]["input"] == rows[-1]["image"], "the largest error first, named as the test file names it"


# ---- object detection ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_detr(tmp_path_factory) -> Path:
    """A tiny RT-DETR whose processor says 64x64 (an untrained DETR puts every query on one box; RT-DETR's
    anchors spread them, so the "own boxes" test has boxes of several sizes and places)."""
    return build_tiny_detector(tmp_path_factory.mktemp("models") / "rtdetr", "rtdetr", size=64)


@pytest.fixture(scope="module")
def boxes_folder(tmp_path_factory) -> Path:
    from tests.tiny_vision import write_detection

    return write_detection(tmp_path_factory.mktemp("data") / "boxes", detection_rows(4, seed=3), "coco")


@pytest.mark.slow
def test_detection_map_per_class_ap_and_images_with_most_errors_first(tiny_detr, boxes_folder, tmp_path):
    result = evaluate(tmp_path, "object_detection", tiny_detr, boxes_folder)
    m = result["metrics"]
    assert result["n_examples"] == 4 and result["key_metric"] == "map"
    assert 0 <= m["map"] <= m["map_50"] <= 1 and 0 <= m["precision"] <= 1 and 0 <= m["recall"] <= 1
    assert set(m["per_class_ap"]) <= set(SHAPES) and m["per_class_ap"]
    rows = read_rows(result["predictions_path"])
    assert [r["errors"] for r in rows] == sorted((r["errors"] for r in rows), reverse=True)
    assert all(r["missed"] + r["matched"] == r["reference"].count("[") for r in rows)


@pytest.mark.slow
def test_detection_scores_one_when_the_gold_boxes_are_its_own(tiny_detr, boxes_folder, tmp_path):
    """Gold = every box the model finds above a score: those are its best-ranked detections, all exact: mAP 1."""
    from engine.tasks.object_detection import predict

    files = sorted((boxes_folder / "images").glob("*.png"))
    found = predict(tiny_detr, {"image": [str(f) for f in files], "threshold": 0.0})
    scores = sorted((o["score"] for f in found for o in f["objects"]), reverse=True)
    cut = scores[len(files) * 2]  # about two boxes per image
    rows = []
    for f, out in zip(files, found, strict=True):
        kept = [
            o for o in out["objects"] if o["score"] > cut and o["box"][2] - o["box"][0] > 1 < o["box"][3] - o["box"][1]
        ]
        boxes = [[x0, y0, x1 - x0, y1 - y0] for x0, y0, x1, y1 in (o["box"] for o in kept)]
        rows.append(
            {"file_name": f"boxes/images/{f.name}", "objects": {"bbox": boxes, "category": [o["label"] for o in kept]}}
        )
    data = boxes_folder.parent / "own.jsonl"  # image paths relative to the test file
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    m = evaluate(tmp_path, "object_detection", tiny_detr, data)["metrics"]
    assert m["map"] == pytest.approx(1.0) and m["map_50"] == pytest.approx(1.0)
    assert all(ap["AP"] == pytest.approx(1.0) for ap in m["per_class_ap"].values())


def test_detection_test_data_problems_are_named(tiny_detr, boxes_folder, tmp_path):
    bad = boxes_folder.parent / "bad.jsonl"
    bad.write_text(
        json.dumps({"file_name": "boxes/images/gone.png", "objects": {"bbox": [[1, 1, 5, 5]], "category": ["circle"]}})
        + "\n"
    )
    with pytest.raises(UserError) as err:
        evaluate(tmp_path, "object_detection", tiny_detr, bad)
    assert "gone.png" in problems(err) and "row 1" in problems(err)
    bad.write_text(
        json.dumps({"file_name": "boxes/images/0.png", "objects": {"bbox": [[1, 1, 5, 5]], "category": ["star"]}})
        + "\n"
    )
    with pytest.raises(UserError) as err:
        evaluate(tmp_path, "object_detection", tiny_detr, bad)
    assert "'star'" in problems(err)


@pytest.mark.slow
def test_detection_image_size_comes_from_the_model_processor_when_unset(tiny_detr, boxes_folder, tmp_path, capsys):
    """#24 item 5: the tiny DETR's processor says 64, so an unset image_square_size trains at 64 (not 600)."""
    from engine.data.splits import load_splits
    from engine.params import validate_params
    from engine.task import Job
    from engine.vision import detection as vdet
    from engine.vision.encoders import load_processor

    task = get_task("object_detection")
    assert task.params().image_square_size == 0
    with pytest.raises(Exception, match="image_square_size"):
        validate_params(task.params, {"image_square_size": 16})
    assert vdet.square_size(load_processor(tiny_detr)) == 64 and vdet.square_size(load_processor(tiny_detr), 320) == 320

    params = validate_params(
        task.params,
        {"base_model": str(tiny_detr), "data_path": str(boxes_folder), "max_steps": 1, "batch_size": 2},
    )
    params = params.model_copy(update={"valid_fraction": 0.0, "eval_strategy": "no", "augmentation": "none"})
    train, _ = load_splits(task, params)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    task.train(Job(task, params, run_dir, train, None))
    assert "size=64x64 (the model's image processor)" in capsys.readouterr().out
    assert json.loads((run_dir / "model" / "trainpad.json").read_text())["image_square_size"] == 64


# ---- speech recognition -------------------------------------------------------------------------


def speaks_ascii(model, tok) -> None:
    """An untrained model's output logits zeroed for every token that decodes to nothing readable (specials,
    whitespace, partial UTF-8 bytes, control characters), so its greedy output is visible text: the "own
    predictions" tests need transcripts and answers that are not empty."""
    import torch

    def readable(i: int) -> bool:
        text = tok.decode([i], skip_special_tokens=True)
        return bool(text.strip()) and text.isprintable() and text.isascii()

    mute = [i for i in range(len(tok)) if i != tok.eos_token_id and not readable(i)]
    with torch.no_grad():
        model.get_output_embeddings().weight[mute] = 0


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory) -> Path:
    from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor

    from tests.tiny_audio import WORDS, build_tiny_whisper

    out = build_tiny_whisper(tmp_path_factory.mktemp("models") / "whisper", WORDS, seconds=1)
    model = AutoModelForSpeechSeq2Seq.from_pretrained(str(out))
    speaks_ascii(model, AutoProcessor.from_pretrained(str(out)).tokenizer)
    model.save_pretrained(str(out))
    rf.write_side_file(out, {"task": "asr", "kind": "seq2seq", "max_label_length": 8})  # as a run saves it
    return out


@pytest.fixture(scope="module")
def tones(tmp_path_factory) -> Path:
    """A folder of four half-second tones with a metadata.csv naming them (a clip folder, as training data is)."""
    import numpy as np
    import soundfile as sf

    folder = tmp_path_factory.mktemp("data") / "tones"
    folder.mkdir()
    t = np.arange(8000) / 16000
    for i in range(4):
        sf.write(folder / f"{i}.wav", 0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t), 16000)
    write_csv(folder / "metadata.csv", [{"file_name": f"{i}.wav", "transcription": w} for i, w in enumerate(WORDS4)])
    return folder


WORDS4 = ["red", "green blue", "one two three", "yes"]


@pytest.mark.slow
def test_asr_wer_cer_worst_first_and_a_perfect_score_on_its_own_transcripts(tiny_whisper, tones, tmp_path):
    from engine.tasks.asr import predict

    result = evaluate(tmp_path, "asr", tiny_whisper, tones)  # the clip folder itself
    m = result["metrics"]
    assert result["key_metric"] == "wer" and result["n_examples"] == 4
    assert m["wer"] >= 0 and m["cer"] >= 0 and 0 <= m["exact_match"] <= 1
    rows = read_rows(result["predictions_path"])
    assert {"input", "reference", "prediction", "wer", "cer"} <= set(rows[0]) and len(rows) == 4
    assert [r["wer"] for r in rows] == sorted((r["wer"] for r in rows), reverse=True), "worst WER first"

    own = predict(tiny_whisper, [str(tones / f"{i}.wav") for i in range(4)])
    table = write_csv(tones.parent / "own.csv", [{"audio": f"tones/{i}.wav", "text": t} for i, t in enumerate(own)])
    perfect = evaluate(tmp_path, "asr", tiny_whisper, table)["metrics"]  # paths relative to the test file
    assert perfect["wer"] == 0.0 and perfect["cer"] == 0.0 and perfect["exact_match"] == 1.0


def test_asr_test_data_problems_are_named(tiny_whisper, tones, tmp_path):
    missing = write_csv(
        tones.parent / "missing.csv", [{"audio": "tones/0.wav", "text": "a"}, {"audio": "tones/9.wav", "text": "b"}]
    )
    with pytest.raises(UserError) as err:
        evaluate(tmp_path, "asr", tiny_whisper, missing)
    assert "row 2" in problems(err) and "9.wav" in problems(err)
    no_text = write_csv(tones.parent / "no_text.csv", [{"audio": "tones/0.wav"}])
    with pytest.raises(UserError) as err:
        evaluate(tmp_path, "asr", tiny_whisper, no_text)
    assert "No column for `transcription`" in problems(err)


# ---- vision-language ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory) -> Path:
    """A tiny LLaVA that answers with visible text (see :func:`speaks_ascii`)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from tests.tiny_vlm import build_tiny_llava

    out = build_tiny_llava(tmp_path_factory.mktemp("models") / "llava")
    model = AutoModelForImageTextToText.from_pretrained(str(out))
    speaks_ascii(model, AutoProcessor.from_pretrained(str(out)).tokenizer)
    model.save_pretrained(str(out))
    rf.write_side_file(out, {"task": "vlm", "caption_prompt": "Describe the image.", "max_new_tokens": 6})
    return out


@pytest.mark.slow
def test_vlm_generation_metrics_worst_first_and_exact_on_its_own_answers(tiny_llava, tmp_path):
    from engine.tasks.vlm import predict
    from tests.tiny_vlm import shape_rows

    rows = [r | {"file_name": f"imgs/{r['file_name']}"} for r in shape_rows(tmp_path / "imgs", 3)]
    result = evaluate(tmp_path, "vlm", tiny_llava, write_csv(tmp_path / "test.csv", rows), max_new_tokens=4)
    m = result["metrics"]
    assert result["key_metric"] == "rougeL" and result["n_examples"] == 3
    assert 0 <= m["exact_match"] <= 1 and 0 <= m["rougeL"] <= 100 and 0 <= m["chrf"] <= 100
    table = read_rows(result["predictions_path"])
    assert [r["chrf"] for r in table] == sorted(r["chrf"] for r in table), "lowest chrF first"
    assert "what colour is the" in table[0]["input"] and table[0]["input"].startswith("imgs/")

    own = [predict(tiny_llava, {"image": str(tmp_path / r["file_name"]), "question": r["question"]}) for r in rows]
    assert all(own), "the fixture's model answers something"
    perfect = [r | {"answer": a} for r, a in zip(rows, own, strict=True)]
    m = evaluate(tmp_path, "vlm", tiny_llava, write_csv(tmp_path / "own.csv", perfect))["metrics"]
    assert m["exact_match"] == 1.0 and m["chrf"] == pytest.approx(100.0)


def test_vlm_test_data_problems_are_named(tiny_llava, tmp_path):
    from tests.tiny_vlm import shape_rows

    rows = [r | {"file_name": f"imgs/{r['file_name']}"} for r in shape_rows(tmp_path / "imgs", 2)]
    no_answer = write_csv(tmp_path / "no_answer.csv", [{k: r[k] for k in ("file_name", "question")} for r in rows])
    with pytest.raises(UserError) as err:
        evaluate(tmp_path, "vlm", tiny_llava, no_answer)
    assert "needs an `answer`" in problems(err)
    gone = write_csv(tmp_path / "gone.csv", [*rows, {**rows[0], "file_name": "imgs/gone.png"}])
    with pytest.raises(UserError) as err:
        evaluate(tmp_path, "vlm", tiny_llava, gone)
    assert "row 3: Image `imgs/gone.png` does not exist" in problems(err)
