"""What every UI handler needs: the supervisor (and its run store) and the data folder's sub-folders."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from engine.store import Store
from engine.supervisor import Supervisor


@dataclass
class Context:
    supervisor: Supervisor
    concurrency: int = 1

    @property
    def store(self) -> Store:
        return self.supervisor.store

    @property
    def data_dir(self) -> Path:
        return self.supervisor.data_dir

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def exports_dir(self) -> Path:
        """Files offered for download (configs, model zips): the only data folder Gradio may serve."""
        path = self.data_dir / "exports"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    def browser_secret(self) -> str:
        """A secret kept in the data folder, so a restarted app still reads what browsers remember."""
        path = self.data_dir / ".ui_secret"
        if not path.exists():
            path.write_text(secrets.token_hex(16), encoding="utf-8")
            path.chmod(0o600)
        return path.read_text(encoding="utf-8").strip()

    def local_models(self) -> list[str]:
        """Model folders under ``<data_dir>/models`` (any folder holding a config.json), newest first."""
        if not self.models_dir.is_dir():
            return []
        found = [p.parent for p in self.models_dir.glob("*/config.json")] + [
            p.parent for p in self.models_dir.glob("*/*/config.json")
        ]
        return [str(p) for p in sorted(set(found), key=lambda p: p.stat().st_mtime, reverse=True)]
