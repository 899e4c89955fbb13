"""Showing a page or task tab from an event's answer, done in the browser.

An event that sets a ``gr.Tabs``'s ``selected`` makes Gradio 6.31's page walk every component inside those tabs
(twice, one awaited step per component): ~0.2 s per level for the whole studio, on every Start and Duplicate.
Instead the event writes the tabs to show into one hidden box, and a browser-only listener on that box clicks
their buttons (``<elem_id>-button``; every ``gr.Tabs`` of the studio wraps rather than folding tabs into a
"More tabs" menu, so each button exists), outer tab first.
"""

from __future__ import annotations

import time
from typing import Any

import gradio as gr

# waits (≤ 2 s) for each button: an inner tab's buttons appear once its outer tab is shown
SHOW_TABS = """async (value) => {
  const ids = (value || "").split("|")[0].split(",").filter(Boolean);
  for (const id of ids) {
    let button = document.getElementById(id + "-button");
    for (let i = 0; i < 100 && !button; i++) {
      await new Promise((r) => setTimeout(r, 20));
      button = document.getElementById(id + "-button");
    }
    if (button && button.getAttribute("aria-selected") !== "true") button.click();
    await new Promise((r) => requestAnimationFrame(() => r()));
  }
  if (ids.length) window.scrollTo({ top: 0 });  // the page shown from its top, not at the last page's offset
}"""


def build() -> Any:
    """The hidden box (call inside the Blocks) with its browser-only listener."""
    box = gr.Textbox(visible=False, elem_id="tp-nav")
    box.change(None, box, None, js=SHOW_TABS)
    return box


def show(*tab_elem_ids: str) -> str:
    """The box's value that shows these tabs (outer first, by their ``elem_id``); unique per call, so showing the
    same tabs twice still fires the listener."""
    return ",".join(tab_elem_ids) + f"|{time.time_ns()}"
