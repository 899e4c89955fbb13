"""A persistent prediction process for the playground: ``python -m ui.predict_worker RUN_DIR``.

It imports the heavy libraries once, then answers one JSON request per stdin line on stdout with lines
``@@trainpad {"partial": text}`` (zero or more, while a streamed reply grows) and then one final line
``@@trainpad {"output": ...} | {"error": ...}``. The UI process never imports torch.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

from engine.errors import UserError
from engine.run.predict import _jsonable, predict_dir

MARK = "@@trainpad "


def answers(run_dir: Path, line: str) -> Iterator[dict]:
    """The replies to one request: a task's ``predict`` that returns an iterator (a streamed reply) gives one
    ``partial`` per item, and its last item is the ``output``."""
    try:
        out = predict_dir(run_dir, json.loads(line))
        if not isinstance(out, Iterator):
            yield {"output": out}
            return
        last = ""
        for last in out:
            yield {"partial": last}
        yield {"output": last}
    except UserError as e:
        yield {"error": str(e)}
    except Exception as e:  # any failure is reported to the UI as text
        yield {"error": f"{type(e).__name__}: {e}"}


def answer(run_dir: Path, line: str) -> dict:
    """The final reply to one request."""
    return list(answers(run_dir, line))[-1]


def main() -> int:
    run_dir = Path(sys.argv[1])
    print(MARK + json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip():
            for reply in answers(run_dir, line):
                print(MARK + json.dumps(reply, default=_jsonable), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
