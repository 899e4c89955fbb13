"""Where events show their progress (``show_progress_on``): on one small component, or nowhere.

Gradio 6.31's page keeps a loading status for every progress target of every event run so far (by default, all
of an event's outputs) and for every *input* of every server event that completed (its "complete" message marks
them as inputs of a closed stream), and re-sets all of them on each status message of any event; each re-set finds
the component by a walk of the whole layout and copies its state, and on a container (a Row, the pages' Tabs) the
state of everything inside it. A component that a later render replaced is never found: the walk covers the whole
page, on every event, for the rest of the session. So:

- an event that shows a spinner names where its answer appears (a message, a button); an event that shows none
  (``NO_PROGRESS``) has no target at all (an empty list; its errors still pop up as toasts);
- an event that reads a whole task form gathers its values in the browser first (``ui.task_tab.on_form``; leaving
  a form: ``ui.task_picker.leave_js``; show/hide: ``ui.forms.toggle_js``): a browser-only event leaves no status.
  With the form's ~60 widgets as server inputs, one round of the task tabs left ~300 stale statuses, and a task
  switch took 0.7-1.9 s instead of 0.2-0.4 s.
"""

from __future__ import annotations

from typing import Any

NO_PROGRESS: dict[str, Any] = {"show_progress": "hidden", "show_progress_on": []}
