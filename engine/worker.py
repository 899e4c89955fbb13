"""Kept for one release so that runs queued (or submitted to a remote backend) by an older Trainpad, whose command
is ``python -m engine.worker RUN_DIR``, still start. The worker lives in :mod:`engine.run.worker`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("engine.run.worker", run_name="__main__", alter_sys=True)
