"""Bring a folder of the user's images into the project as DVC-tracked data, and tell when data is not.

``beadseg import IMAGES --masks MASKS --name NAME`` checks every image/mask pair first (the same
checks as the split), copies them to ``data/raw/NAME/{images,masks}`` through a temporary folder renamed
at the end (an interrupted copy leaves nothing), then ``dvc add data/raw/NAME`` when the project is a DVC
repository. A colleague's ``dvc pull`` then gets the very images a model was trained on; a folder outside
the project is only hashed in dvc.lock, never stored.

:func:`untracked_warning` is the one line the fingerprint step (both engines) prints when params.yaml
reads images that DVC does not store.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from beadseg.config import DataConfig
from beadseg.data.io import find_pairs
from beadseg.errors import DataError

RAW_DIR = Path("data/raw")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


def add_folder(images: Path, masks: Path, name: str, root: Path = Path("."), dvc: bool = True) -> Path:
    """Copy the checked pairs of ``images``/``masks`` to ``data/raw/<name>``; ``dvc add`` it. Returns the folder."""
    if not NAME_PATTERN.match(name):
        raise DataError(f"data set name {name!r} is not a plain folder name: use letters, digits, '.', '_' or '-'")
    target = root / RAW_DIR / name
    if target.exists():
        raise DataError(f"'{target}' exists already: choose another --name, or remove it first (nothing was copied)")
    pairs = find_pairs(images, masks)  # every problem is a one-line DataError before anything is copied
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
    try:
        for sub in ("images", "masks"):
            (tmp / sub).mkdir()
        for pair in pairs:
            shutil.copy2(pair.image, tmp / "images" / pair.image.name)
            shutil.copy2(pair.mask, tmp / "masks" / pair.mask.name)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    if dvc and (root / ".dvc").is_dir():
        try:
            proc = subprocess.run(["dvc", "add", str(target.relative_to(root))], cwd=root, capture_output=True,
                                  text=True, check=False)
        except FileNotFoundError:
            raise DataError(f"copied to '{target}', but the `dvc` command is not installed: "
                            "pip install 'beadseg[workflow]', then run `dvc add " + str(target) + "`") from None
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
            raise DataError(f"copied to '{target}', but `dvc add` failed: {tail[0]}; run `dvc add {target}` yourself")
    return target


def is_tracked(folder: Path, root: Path = Path(".")) -> bool:
    """True when DVC stores ``folder``: it, or a folder above it inside the project, has a ``.dvc`` file, or it
    is the demo's output (a pipeline stage)."""
    try:
        rel = folder.resolve().relative_to(root.resolve())
    except ValueError:
        return False  # outside the project: only hashed in dvc.lock
    if rel.parts[:3] == ("data", "raw", "demo"):
        return True
    here = root.resolve()
    for part in rel.parts:
        here = here / part
        if here.with_name(here.name + ".dvc").is_file():
            return True
    return False


def untracked_warning(data: DataConfig, root: Path = Path(".")) -> str | None:
    """One line when params.yaml reads images or masks that DVC does not store (None otherwise)."""
    if data.source != "folder" or not (root / ".dvc").is_dir():
        return None
    loose = [str(p) for p in (data.images, data.masks) if not is_tracked(root / p, root)]
    if not loose:
        return None
    return (f"{' and '.join(sorted(set(loose)))} {'is' if len(set(loose)) == 1 else 'are'} not stored by DVC "
            "(only hashed in dvc.lock): a colleague's `dvc pull` cannot get the images these models were trained "
            "on; bring them in with `beadseg import IMAGES --masks MASKS --name NAME`")


def import_name(folder: str | Path) -> str | None:
    """NAME when ``folder`` is ``data/raw/NAME/images`` or ``data/raw/NAME/masks`` (what ``beadseg import`` makes)."""
    parts = Path(folder).parts
    if len(parts) == 4 and parts[:2] == RAW_DIR.parts and parts[3] in ("images", "masks"):
        return parts[2] if NAME_PATTERN.match(parts[2]) else None
    return None


def missing_data_line(data: DataConfig, source: str, root: Path = Path(".")) -> str | None:
    """One line saying what to run when params.yaml reads a folder that is not there (None when the data is)."""
    if data.source != "folder":
        return None
    for key, folder in (("data.images", data.images), ("data.masks", data.masks)):
        path = root / folder
        if path.is_dir():
            continue
        what = "does not exist" if not path.exists() else "is not a folder"
        name = import_name(folder)
        if name is not None:
            return (f"{key} '{folder}' in {source} {what}: bring your TIFFs in with `beadseg import IMAGES_DIR --masks "
                    f"MASKS_DIR --name {name}` (it makes data/raw/{name}/images and masks), or point {key} at the "
                    "folder that holds them")
        return (f"{key} '{folder}' in {source} {what}: point it at the folder that holds your TIFFs, or bring them in "
                "with `beadseg import IMAGES_DIR --masks MASKS_DIR --name NAME --set-params`")
    return None


def set_data_lines(params_text: str, images: str, masks: str) -> str:
    """params.yaml's text with ``data.source: folder`` and ``data.images`` / ``data.masks`` set, everything else
    (other keys, comments) kept. The ``data:`` block must be a block mapping (``data:`` alone on its line)."""
    lines = params_text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if re.match(r"data:\s*(#.*)?$", line.rstrip("\n"))), None)
    if start is None:
        if any(re.match(r"data:", line) for line in lines):
            raise DataError("params.yaml's data: section is written inline ({...}): write it as a block, one key a "
                            "line, so `--set-params` can set its images and masks")
        prefix = "" if not params_text or params_text.endswith("\n") else "\n"
        return f"{params_text}{prefix}data:\n  source: folder\n  images: {images}\n  masks: {masks}\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].strip() and not lines[i][0].isspace()
                and not lines[i].lstrip().startswith("#")), len(lines))
    indent = next((re.match(r"\s+", lines[i]).group(0) for i in range(start + 1, end)  # type: ignore[union-attr]
                   if lines[i].strip() and not lines[i].lstrip().startswith("#")), "  ")
    wanted = {"source": "folder", "images": images, "masks": masks}
    seen: set[str] = set()
    for i in range(start + 1, end):
        match = re.match(rf"{indent}(source|images|masks):(\s*)([^#\n]*?)(\s*#.*)?$", lines[i].rstrip("\n"))
        if match is None:
            continue
        key = match.group(1)
        comment = match.group(4) or ""
        lines[i] = f"{indent}{key}: {wanted[key]}{comment}\n"
        seen.add(key)
    missing = [f"{indent}{k}: {v}\n" for k, v in wanted.items() if k not in seen]
    return "".join(lines[:start + 1] + missing + lines[start + 1:])
