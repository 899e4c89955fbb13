"""The export tools and whether they are here: llama.cpp (its Python binding, its converter), onnx, onnxruntime.

llama.cpp's converter (``convert_hf_to_gguf.py`` with its ``conversion/`` package and the ``gguf-py`` it was
written with) is not part of any wheel: it ships in the ``llama-cpp-python`` source distribution, under
``vendor/llama.cpp/``. ``python -m engine.ship.tools`` unpacks it from the sdist of the installed llama-cpp-python
version (``pip download``, a registry package) into ``<venv>/share/trainpad/llama.cpp-<version>/``, so the
converter always matches the llama.cpp that loads its files.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from engine import settings
from engine.errors import UserError

INSTALL_LINE = "pip install -e '.[export]' && python -m engine.ship.tools"
CONVERTER_FILES = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "conversion", "gguf-py", "LICENSE")


def llama_cpp_version() -> str | None:
    try:
        return importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        return None


def converter_dir() -> Path | None:
    """The folder holding ``convert_hf_to_gguf.py`` ($TRAINPAD_LLAMA_CPP_DIR, else the unpacked one), if any."""
    if settings.is_set("TRAINPAD_LLAMA_CPP_DIR"):
        folder = Path(settings.text("TRAINPAD_LLAMA_CPP_DIR")).expanduser()
    elif version := llama_cpp_version():
        folder = Path(sys.prefix) / "share" / "trainpad" / f"llama.cpp-{version}"
    else:
        return None
    return folder if (folder / "convert_hf_to_gguf.py").is_file() else None


def missing(fmt: str) -> str:
    """Why format ``fmt`` (gguf | onnx) cannot be exported here, with the line that installs it; "" when it can."""
    need = {"gguf": ["llama_cpp", "gguf"], "onnx": ["onnx", "onnxruntime"]}[fmt]
    absent = [name for name in need if importlib.util.find_spec(name) is None]
    if absent:
        return f"{fmt.upper()} export needs {', '.join(absent)}: `{INSTALL_LINE}`"
    if fmt == "gguf" and converter_dir() is None:
        return f"GGUF export needs llama.cpp's converter, unpacked by `python -m engine.ship.tools` (`{INSTALL_LINE}`)"
    return ""


def unpack_converter(dest: Path | None = None) -> Path:
    """Unpack llama.cpp's converter from the installed llama-cpp-python version's sdist; return its folder."""
    version = llama_cpp_version()
    if version is None:
        raise UserError(f"llama-cpp-python is not installed: `{INSTALL_LINE}`")
    dest = dest or Path(sys.prefix) / "share" / "trainpad" / f"llama.cpp-{version}"
    if (dest / "convert_hf_to_gguf.py").is_file():
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", tmp]
        subprocess.run([*pip, f"llama-cpp-python=={version}"], check=True)
        sdist = next(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        with tarfile.open(sdist) as tar:
            root = tar.getnames()[0].split("/")[0]
            prefix = f"{root}/vendor/llama.cpp/"
            members = [m for m in tar.getmembers() if m.name.startswith(prefix) and _wanted(m.name[len(prefix) :])]
            tar.extractall(tmp, members=members, filter="data")
        shutil.copytree(Path(tmp) / root / "vendor" / "llama.cpp", dest, dirs_exist_ok=True)
    return dest


def _wanted(name: str) -> bool:
    return any(name == f or name.startswith(f + "/") for f in CONVERTER_FILES)


def main() -> int:
    print(f"llama.cpp's converter: {unpack_converter()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
