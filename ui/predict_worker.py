"""A persistent prediction process for the playground: ``python -m ui.predict_worker RUN_DIR``.

It imports the heavy libraries once, then answers one JSON request per stdin line with one line
``@@trainpad {"output": ...} | {"error": ...}`` on stdout. The UI process never imports torch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from engine.errors import UserError
from engine.predict import _jsonable, predict_dir

MARK = "@@trainpad "


def answer(run_dir: Path, line: str) -> dict:
    try:
        return {"output": predict_dir(run_dir, json.loads(line))}
    except UserError as e:
        return {"error": str(e)}
    except Exception as e:  # any failure is reported to the UI as text
        return {"error": f"{type(e).__name__}: {e}"}


def main() -> int:
    run_dir = Path(sys.argv[1])
    print(MARK + json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip():
            print(MARK + json.dumps(answer(run_dir, line), default=_jsonable), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
