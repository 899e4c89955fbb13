"""The machine's resources (CPU cores, RAM, GPUs) found without importing torch.

GPUs come from ``nvidia-smi`` when it is installed; the UI header shows :func:`summary`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field

import psutil


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_gb: float


@dataclass(frozen=True)
class Resources:
    cpu_cores: int
    ram_gb: float
    gpus: list[Gpu] = field(default_factory=list)


def gpus(timeout: float = 3.0) -> list[Gpu]:
    """GPUs reported by ``nvidia-smi`` (empty when it is missing or fails)."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_nvidia_smi(out)


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """``name, memory MiB`` lines -> :class:`Gpu` list (lines that do not parse are skipped)."""
    found = []
    for line in text.strip().splitlines():
        name, _, mem = line.rpartition(",")
        try:
            found.append(Gpu(name.strip(), round(float(mem) / 1024, 1)))
        except ValueError:
            continue
    return found


def resources() -> Resources:
    """CPU cores usable by this process, total RAM, GPUs."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return Resources(cpu_cores=cores, ram_gb=round(psutil.virtual_memory().total / 2**30, 1), gpus=gpus())


def summary(res: Resources | None = None) -> str:
    """One line, e.g. ``2 CPU cores · 23.4 GB RAM · GPU: 1× NVIDIA A10G (22.5 GB)``."""
    res = res or resources()
    parts = [f"{res.cpu_cores} CPU cores", f"{res.ram_gb:g} GB RAM"]
    if res.gpus:
        names: dict[str, int] = {}
        for g in res.gpus:
            key = f"{g.name} ({g.memory_gb:g} GB)"
            names[key] = names.get(key, 0) + 1
        parts.append("GPU: " + ", ".join(f"{n}× {k}" for k, n in names.items()))
    else:
        parts.append("no GPU")
    return " · ".join(parts)
