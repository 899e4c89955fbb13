"""The engine's layers, read from its own imports (module level and inside functions): no cycle anywhere, and
each layer imports only the layers below it. Plus the rules that keep the layout honest: settings read in one
place, the per-user wrappers deny by default, every task states its model kind."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "engine"

# Top to bottom: a module may import modules of its own layer (without a cycle) and of the layers below it.
LAYERS = [
    ("entry", ["engine.cli", "engine.worker"]),
    ("run", ["engine.run", "engine.ship", "engine.eval"]),
    ("config", ["engine.config", "engine.compat"]),
    ("tasks", ["engine.tasks"]),
    ("families", ["engine.llm", "engine.text", "engine.vision", "engine.audio", "engine.tabular"]),
    ("train", ["engine.train"]),
    ("data/preflight", ["engine.data", "engine.preflight"]),
    ("core", ["engine.task", "engine.params", "engine.errors", "engine.settings", "engine.runfiles", "engine"]),
]
KEPT_FOR_PICKLES = {"engine.tabular_utils"}  # saved tabular models name it; it only re-exports engine.tabular


def _modules() -> dict[str, Path]:
    out = {}
    for path in ENGINE.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _owner(name: str) -> str:
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _imports(name: str, path: Path) -> set[str]:
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {_owner(a.name) for a in node.names if a.name.startswith("engine")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            if base.split(".")[0] != "engine":
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in MODULES else _owner(base))
    found.discard(name)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(name: str) -> int:
    best = None
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (rank, len(prefix))
    assert best is not None, f"{name} belongs to no layer: add it to LAYERS"
    return best[0]


def test_no_import_cycle_in_the_engine():
    seen: dict[str, int] = {}  # 1 = on the path, 2 = done
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        seen[node] = 1
        for nxt in sorted(GRAPH.get(node, ())):
            if seen.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in seen:
                visit(nxt, [*path, nxt])
        seen[node] = 2

    for name in sorted(GRAPH):
        if name not in seen:
            visit(name, [name])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_each_layer_imports_only_the_layers_below_it():
    wrong = [
        f"{name} ({LAYERS[_layer(name)][0]}) imports {dep} ({LAYERS[_layer(dep)][0]})"
        for name, deps in GRAPH.items()
        if name not in KEPT_FOR_PICKLES
        for dep in deps
        if _layer(dep) < _layer(name)
    ]
    assert not wrong, "\n".join(sorted(wrong))


def test_the_engine_keeps_at_most_ten_modules_at_its_top_level():
    top = sorted(p.name for p in ENGINE.glob("*.py"))
    assert len(top) <= 10, top


def test_the_engine_never_imports_the_app_or_the_ui():
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n == "app" or n.split(".")[0] == "ui" for n in names), f"{name} imports the app/UI"


def test_trainpad_settings_are_read_only_through_engine_settings():
    from engine import settings

    reader = re.compile(r"""(environ\.get|environ\[|getenv)\(?\s*["'](TRAINPAD_\w+)""")
    for path in [*ROOT.glob("engine/**/*.py"), *ROOT.glob("ui/*.py"), ROOT / "app.py"]:
        if path.name == "settings.py":
            continue
        hits = reader.findall(path.read_text())
        assert not hits, f"{path.relative_to(ROOT)} reads {hits} itself: use engine.settings"
    named = set(re.findall(r"TRAINPAD_[A-Z_]+", "".join(p.read_text() for p in ROOT.glob("engine/**/*.py"))))
    unknown = {n for n in named if n not in settings.SETTINGS and n != "TRAINPAD_"}
    assert not unknown, f"not in engine/settings.py: {unknown}"


def test_readme_lists_every_setting():
    from engine import settings

    readme = (ROOT / "README.md").read_text()
    assert settings.markdown_table() in readme, "README's table of settings differs: paste settings.markdown_table()"


def test_a_bad_setting_names_the_variable_and_the_value(monkeypatch):
    from engine import settings
    from engine.errors import UserError

    monkeypatch.setenv("TRAINPAD_CHECK_ROWS", "lots")
    with pytest.raises(UserError, match=r"TRAINPAD_CHECK_ROWS='lots' is not a whole number"):
        settings.integer("TRAINPAD_CHECK_ROWS")
    monkeypatch.setenv("TRAINPAD_CHECK_ROWS", "50")
    assert settings.integer("TRAINPAD_CHECK_ROWS") == 50
    with pytest.raises(KeyError, match="not a Trainpad setting"):
        settings.text("TRAINPAD_NO_SUCH_THING")


def test_the_per_user_wrappers_have_only_the_methods_the_ui_calls():
    """Deny by default: the UI's calls on ctx.store / ctx.supervisor are methods the wrappers define themselves."""
    from ui.context import LocalSupervisor, UserStore, UserSupervisor

    used: dict[str, set[str]] = {"store": set(), "supervisor": set()}
    for path in [*ROOT.glob("ui/*.py"), ROOT / "app.py"]:
        for kind, attr in re.findall(r"ctx\.(store|supervisor)\.(\w+)", path.read_text()):
            used[kind].add(attr)
    assert used["store"] and used["supervisor"]
    for cls in (UserSupervisor, LocalSupervisor):
        assert not hasattr(cls, "__getattr__"), cls
        missing = {m for m in used["supervisor"] if not hasattr(cls, m)}
        assert not missing, f"{cls.__name__} lacks {missing}: add each as an explicit method"
    assert not hasattr(UserStore, "__getattr__")
    missing = {m for m in used["store"] if not hasattr(UserStore, m)}
    assert not missing, f"UserStore lacks {missing}"


def test_every_task_states_the_model_kind_it_accepts():
    from engine.preflight.models import FITS
    from engine.task import all_tasks

    for task in all_tasks():
        assert task.model_kind is None or task.model_kind in FITS, task.name
    kinds = {t.name: t.model_kind for t in all_tasks()}
    assert kinds["asr"] == "speech" and kinds["tabular"] is None and kinds["llm_sft"] == "causal"


def test_runs_queued_by_older_versions_still_start_through_the_old_worker_module():
    """Their command is ``python -m engine.worker RUN_DIR``: the shim runs engine.run.worker's main."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "engine.worker"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "usage: python -m engine.run.worker RUN_DIR" in out.stderr
