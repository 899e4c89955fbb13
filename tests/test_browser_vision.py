"""Image classification clicked through in a real browser (Playwright driving Debian's Chromium): a ZIP of class
sub-folders uploaded -> gallery preview with class counts -> a local tiny ViT picked -> Start -> the run succeeds ->
the Playground classifies an uploaded image (top-k labels with scores). Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

import random
import re
import zipfile
from pathlib import Path

import pytest

from tests.test_browser import CHROMIUM, page, pick, shot  # noqa: F401 (page: the browser fixture)
from tests.tiny_vision import SHAPES, build_tiny_vit, class_folders, shape_image

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Chromium (apt-get install -y chromium)"),
]

PER_CLASS = 20


def zip_of(folder: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w") as zf:
        for f in sorted(folder.rglob("*")):
            zf.write(f, Path(folder.name) / f.relative_to(folder))
    return out


@pytest.fixture
def vision_studio(data_dir, request):
    """The studio with a tiny ViT in its models folder (so the base model list offers it as a local folder)."""
    build_tiny_vit(data_dir / "models" / "tiny-vit")
    return request.getfixturevalue("studio")


def test_image_zip_gallery_start_succeeds_and_playground_classifies(vision_studio, page, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    url, ctx = vision_studio
    data = zip_of(class_folders(tmp_path / "shapes", PER_CLASS), tmp_path / "shapes.zip")
    pg = page
    pg.goto(url)
    pg.get_by_role("tab", name="Vision").click()
    pg.get_by_role("tab", name="Image classification").click()
    p = "#image_classification"

    pick(pg, "image_classification-base_model", "tiny-vit · local folder")
    pg.locator(f"{p}-upload input[type=file]").set_input_files(str(data))
    gallery = pg.locator(f"{p}-gallery")
    counts = ", ".join(f"{s} ({PER_CLASS})" for s in SHAPES)
    expect(gallery).to_contain_text(f"{3 * PER_CLASS} images (class sub-folders). Classes: {counts}.", timeout=60_000)
    expect(gallery.locator("img").first).to_be_visible()
    assert gallery.locator("img").count() >= 12, "one thumbnail per sampled image"
    captions = set(gallery.get_by_text(re.compile(f"^({'|'.join(SHAPES)})$")).all_inner_texts())
    assert captions == set(SHAPES), captions
    expect(pg.locator(f"{p}-map-image input")).to_have_value("image")
    expect(pg.locator(f"{p}-map-target input")).to_have_value("label")  # matched by its alias
    shot(pg, "vision-1-gallery")

    pg.locator(f"{p}-epochs input").fill("2")
    pg.locator(f"{p}-batch_size input").fill("4")
    pick(pg, "image_classification-augmentation", "none")  # the colour is the signal: learnt in 2 epochs
    pg.locator(f"{p}-learning_rate input").fill("0.003")
    pg.locator(f"{p}-run_name textarea, {p}-run_name input").first.fill("shapes in the browser")
    pg.locator(f"{p}-start").click()
    expect(pg.locator("#run-status")).to_have_text("succeeded", timeout=240_000)
    run_id = pg.locator("#run-id textarea, #run-id input").first.input_value()
    row = ctx.store.get_run(run_id)
    assert row["status"] == "succeeded" and row["task"] == "image_classification"
    assert row["params"]["base_model"].endswith("tiny-vit") and row["params"]["epochs"] == 2
    assert row["params"]["column_mapping"] == {"image": "image", "target": "label"}
    expect(pg.locator("#result-confusion")).to_be_visible()  # the run page's confusion matrix
    shot(pg, "vision-2-succeeded")

    img, _ = shape_image("triangle", rng=random.Random(5))
    img.save(tmp_path / "triangle.png")
    pg.get_by_role("tab", name="Playground").click()
    pick(pg, "play-run", f"shapes in the browser · image_classification · {run_id}")
    expect(pg.locator("#play-info")).to_contain_text("Image classification")
    pg.locator("#play-image input[type=file]").set_input_files(str(tmp_path / "triangle.png"))
    pg.locator("#play-predict").click()
    label = pg.locator("#play-label")
    expect(label).to_be_visible(timeout=120_000)
    for shape in SHAPES:  # top-k: every class of this 3-class model, each with its score
        expect(label).to_contain_text(shape)
    assert len(re.findall(r"\d+(\.\d+)?%", label.inner_text())) >= 3, label.inner_text()
    shot(pg, "vision-3-playground")
