"""Images and ZIP archives: decoding, folder layouts, annotation formats and safe extraction.

Shared by every task that reads images (classification, regression, detection, later VLM/ASR-style tasks that
bring a ZIP). Module level imports are light: Pillow and numpy are imported inside the functions, torch never.

- decoding: :func:`open_image` (a path, bytes, a Hub ``{"bytes", "path"}`` cell or a PIL image -> RGB, EXIF
  orientation applied, CMYK/RGBA/palette/grayscale/16-bit converted), :func:`check_images` (decode a sample,
  name each bad file);
- ZIPs: :func:`zip_problems` (refuse ``../`` or absolute members, links, too many members, too many bytes, zip
  bombs, all before writing anything), :func:`extract_zip` (checked, free disk checked, into a temporary folder
  then moved; extracted once per archive);
- layouts: :func:`read_image_folder` turns a folder into a table with an ``image`` column of absolute paths:
  class sub-folders (``cats/001.jpg`` -> ``label``), ``metadata.jsonl``/``metadata.csv`` (``file_name`` + any
  columns, the Hugging Face *imagefolder* layout), COCO JSON, YOLO txt labels, Pascal VOC XML (the detection
  formats give an ``objects`` column ``{"bbox": [[x, y, w, h], ...], "category": [...]}`` in pixels);
- ``datasets`` data: :func:`read_saved_dataset` (a ``save_to_disk`` folder), :func:`feature_table_splits` (Parquet
  it wrote), :func:`hub_table` (a loaded ``Dataset``): ClassLabel ids turned back into class names;
- :func:`image_splits`: the train/validation tables for a folder or ZIP data source (used by ``engine.data.tables``).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd

from engine.data.archives import JUNK, as_folder
from engine.errors import UserError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".jfif"}
METADATA_FILES = ("metadata.jsonl", "metadata.csv", "metadata.json", "metadata.parquet")
FILE_COLUMNS = ("file_name", "image", "file", "filename", "path", "image_path", "filepath")
MAX_CHECKED = 5000  # images decoded by the pre-launch check; bigger sets are sampled (and the count said)

# ---- decoding -----------------------------------------------------------------------------


def image_name(value: Any) -> str:
    """How a cell holding an image is named in messages: its file name or path, else its kind."""
    if isinstance(value, dict):
        return str(value.get("path") or "an image given as bytes")
    if isinstance(value, (str, Path)):
        return str(value)
    return f"an image given as {type(value).__name__}"


def resolve(value: Any, bases: list[Path] = ()) -> Any:
    """A path cell made absolute: as given when it exists, else tried under each folder of ``bases``."""
    if not isinstance(value, (str, Path)):
        return value
    path = Path(str(value).strip()).expanduser()
    if path.is_absolute() or not bases:
        return path
    for base in bases:
        if (base / path).exists():
            return base / path
    return Path(bases[0]) / path


def open_image(value: Any, bases: list[Path] = ()) -> Any:
    """The image in ``value`` as an RGB PIL image (fully decoded, EXIF orientation applied).

    ``value``: a path (relative ones resolved under ``bases``), bytes, a ``{"bytes", "path"}`` dict (a Hub
    ``Image`` column in pandas), a PIL image or a uint8 array. Raises :class:`UserError` naming the file.
    """
    from PIL import Image, UnidentifiedImageError

    name = image_name(value)
    try:
        if isinstance(value, Image.Image):
            img = value
        elif isinstance(value, dict) and value.get("bytes"):
            img = Image.open(io.BytesIO(value["bytes"]))
        elif isinstance(value, dict):
            img = Image.open(resolve(value.get("path") or "", bases))
        elif isinstance(value, (bytes, bytearray)):
            img = Image.open(io.BytesIO(value))
        elif hasattr(value, "shape"):
            img = Image.fromarray(value)
        else:
            img = Image.open(resolve(value, bases))
        img.load()
        return to_rgb(img)
    except FileNotFoundError:
        raise UserError(
            f"Image `{name}` does not exist. Check the path (relative paths are read from the data "
            "file's folder) or remove the row."
        ) from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as e:
        raise UserError(
            f"Image `{name}` could not be decoded ({type(e).__name__}: {e}). It is corrupt, truncated "
            "or not an image: re-export it, or remove it from the data."
        ) from None


def to_rgb(img: Any) -> Any:
    """8-bit RGB: EXIF rotation applied; 16-bit and float images scaled to 8 bits; transparency composited on
    white (a transparent background would otherwise turn black); CMYK, palette and grayscale converted."""
    from PIL import Image, ImageOps

    img = ImageOps.exif_transpose(img)
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        if img.mode == "F" and arr.max(initial=0) <= 1.0:
            top = 1.0
        img = Image.fromarray(np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return img.convert("RGB") if img.mode != "RGB" else img


def check_images(values: list[Any], bases: list[Path] = (), limit: int = MAX_CHECKED, seed: int = 0) -> dict:
    """Decode the images (a seeded sample of ``limit`` when there are more) and report.

    Returns ``{"checked": n, "total": n, "problems": [...], "sizes": {index: (width, height)}}``; each problem
    names the file. Sizes are those after EXIF rotation (what training sees)."""
    import random

    index = list(range(len(values)))
    if len(index) > limit:
        index = sorted(random.Random(seed).sample(index, limit))
    problems, sizes = [], {}
    for i in index:
        size_or_problem = decoded_size(values[i], bases)
        if isinstance(size_or_problem, str):
            problems.append(size_or_problem)
        else:
            sizes[i] = size_or_problem
    if len(index) < len(values):
        print(f"[trainpad] checked {len(index)} of {len(values)} images (a random sample).", flush=True)
    return {"checked": len(index), "total": len(values), "problems": problems, "sizes": sizes}


_DECODED: dict[tuple, Any] = {}  # (path, size, mtime) -> (width, height) or the problem: Check, then Start


def decoded_size(value: Any, bases: list[Path] = ()) -> tuple[int, int] | str:
    """The decoded image's size (after EXIF rotation), or the problem naming the file. Files are remembered by
    path, size and modification time, so checking the same data again (Check, then Start) decodes nothing."""
    key = None
    if isinstance(value, (str, Path)):
        path = resolve(value, bases)
        try:
            st = Path(path).stat()
            key = (str(path), st.st_size, st.st_mtime_ns)
        except OSError:
            pass
    if key is not None and key in _DECODED:
        return _DECODED[key]
    try:
        found: tuple[int, int] | str = open_image(value, bases).size
    except UserError as e:
        found = e.problems[0]
    if key is not None and len(_DECODED) < 500_000:
        _DECODED[key] = found
    return found


# ---- ZIP archives -------------------------------------------------------------------------


# ---- folder layouts -----------------------------------------------------------------------


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively, sorted), hidden files and ZIP junk left out."""
    return sorted(
        p
        for p in folder.rglob("*")
        if is_image(p)
        and p.is_file()
        and not any(part in JUNK or part.startswith(".") for part in p.relative_to(folder).parts)
    )


def read_image_folder(folder: str | Path) -> pd.DataFrame:
    """The table a folder of images stands for; ``df.attrs["format"]`` says which layout was found.

    Tried in order: a dataset saved by ``datasets`` (``save_to_disk``), ``metadata.jsonl``/``.csv`` (imagefolder),
    a COCO JSON, Pascal VOC XML, YOLO txt labels, class sub-folders. Raises :class:`UserError` saying what was
    found when none fits."""
    folder = Path(folder)
    for reader in (read_saved_dataset, read_metadata, read_coco, read_voc, read_yolo, read_class_folders):
        df = reader(folder)
        if df is not None:
            return df
    found = sorted(e.name for e in folder.iterdir())[:10]
    raise UserError(
        f"Folder `{folder.name}` holds no images in a layout Trainpad knows (found: {', '.join(found)}). "
        "Use class sub-folders (cats/001.jpg), images + metadata.jsonl/csv with a `file_name` column, a dataset "
        "saved with `datasets` save_to_disk, or for detection COCO JSON, YOLO txt labels or Pascal VOC XML."
    )


def read_metadata(folder: Path) -> pd.DataFrame | None:
    """``metadata.jsonl``/``.csv`` beside the images: one row per image, its ``file_name`` made absolute (in
    column ``image``); every file it names must exist (the missing ones are listed)."""
    from engine.data.tables import read_table

    meta = next((folder / n for n in METADATA_FILES if (folder / n).is_file()), None)
    if meta is None:
        return None
    df = read_table(meta)
    col = next((c for c in FILE_COLUMNS if c in df.columns), None)
    if col is None:
        raise UserError(
            f"`{meta.name}` has no `file_name` column naming each image (columns: "
            f"{', '.join(df.columns)}). Add one with paths relative to its folder."
        )
    outside = [(i, v) for i, v in enumerate(df[col]) if not stays_inside(str(v))]
    if outside:
        shown = "; ".join(f"row {i + 1}: `{v}`" for i, v in outside[:8])
        raise UserError(
            f"`{meta.name}` names image(s) outside its folder ({shown}). Give paths relative to the folder."
        )
    paths = [folder / str(v) for v in df[col]]
    missing = [(i, p) for i, p in enumerate(paths) if not p.is_file()]
    if missing:
        shown = "; ".join(f"row {i + 1}: `{p.relative_to(folder)}`" for i, p in missing[:8])
        raise UserError(
            f"`{meta.name}` names {len(missing)} image(s) that are not in the folder ({shown}). "
            "Add the files or remove those rows."
        )
    df = df.drop(columns=[col]).assign(image=[str(p) for p in paths])
    df = df[["image", *[c for c in df.columns if c != "image"]]]
    df.attrs["format"] = f"images + {meta.name}"
    return df


def read_class_folders(folder: Path) -> pd.DataFrame | None:
    """``<class>/<image>`` (deeper levels allowed): one row per image, ``label`` = its first folder."""
    images = list_images(folder)
    if not images:
        return None
    loose = [p.name for p in images if p.parent == folder]
    if loose:
        raise UserError(
            f"Folder `{folder.name}` has images outside class sub-folders (e.g. {', '.join(loose[:3])}) "
            "and no metadata.jsonl/csv. Put each image in a folder named after its class "
            "(cats/001.jpg), or add a metadata.csv with `file_name` and `label` columns."
        )
    df = pd.DataFrame({"image": [str(p) for p in images], "label": [p.relative_to(folder).parts[0] for p in images]})
    df.attrs["format"] = "class sub-folders"
    return df


# ---- data sources -------------------------------------------------------------------------


def is_image_source(path: str | Path) -> bool:
    """True for a ZIP, a dataset saved by ``datasets``, or a folder that holds images and no train/validation table
    files (a metadata file or a COCO JSON is part of an image folder, not a table)."""
    p = Path(path).expanduser()
    if p.is_file():
        return p.suffix.lower() == ".zip"
    if not p.is_dir():
        return False
    if is_saved_dataset(p):
        return True
    from engine.data.tables import EXTENSIONS

    coco = _coco_file(p)
    tables = [f for f in p.iterdir() if f.suffix.lower() in EXTENSIONS and f.name not in METADATA_FILES and f != coco]
    return not tables and next((f for f in p.rglob("*") if is_image(f)), None) is not None


def _split_dir(folder: Path, names: tuple[str, ...]) -> Path | None:
    wanted = [n.lower() for n in names if n]
    subdirs = {d.name.lower(): d for d in folder.iterdir() if d.is_dir()}
    return next((subdirs[n] for n in wanted if n in subdirs), None)


def image_splits(params: Any) -> tuple[pd.DataFrame, pd.DataFrame | None] | None:
    """Train and validation tables for an image folder or ZIP data source, a dataset saved by ``datasets`` or
    Parquet files it wrote (class ids as class names); None when ``data_path`` is none of those.

    A folder holding split folders (``train/`` + ``validation/``..., or the ``train_split``/``valid_split``
    names) gives both; ``valid_path`` may name another folder or ZIP."""
    from engine.data.tables import TRAIN_NAMES, VALID_NAMES

    if not params.data_path:
        return None
    if not is_image_source(params.data_path):
        return feature_table_splits(params)
    folder = as_folder(params.data_path)
    train_dir = _split_dir(folder, (params.train_split, *TRAIN_NAMES))
    valid_dir = _split_dir(folder, (params.valid_split, *VALID_NAMES)) if train_dir else None
    if params.valid_path:
        valid_dir = as_folder(params.valid_path)
    train = read_image_folder(train_dir or folder)
    print(
        f"[trainpad] data `{Path(params.data_path).name}`: {train.attrs.get('format')}, "
        f"{len(train)} training examples",  # images, or audio clips: the folder readers are shared
        flush=True,
    )
    return train, (read_image_folder(valid_dir) if valid_dir else None)


def read_json_file(path: Path) -> Any:
    """A JSON file, or a UserError naming it and the line."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"`{path.name}` is not valid JSON ({e}).") from None


# ---- datasets written by the `datasets` library ----------------------------------------------
# Its ClassLabel columns hold class ids (0, 1...) and keep the names in the features: read plainly, a model would
# learn the classes "0" and "1". These readers put the names back.


def class_label_names(df: pd.DataFrame, features: Any) -> pd.DataFrame:
    """``df`` with the ids of ``datasets`` ClassLabel columns, and of lists of them (a detection set's
    ``objects.category``), replaced by the class names; id -1 (no label) becomes missing. ``features``: the
    dataset's features as JSON (``Features.to_dict()``, a Parquet file's or ``dataset_info.json``'s)."""
    out = df.copy()
    for col, feature in (features or {}).items():
        if col in out.columns and has_class_label(feature):
            out[col] = [_named(v, feature) for v in out[col]]
    return out


def has_class_label(features: Any) -> bool:
    return '"ClassLabel"' in json.dumps(features or {})


def _named(value: Any, feature: Any) -> Any:
    if isinstance(feature, list) and feature:  # the old form of a list feature: [inner]
        feature = {"feature": feature[0], "_type": "List"}
    if not isinstance(feature, dict) or value is None:
        return value
    kind = feature.get("_type")
    if kind == "ClassLabel":
        names = feature.get("names") or []
        try:
            return names[int(value)] if 0 <= int(value) < len(names) else None
        except (TypeError, ValueError):  # NaN: no label
            return None
    if kind in ("List", "Sequence", "LargeList"):
        inner = feature.get("feature")
        if isinstance(value, dict):  # a list of structs, stored as a struct of lists
            return {k: [_named(x, (inner or {}).get(k)) for x in v] if v is not None else v for k, v in value.items()}
        return [_named(x, inner) for x in value]
    if kind is None and isinstance(value, dict):  # a struct
        return {k: _named(v, feature.get(k)) for k, v in value.items()}
    return value


def hub_table(ds: Any) -> pd.DataFrame:
    """A ``datasets.Dataset`` as a table, class ids as class names (images stay ``{"bytes", "path"}`` cells)."""
    return class_label_names(ds.to_pandas(), ds.features.to_dict())


def is_saved_dataset(folder: Path) -> bool:
    """A folder written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``."""
    return (folder / "dataset_dict.json").is_file() or (
        (folder / "state.json").is_file() and (folder / "dataset_info.json").is_file()
    )


def read_saved_dataset(folder: Path) -> pd.DataFrame | None:
    """One split saved by ``Dataset.save_to_disk`` (Arrow files + ``state.json`` + ``dataset_info.json``), class
    ids as names; None for other folders. A ``DatasetDict`` folder is read through its split folders."""
    import pyarrow as pa

    if (folder / "dataset_dict.json").is_file() and not (folder / "state.json").is_file():
        splits = read_json_file(folder / "dataset_dict.json").get("splits", [])
        raise UserError(
            f"`{folder.name}` is a DatasetDict with the splits {', '.join(map(str, splits))}, none of them a "
            "training split. Set train_split (and valid_split) to the split names."
        )
    if not is_saved_dataset(folder):
        return None
    files = [f.get("filename", "") for f in read_json_file(folder / "state.json").get("_data_files", [])]
    if not files or not all(stays_inside(f) and (folder / f).is_file() for f in files):
        raise UserError(f"`{folder.name}/state.json` names data files that are not in the folder: {files[:5]}.")
    tables = []
    for f in files:
        with pa.memory_map(str(folder / f)) as source:
            tables.append(pa.ipc.open_stream(source).read_all())
    features = read_json_file(folder / "dataset_info.json").get("features")
    df = class_label_names(pa.concat_tables(tables).to_pandas(), features)
    df.attrs["format"] = "a dataset saved by `datasets` (save_to_disk)"
    return df


def parquet_features(path: Path | None) -> Any:
    """The ``datasets`` features stored in a Parquet file's metadata (None for other files)."""
    if path is None or path.suffix.lower() not in (".parquet", ".pq"):
        return None
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
        return json.loads(meta[b"huggingface"])["info"]["features"] if b"huggingface" in meta else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def feature_table_splits(params: Any) -> tuple[pd.DataFrame, pd.DataFrame | None] | None:
    """Parquet files written by ``datasets`` (``to_parquet``, or a Hub dataset's files) holding ClassLabel
    columns, read with their class names; None for other tables (read plainly by ``engine.data.tables``)."""
    from engine.data.tables import read_table, resolve_files

    try:
        train, valid = resolve_files(params)
    except UserError:
        return None
    features = parquet_features(train) if train.is_file() else None
    if not has_class_label(features):
        return None
    named_valid = class_label_names(read_table(valid), parquet_features(valid) or features) if valid else None
    return class_label_names(read_table(train), features), named_valid


# ---- detection annotation formats ---------------------------------------------------------
# Each reader returns one row per image: ``image`` (absolute path) and ``objects`` = {"bbox": [[x, y, w, h], ...]
# (pixels, top-left corner), "category": [name, ...]}, or None when the folder is not in its format.


# ---- previews -----------------------------------------------------------------------------


def thumbnail(value: Any, objects: Any = None, size: int = 160, bases: list[Path] = ()) -> Any:
    """A small RGB copy of the image for a preview, with the ``objects`` boxes ([x, y, w, h] pixels) drawn."""
    from PIL import ImageDraw

    img = open_image(value, bases)
    scale = size / max(img.size)
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))))
    if isinstance(objects, dict):
        draw = ImageDraw.Draw(img)
        for (x, y, w, h), cat in zip(objects.get("bbox", []), objects.get("category", []), strict=False):
            box = [x * scale, y * scale, (x + w) * scale, (y + h) * scale]
            draw.rectangle(box, outline=(255, 40, 40), width=2)
            draw.text((box[0] + 2, box[1] + 1), str(cat), fill=(255, 255, 0))
    return img


def gallery(df: pd.DataFrame, bases: list[Path] = (), limit: int = 24) -> list[tuple[Any, str]]:
    """(thumbnail, caption) for ``limit`` rows (a seeded sample) of an image table: the label or target as caption, or the
    number of boxes and their categories (drawn on the thumbnail); an unreadable image says why."""
    col = next((c for c in FILE_COLUMNS if c in df.columns), None)
    if col is None:
        return []
    label = next((c for c in ("label", "target", "labels", "class", "category", "score") if c in df.columns), None)
    items = []
    for _, row in df.sample(min(limit, len(df)), random_state=0).iterrows():  # a spread, not the first folder
        objects = row.get("objects") if "objects" in df.columns else None
        if isinstance(objects, str):
            objects = json.loads(objects) if objects.strip().startswith("{") else None
        try:
            thumb = thumbnail(row[col], objects, bases=bases)
        except UserError as e:
            items.append((_blank(), e.problems[0][:120]))
            continue
        if isinstance(objects, dict):
            cats = list(objects.get("category", []))
            caption = f"{len(cats)} box(es): {', '.join(map(str, cats[:4]))}" + ("…" if len(cats) > 4 else "")
        else:
            caption = str(row[label]) if label else Path(str(row[col])).name
        items.append((thumb, caption))
    return items


def _blank() -> Any:
    from PIL import Image

    return Image.new("RGB", (160, 160), (200, 200, 200))


def counts_note(df: pd.DataFrame) -> str:
    """One line with the image count and the class counts (labels, or box categories for detection)."""
    if "objects" in df.columns:
        cats = pd.Series([c for o in df["objects"] if isinstance(o, dict) for c in o.get("category", [])], dtype=str)
        what = f"{len(cats)} boxes"
    else:
        col = next((c for c in ("label", "labels", "class", "category") if c in df.columns), None)
        cats, what = (df[col].astype(str), "") if col else (pd.Series([], dtype=str), "")
    counts = cats.value_counts()
    classes = ", ".join(f"{k} ({v})" for k, v in counts.head(20).items())
    more = f" and {len(counts) - 20} more" if len(counts) > 20 else ""
    fmt = f" ({df.attrs['format']})" if df.attrs.get("format") else ""
    return (
        f"{len(df)} images{fmt}" + (f", {what}" if what else "") + (f". Classes: {classes}{more}." if classes else ".")
    )


def data_bases(params: Any) -> list[Path]:
    """Folders where relative image paths are looked up: the data file's folder, then the validation file's."""
    out = []
    for value in (params.data_path, params.valid_path):
        if value and Path(value).expanduser().exists():
            p = Path(value).expanduser().resolve()
            out.append(p if p.is_dir() else p.parent)
    return out


def _objects_frame(rows: list[tuple[Path, list, list]], fmt: str) -> pd.DataFrame:
    df = pd.DataFrame(
        {"image": [str(p) for p, _, _ in rows], "objects": [{"bbox": b, "category": c} for _, b, c in rows]}
    )
    df.attrs["format"] = fmt
    return df


def stays_inside(name: str) -> bool:
    """True for a relative path that stays in its folder (no ``..``, not absolute): an annotation or metadata file
    only names images of its own folder, so a shared instance's visitor cannot point at the host's files."""
    parts = str(name).replace("\\", "/").split("/")
    return bool(name) and not str(name).startswith(("/", "\\", "~")) and ":" not in parts[0] and ".." not in parts


def _find_image(folder: Path, name: str) -> Path | None:
    if not stays_inside(name):
        return None
    for candidate in (
        folder / name,
        folder / "images" / name,
        folder / "JPEGImages" / name,
        folder.parent / "images" / name,
    ):
        if candidate.is_file():
            return candidate
    return None


def _coco_file(folder: Path) -> Path | None:
    for f in sorted(folder.glob("*.json")) + sorted(folder.glob("annotations/*.json")):
        if f.name in METADATA_FILES or f.stat().st_size > 2**31:
            continue
        with open(f, encoding="utf-8", errors="replace") as fh:
            head = fh.read(4096)
        if '"images"' in head or '"annotations"' in head or '"categories"' in head:
            return f
    return None


def read_coco(folder: Path) -> pd.DataFrame | None:
    """A COCO JSON (``images``, ``annotations``, ``categories``; Roboflow's ``_annotations.coco.json`` too)."""
    path = _coco_file(folder)
    if path is None:
        return None
    data = read_json_file(path)
    names = {c["id"]: str(c.get("name", c["id"])) for c in data.get("categories", [])}
    boxes: dict[Any, list] = {}
    problems = []
    for a in data.get("annotations", []):
        if a.get("category_id") not in names:
            problems.append(
                f"`{path.name}`: annotation {a.get('id')} has category_id {a.get('category_id')!r}, "
                f"which `categories` does not define (ids: {sorted(names)[:20]})."
            )
            continue
        boxes.setdefault(a.get("image_id"), []).append(([float(v) for v in a["bbox"]], names[a["category_id"]]))
    rows = []
    for img in data.get("images", []):
        found = _find_image(path.parent, img["file_name"]) or _find_image(folder, img["file_name"])
        if found is None:
            problems.append(f"`{path.name}` names image `{img['file_name']}`, which is not in the folder.")
            continue
        objs = boxes.get(img["id"], [])
        rows.append((found, [b for b, _ in objs], [c for _, c in objs]))
    if problems:
        raise UserError(problems[:10] + ([f"... and {len(problems) - 10} more."] if len(problems) > 10 else []))
    return _objects_frame(rows, f"COCO JSON ({path.name})")


def read_voc(folder: Path) -> pd.DataFrame | None:
    """Pascal VOC: one XML per image (``Annotations/*.xml`` or beside the images)."""
    import xml.etree.ElementTree as ET

    xmls = sorted(folder.glob("Annotations/*.xml")) or sorted(folder.glob("*.xml"))
    if not xmls:
        return None
    rows, problems = [], []
    for x in xmls:
        try:
            root = ET.parse(x).getroot()
            image = _find_image(folder, root.findtext("filename", "")) or _find_image(x.parent, x.stem + ".jpg")
            objs = [(o.findtext("name", "").strip(), o.find("bndbox")) for o in root.iter("object")]
            bbs = [[float(b.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")] for _, b in objs]
        except (ET.ParseError, TypeError, ValueError, AttributeError) as e:
            problems.append(f"`{x.name}` is not a readable Pascal VOC file ({e}).")
            continue
        if image is None:
            problems.append(f"`{x.name}` names image `{root.findtext('filename')}`, which is not in the folder.")
            continue
        rows.append((image, [[a, b, c - a, d - b] for a, b, c, d in bbs], [n for n, _ in objs]))
    if problems:
        raise UserError(problems[:10])
    return _objects_frame(rows, "Pascal VOC XML")


def _yolo_names(folder: Path) -> list[str]:
    import yaml

    for name in ("data.yaml", "dataset.yaml", "data.yml"):
        for f in (folder / name, folder.parent / name):
            if f.is_file():
                names = (yaml.safe_load(f.read_text(encoding="utf-8")) or {}).get("names") or []
                return [names[k] for k in sorted(names)] if isinstance(names, dict) else [str(n) for n in names]
    for name in ("classes.txt", "obj.names", "classes.names", "labels.txt"):
        for f in (folder / name, folder.parent / name):
            if f.is_file():
                return [ln.strip() for ln in f.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return []


def _yolo_label_file(folder: Path, image: Path) -> Path:
    rel = image.relative_to(folder)
    parts = ["labels" if p == "images" else p for p in rel.parts]
    mirrored = folder.joinpath(*parts).with_suffix(".txt")
    return mirrored if mirrored.is_file() else image.with_suffix(".txt")


def read_yolo(folder: Path) -> pd.DataFrame | None:
    """YOLO: a ``.txt`` per image (``labels/`` beside ``images/``, or next to it) with lines ``class cx cy w h``
    (fractions of the image); class names from data.yaml / classes.txt (the number itself when none)."""
    from PIL import Image

    images = list_images(folder)
    label_files = [_yolo_label_file(folder, p) for p in images]
    if not images or not any(f.is_file() for f in label_files):
        return None
    names, rows, problems = _yolo_names(folder), [], []
    for image, lf in zip(images, label_files, strict=True):
        boxes, cats = [], []
        lines = lf.read_text(encoding="utf-8").splitlines() if lf.is_file() else []
        with Image.open(image) as im:
            w, h = im.size
        for n, line in enumerate(ln for ln in lines if ln.strip()):
            try:
                k, cx, cy, bw, bh = line.split()[:5]
                cls = int(k)
                boxes.append(
                    [(float(cx) - float(bw) / 2) * w, (float(cy) - float(bh) / 2) * h, float(bw) * w, float(bh) * h]
                )
            except ValueError:
                problems.append(f"`{lf.name}` line {n + 1}: `{line.strip()}` is not `class cx cy w h`.")
                continue
            if names and not 0 <= cls < len(names):
                problems.append(
                    f"`{lf.name}` line {n + 1}: class {cls} is not in the class names "
                    f"(0..{len(names) - 1}: {', '.join(names[:10])})."
                )
            cats.append(names[cls] if names and 0 <= cls < len(names) else str(cls))
        rows.append((image, boxes, cats))
    if problems:
        raise UserError(problems[:10])
    return _objects_frame(rows, "YOLO txt labels" + ("" if names else " (no class names file: classes are numbers)"))
