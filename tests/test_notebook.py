"""The Colab notebook's code path, run headless: its Python cells build the studio and launch it with a public
link and a login (the launch itself is recorded, not served)."""

from __future__ import annotations

from pathlib import Path

import nbformat

import app

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "spaces" / "trainpad_colab.ipynb"


def python_of(cell_source: str) -> str:
    """A cell's Python lines (shell `!` and magic `%` lines are Colab's), pointed at this checkout."""
    lines = [ln for ln in cell_source.splitlines() if not ln.lstrip().startswith(("!", "%"))]
    return "\n".join(lines).replace("/content/trainpad", str(ROOT))


def test_the_colab_notebook_launches_a_shared_studio_with_a_login(monkeypatch, data_dir, capsys):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    launched = {}

    def record(ctx, demo, **kw):
        launched.update(ctx=ctx, demo=demo, **kw)
        ctx.engine.shutdown()

    monkeypatch.setattr(app, "launch", record)
    code = [c.source for c in nb.cells if c.cell_type == "code" and "google.colab" not in c.source]
    for source in code:
        exec(compile(python_of(source), str(NOTEBOOK), "exec"), {"__name__": "__notebook__"})
    assert launched["share"] is True and launched["ctx"].engine.policy.shared
    ((user, password),) = launched["auth"]
    assert user == "trainpad" and len(password) >= 10 and password in capsys.readouterr().out
    assert "/start_llm_sft" in {d.api_name and f"/{d.api_name}" for d in launched["demo"].fns.values()}
