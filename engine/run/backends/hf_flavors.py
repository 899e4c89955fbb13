"""Hugging Face Jobs hardware ("flavors"): the Hub's list with its prices, or a built-in list when the Hub cannot be
reached, and the memory check of a run against a flavor's GPUs ("will not fit on a10g-small (24 GB); fits on
a100-large").

:func:`fetch` asks ``GET /api/jobs/hardware`` (huggingface_hub's ``list_jobs_hardware`` format, with a short
timeout) and keeps the answer for a while; :func:`known` never touches the network (the last list fetched, else
:data:`BUILT_IN`). The built-in list comes from Hugging Face's pricing page: names and GPU memory, no prices (they
change; the Hub's list has them).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from engine.preflight import memory
from engine.preflight.system import Gpu

FETCH_TIMEOUT_S = 5.0
KEEP_S = 600.0  # a fetched list is reused this long; a failed fetch is retried after RETRY_S
RETRY_S = 60.0
# GPU memory per device by accelerator model (the Hub's `vram` is the flavor's total); others: vram / quantity
GPU_MEMORY_GB = {"T4": 16, "L4": 24, "L40S": 48, "A10G": 24, "A100": 80, "H100": 80, "H200": 141, "RTX PRO 6000": 96}


@dataclass(frozen=True)
class Flavor:
    name: str
    gpu: str = ""  # the accelerator's model; "" for a CPU flavor
    gpus: int = 0
    gpu_memory_gb: float = 0.0  # per GPU
    ram_gb: float = 0.0
    price_per_hour: float | None = None  # USD, when the Hub said

    def label(self) -> str:
        """``a10g-small · 1× A10G 24 GB · $1.00/h`` (no price when the Hub's list could not be fetched)."""
        what = f"{self.gpus}× {self.gpu} {self.gpu_memory_gb:g} GB" if self.gpus else f"CPU, {self.ram_gb:g} GB RAM"
        price = f" · ${self.price_per_hour:.2f}/h" if self.price_per_hour is not None else ""
        return f"{self.name} · {what}{price}"

    def memory_text(self) -> str:
        """``24 GB`` (one GPU), ``4× 24 GB``, or ``16 GB RAM``."""
        if not self.gpus:
            return f"{self.ram_gb:g} GB RAM"
        return f"{self.gpu_memory_gb:g} GB" if self.gpus == 1 else f"{self.gpus}× {self.gpu_memory_gb:g} GB"


def _gpu(name: str, model: str, count: int, ram: float) -> Flavor:
    return Flavor(name, model, count, GPU_MEMORY_GB[model], ram)


# Hugging Face's pricing page (huggingface.co/docs/hub/jobs-pricing), cheapest first.
BUILT_IN: list[Flavor] = [
    Flavor("cpu-basic", ram_gb=16),
    Flavor("cpu-upgrade", ram_gb=32),
    Flavor("cpu-xl", ram_gb=124),
    Flavor("cpu-performance", ram_gb=256),
    _gpu("t4-small", "T4", 1, 15),
    _gpu("t4-medium", "T4", 1, 30),
    _gpu("l4x1", "L4", 1, 30),
    _gpu("a10g-small", "A10G", 1, 15),
    _gpu("a10g-large", "A10G", 1, 46),
    _gpu("l40sx1", "L40S", 1, 62),
    _gpu("a100-large", "A100", 1, 142),
    _gpu("rtx-pro-6000", "RTX PRO 6000", 1, 256),
    _gpu("a10g-largex2", "A10G", 2, 92),
    _gpu("l4x4", "L4", 4, 186),
    _gpu("h200", "H200", 1, 256),
    _gpu("a10g-largex4", "A10G", 4, 184),
    _gpu("rtx-pro-6000x2", "RTX PRO 6000", 2, 512),
    _gpu("l40sx4", "L40S", 4, 382),
    _gpu("a100x4", "A100", 4, 568),
    _gpu("h200x2", "H200", 2, 512),
    _gpu("rtx-pro-6000x4", "RTX PRO 6000", 4, 1024),
    _gpu("a100x8", "A100", 8, 1136),
    _gpu("h200x4", "H200", 4, 1024),
    _gpu("rtx-pro-6000x8", "RTX PRO 6000", 8, 2048),
    _gpu("l40sx8", "L40S", 8, 1534),
    _gpu("h200x8", "H200", 8, 2048),
]
_LOCK = threading.Lock()
_LAST: dict[str, Any] = {}  # "at": when, "flavors": the Hub's list or None, "note": why it is not


def fetch(endpoint: str, token: str | None = None) -> tuple[list[Flavor], str]:
    """(flavors, note): the Hub's list with prices (note ""), or the built-in list and why (offline, refused…).
    Kept for KEEP_S seconds (a failure for RETRY_S); never raises."""
    from huggingface_hub import constants

    if constants.is_offline_mode():
        return BUILT_IN, "HF_HUB_OFFLINE is set, so this is Trainpad's built-in list of flavors (no prices)."
    with _LOCK:
        fresh = _LAST and time.time() - _LAST["at"] < (KEEP_S if _LAST["flavors"] else RETRY_S)
        if not (fresh and _LAST.get("endpoint") == endpoint):
            listed, why = _ask(endpoint, token)
            _LAST.update(at=time.time(), endpoint=endpoint, flavors=listed, note=why)
        if _LAST["flavors"]:
            return _LAST["flavors"], ""
        return BUILT_IN, f"Hugging Face's list of flavors could not be fetched ({_LAST['note']}): this is " + (
            "Trainpad's built-in list (no prices)."
        )


def known() -> list[Flavor]:
    """The last list fetched from the Hub, else the built-in one (no network)."""
    return _LAST.get("flavors") or BUILT_IN


def find(name: str, flavors: list[Flavor] | None = None) -> Flavor | None:
    return next((f for f in flavors or known() if f.name == name), None)


def _ask(endpoint: str, token: str | None) -> tuple[list[Flavor] | None, str]:
    from huggingface_hub import JobHardwareInfo
    from huggingface_hub.utils import build_hf_headers, get_session

    try:
        response = get_session().get(
            f"{endpoint}/api/jobs/hardware", headers=build_hf_headers(token=token), timeout=FETCH_TIMEOUT_S
        )
        if response.status_code != 200:
            return None, f"HTTP {response.status_code}"
        listed = [from_hub(JobHardwareInfo(**item)) for item in response.json()]
    except Exception as e:  # offline, a timeout, an answer in another shape: the built-in list will do
        return None, f"{type(e).__name__}: {e}"
    return (listed, "") if listed else (None, "the Hub listed none")


def from_hub(info: Any) -> Flavor:
    """A ``huggingface_hub.JobHardwareInfo`` as a Flavor (price per hour from its per-unit cost)."""
    per = {"second": 3600, "minute": 60, "hour": 1}.get(str(info.unit_label or "").lower())
    price = float(info.unit_cost_usd) * per if per and info.unit_cost_usd is not None else None
    ram = _gb(info.ram)
    accelerator = info.accelerator
    if accelerator is None or str(getattr(accelerator, "type", "gpu")).lower() != "gpu":
        return Flavor(info.name, ram_gb=ram, price_per_hour=price)
    count = max(1, int(_gb(accelerator.quantity) or 1))
    model = str(accelerator.model).replace("NVIDIA", "").strip()
    per_gpu = GPU_MEMORY_GB.get(model) or _gb(accelerator.vram) / count
    return Flavor(info.name, model, count, per_gpu, ram, price)


def _gb(text: Any) -> float:
    found = re.search(r"[\d.]+", str(text or ""))
    return float(found.group()) if found else 0.0


# --- the memory check -----------------------------------------------------------------------------------------


def memory_line(task: Any, params: Any, name: str, flavors: list[Flavor] | None = None) -> str:
    """One Markdown line for Check/Start when the run goes to Hugging Face Jobs on flavor ``name``: fits, or
    "will not fit on a10g-small (24 GB); fits on a100-large (80 GB, $2.50/h)" (the cheapest GPU flavor that
    fits). "" when the task has no transformer model; never raises."""
    model = str(getattr(params, "base_model", "") or "")
    if not model:
        return ""
    flavors = flavors or known()
    try:
        cfg, files, why = memory.find_model_files(model)
        arch = memory.architecture(cfg, files) if cfg else None
        if arch is None:
            return f"Memory: not estimated — {why or 'unknown model layout in config.json'}." if why else ""
        chosen = find(name, flavors)
        if chosen is None:
            return f"Memory: not estimated — Hugging Face Jobs list no flavor `{name}`."
        est, room = _estimate(task, params, arch, chosen)
        if est.needed <= room:
            return (
                f"✅ **Memory** on Hugging Face Jobs `{chosen.name}` ({chosen.memory_text()}): fits "
                f"(est. {est.needed / memory.GIB:.1f} of {room / memory.GIB:.1f} GB). {memory.describe(est)}"
            )
        return f"⚠️ **Memory** on Hugging Face Jobs: {_will_not_fit(task, params, arch, chosen, est, flavors)}"
    except Exception as e:  # a check must never block Start
        return f"Memory: not estimated ({type(e).__name__}: {e})."


def fitting(task: Any, params: Any, arch: Any, flavors: list[Flavor]) -> Flavor | None:
    """The cheapest GPU flavor (the listed order when prices are unknown) the run fits on."""
    order = sorted(
        (f for f in flavors if f.gpus),
        key=lambda f: (f.price_per_hour is None, f.price_per_hour or 0.0, flavors.index(f)),
    )
    for flavor in order:
        est, room = _estimate(task, params, arch, flavor)
        if est.needed <= room:
            return flavor
    return None


def _will_not_fit(task: Any, params: Any, arch: Any, chosen: Flavor, est: Any, flavors: list[Flavor]) -> str:
    head = (
        f"will not fit on `{chosen.name}` ({chosen.memory_text()}): est. {est.needed / memory.GIB:.1f} GB per "
        f"{'GPU' if chosen.gpus else 'machine'}"
    )
    better = fitting(task, params, arch, flavors)
    if better is not None:
        price = f", ${better.price_per_hour:.2f}/h" if better.price_per_hour is not None else ""
        return f"{head}; fits on `{better.name}` ({better.memory_text()}{price}). {memory.describe(est)}"
    _, room = _estimate(task, params, arch, chosen)
    fix = memory.verdict(est, room, params, task, arch).partition(" — ")[2]
    return f"{head}; no flavor fits{f' — {fix}' if fix else ''}. {memory.describe(est)}"


def _estimate(task: Any, params: Any, arch: Any, flavor: Flavor) -> tuple[Any, int]:
    """(the estimate on ``flavor``, the memory it must fit in: the smallest used GPU's, or the machine's RAM)."""
    if not flavor.gpus:
        return memory.estimate(task, params, [], arch), int(flavor.ram_gb * memory.GIB)
    devices, room = memory.device_memory(params, [Gpu(flavor.gpu, flavor.gpu_memory_gb)] * flavor.gpus)
    return memory.estimate(task, params, devices, arch), room
