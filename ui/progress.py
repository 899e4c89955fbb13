"""Where events show their progress (``show_progress_on``): on one small component, or nowhere.

Gradio 6.31's page keeps a loading status for every progress target of every event run so far (by default, all
of an event's outputs) and re-sets all of them on each status message of any event; each re-set finds the
component by a walk of the whole layout (~1,700 components when every task form was built up front; ~400 now, and it grows with each run shown) and copies its state, and on a container (a Row,
the pages' Tabs) the state of everything inside it. One target on the pages' Tabs made every later click ~0.3 s
slower. So: an event that shows a spinner names where its answer appears (a message, a button); an event that
shows none (``NO_PROGRESS``) has no target at all (an empty list; its errors still pop up as toasts).
"""

from __future__ import annotations

from typing import Any

NO_PROGRESS: dict[str, Any] = {"show_progress": "hidden", "show_progress_on": []}
