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
    assert "/start" in {d.api_name and f"/{d.api_name}" for d in launched["demo"].fns.values()}


def test_the_readme_opens_the_notebook_without_an_invented_owner(tmp_path):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "](spaces/trainpad_colab.ipynb)" in readme and "Upload notebook" in readme
    assert "OWNER" not in readme and "OWNER" not in NOTEBOOK.read_text(encoding="utf-8")
    for command in ("bash scripts/start.sh", "bash scripts/test.sh"):  # the two fresh-machine commands
        assert command in readme and (ROOT / command.split()[1]).is_file()
    install = nbformat.read(NOTEBOOK, as_version=4).cells[1].source
    absent = str(tmp_path / "trainpad")  # no code yet and no REPO_URL: the cell says what to do
    code = "\n".join(ln for ln in install.splitlines() if not ln.startswith(("!", "%")))
    try:
        exec(code.replace("/content/trainpad", absent), {})
    except SystemExit as e:
        assert "set REPO_URL above to the Git URL of your copy, or upload the repository as trainpad.zip" in str(e)
    else:
        raise AssertionError("the install cell ran without any code to install")
    import zipfile

    with zipfile.ZipFile(absent + ".zip", "w") as zf:  # GitHub's Code → Download ZIP: one top folder
        zf.writestr("trainpad-main/app.py", "# the studio\n")
    exec(code.replace("/content/trainpad", absent), {})
    assert (tmp_path / "trainpad" / "app.py").read_text() == "# the studio\n"
