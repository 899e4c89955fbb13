"""A validation file is uploaded beside the validation path field: kept in the user's uploads, its path filled in."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from engine.task import get_task
from ui import task_tab
from ui.context import Context


def test_an_uploaded_validation_file_becomes_the_validation_path(supervisor, tmp_path):
    ctx = Context(supervisor)
    with gr.Blocks():
        tab = task_tab.build(get_task("text_classification"), ctx)
    assert tab.valid_upload is not None, "the validation upload sits beside the validation path"
    valid = tmp_path / "held out.csv"
    pd.DataFrame({"text": ["good", "bad"], "target": ["pos", "neg"]}).to_csv(valid, index=False)

    out = task_tab.valid_upload_updates(ctx, tab, str(valid))
    kept = out[tab.data_fields["valid_path"]]
    assert kept.startswith(str(ctx.uploads_dir)) and kept.endswith("held_out.csv")
    assert pd.read_csv(kept)["text"].tolist() == ["good", "bad"]

    broken = tmp_path / "folder.zip"
    broken.write_bytes(b"not a zip")
    out = task_tab.valid_upload_updates(ctx, tab, str(broken))
    assert tab.data_fields["valid_path"] not in out
    assert "folder.zip" in out[tab.data_msg]
