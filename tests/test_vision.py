"""Image tasks end to end through the supervisor with tiny in-process models on synthetic images; image data in
every layout; bad images, boxes and ZIPs refused before queueing with the file named."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from engine import images as im
from engine.data import check_data
from engine.errors import UserError
from engine.params import validate_params
from engine.predict import predict_dir
from engine.task import get_task
from tests.tiny import metric_values, refused, write_csv
from tests.tiny_vision import build_tiny_vit, class_folders, shape_image

IC = get_task("image_classification")


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory) -> Path:
    return build_tiny_vit(tmp_path_factory.mktemp("models") / "tiny-vit")


def params(task, model: Path, data: Path, **kw):
    base = {"base_model": str(model), "data_path": str(data), "epochs": 6, "batch_size": 16, "learning_rate": 3e-3}
    return validate_params(task.params, {**base, **kw})


def zip_folder(folder: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w") as zf:
        for f in sorted(folder.rglob("*")):
            zf.write(f, Path(folder.name) / f.relative_to(folder))
    return out


# ---- image classification -----------------------------------------------------------------


def test_classification_from_a_zip_end_to_end(supervisor, tiny_vit, tmp_path):
    """ZIP of class sub-folders -> checks -> run -> accuracy far above chance (1/3) -> confusion matrix -> predict."""
    data = zip_folder(class_folders(tmp_path / "shapes", 80), tmp_path / "shapes.zip")
    p = params(IC, tiny_vit, data, valid_fraction=0.2)
    assert check_data(IC, p) == []
    assert "class sub-folders" in IC.data_summary(IC, p) and "circle (64)" in IC.data_summary(IC, p)
    run_id = supervisor.submit(IC, p)
    row = supervisor.wait(run_id, timeout=300)
    assert row["status"] == "succeeded", row["error"]

    acc = metric_values(supervisor.store, run_id, "eval_accuracy")
    assert len(acc) >= 3 and acc[-1] >= 0.9, acc
    run_dir = Path(row["run_dir"])
    cm = json.loads((run_dir / "confusion_matrix.json").read_text())
    assert cm["labels"] == ["circle", "square", "triangle"] and sum(map(sum, cm["matrix"])) == 48
    assert sum(cm["matrix"][i][i] for i in range(3)) >= 0.9 * 48
    config = json.loads((run_dir / "model" / "config.json").read_text())
    assert config["id2label"] == {"0": "circle", "1": "square", "2": "triangle"}
    assert (run_dir / "model" / "preprocessor_config.json").is_file()

    img, _ = shape_image("triangle", rng=__import__("random").Random(5))
    img.save(tmp_path / "t.png")
    out = predict_dir(run_dir, str(tmp_path / "t.png"))
    assert out["label"] == "triangle" and out["scores"]["triangle"] > 0.5, out
    many = predict_dir(run_dir, [str(tmp_path / "t.png"), str(tmp_path / "shapes" / "circle" / "0.png")])
    assert [o["label"] for o in many] == ["triangle", "circle"]


def test_classification_from_a_csv_of_image_paths_and_metadata(tiny_vit, tmp_path):
    """A CSV whose `path` column holds paths relative to it, and an imagefolder with metadata.csv, read the same."""
    class_folders(tmp_path / "imgs", 4)
    rows = [{"path": f"imgs/{s}/{i}.png", "class": s} for s in ("circle", "square") for i in range(4)]
    csv = write_csv(tmp_path / "train.csv", rows)
    p = params(IC, tiny_vit, csv, column_mapping={"image": "path", "target": "class"})
    assert check_data(IC, p) == []
    meta = tmp_path / "imgs"
    write_csv(meta / "metadata.csv", [{"file_name": r["path"][5:], "label": r["class"]} for r in rows])
    df = im.read_image_folder(meta)
    assert df.attrs["format"] == "images + metadata.csv" and len(df) == 8 and Path(df["image"][0]).is_file()


def test_bad_images_are_refused_before_queueing_naming_the_file(supervisor, tiny_vit, tmp_path):
    folder = class_folders(tmp_path / "shapes", 3)
    (folder / "circle" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    good = (folder / "square" / "0.png").read_bytes()
    (folder / "square" / "cut.png").write_bytes(good[: len(good) // 2])
    msg = refused(supervisor, IC, params(IC, tiny_vit, folder))
    assert "broken.png" in msg and "cut.png" in msg and "could not be decoded" in msg, msg

    write_csv(tmp_path / "train.csv", [{"image": "nowhere/1.png", "label": "a"}, {"image": "x.png", "label": "b"}])
    msg = refused(supervisor, IC, params(IC, tiny_vit, tmp_path / "train.csv"))
    assert "nowhere/1.png" in msg and "does not exist" in msg, msg

    meta = class_folders(tmp_path / "m", 2) / "circle"
    write_csv(meta / "metadata.csv", [{"file_name": "0.png", "label": "a"}, {"file_name": "gone.png", "label": "b"}])
    msg = refused(supervisor, IC, params(IC, tiny_vit, meta))
    assert "gone.png" in msg and "row 2" in msg, msg

    one = class_folders(tmp_path / "one", 2)
    for extra in ("square", "triangle"):
        __import__("shutil").rmtree(one / extra)
    assert "single class" in refused(supervisor, IC, params(IC, tiny_vit, one))


def test_image_modes_are_converted(tmp_path):
    """CMYK, RGBA (composited on white), palette, 16-bit grayscale and EXIF-rotated images all become RGB."""
    import numpy as np
    from PIL import Image

    rgba = Image.new("RGBA", (4, 2), (255, 0, 0, 0))
    assert im.open_image(rgba).getpixel((0, 0)) == (255, 255, 255), "transparent -> white, not black"
    assert im.open_image(Image.new("CMYK", (4, 2), (0, 255, 255, 0))).getpixel((0, 0)) == (255, 0, 0)
    deep = Image.fromarray(np.full((2, 4), 65535, dtype=np.uint16))
    assert im.open_image(deep).getpixel((0, 0)) == (255, 255, 255)
    assert im.open_image(Image.new("P", (4, 2))).mode == "RGB"
    rotated = Image.new("RGB", (4, 2))
    exif = rotated.getexif()
    exif[0x0112] = 6  # rotate 90 degrees when shown
    rotated.save(tmp_path / "r.jpg", exif=exif)
    assert im.open_image(str(tmp_path / "r.jpg")).size == (2, 4)
    assert im.open_image({"bytes": (tmp_path / "r.jpg").read_bytes(), "path": "r.jpg"}).size == (2, 4)
    with pytest.raises(UserError, match="nothing.png"):
        im.open_image(str(tmp_path / "nothing.png"))


# ---- image regression ---------------------------------------------------------------------


def test_regression_on_brightness_end_to_end(supervisor, tiny_vit, tmp_path):
    """images + metadata.jsonl -> R² well above 0.5 on a brightness target -> predict a score."""
    from tests.tiny_vision import brightness_folder

    IR = get_task("image_regression")
    data = brightness_folder(tmp_path / "bright", 300)
    p = params(IR, tiny_vit, data, valid_fraction=0.2)
    assert check_data(IR, p) == [] and "metadata.jsonl" in IR.data_summary(IR, p)
    run_id = supervisor.submit(IR, p)
    row = supervisor.wait(run_id, timeout=300)
    assert row["status"] == "succeeded", row["error"]
    metrics = json.loads((Path(row["run_dir"]) / "metrics.json").read_text())
    assert metrics["eval_r2"] > 0.6 and metrics["eval_rmse"] < 0.2, metrics
    meta = [json.loads(line) for line in (data / "metadata.jsonl").read_text().splitlines()]
    dark, bright = min(meta, key=lambda r: r["target"]), max(meta, key=lambda r: r["target"])
    scores = predict_dir(Path(row["run_dir"]), [str(data / dark["file_name"]), str(data / bright["file_name"])])
    assert scores[1]["score"] - scores[0]["score"] > 0.5, scores

    (data / "metadata.jsonl").write_text(json.dumps({"file_name": "0.png", "target": "bright"}) + "\n")
    problems = check_data(IR, params(IR, tiny_vit, data))
    assert any("must hold numbers" in p and "'bright'" in p for p in problems), problems
