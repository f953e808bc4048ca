"""Files an upstream model saves itself in ``MODEL_DIR``, carried inside the version ``fit`` makes.

Upstream models write their trained state to ``MODEL_DIR/model.pkl`` (or ``model_project_<id>.pt``)
and read it back later. Left alone, such a file is outside the runtime's versions: a rollback
would change the version label but not the file, and with the S3 store the file would stay on the
disk of the process that trained. So the files ``fit`` created or changed are put into its
``train_output`` (which the store versions and shares), and written back into ``MODEL_DIR`` before
a model object of that version is built.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

__all__ = ["KEY", "MAX_BYTES", "changed_files", "restore", "snapshot"]

log = logging.getLogger(__name__)

#: The ``train_output`` key holding ``{path relative to MODEL_DIR: bytes}``.
KEY = "__upstream_files__"
#: Above this many bytes in all, a training's own files are left on disk, not versioned (and logged).
MAX_BYTES = 512 * 1024 * 1024
#: What ``lsbackend.storage`` keeps in MODEL_DIR itself; never a model's own file (tests check the list).
STORE_ENTRIES = ("projects", "pretrained", "last_setup")

Stamp = dict[str, tuple[int, int]]


def snapshot(root: Path) -> Stamp:
    """Every model-owned file under ``root``: relative path -> (modification time in ns, size)."""
    found: Stamp = {}
    if not root.is_dir():
        return found
    for top in root.iterdir():
        if top.name in STORE_ENTRIES or top.name.startswith("."):
            continue
        for path in [top] if top.is_file() else (p for p in top.rglob("*") if p.is_file()):
            stat = path.stat()
            found[str(path.relative_to(root))] = (stat.st_mtime_ns, stat.st_size)
    return found


def changed_files(root: Path, before: Stamp) -> dict[str, bytes]:
    """The contents of the files created or modified under ``root`` since ``before``; {} when too big."""
    changed = [name for name, stamp in snapshot(root).items() if before.get(name) != stamp]
    total = sum((root / name).stat().st_size for name in changed)
    if total > MAX_BYTES:
        log.warning("fit wrote %d MB of its own files in MODEL_DIR (%s): more than %d MB, so they stay on "
                    "this disk only, outside versions and rollback", total >> 20, ", ".join(changed[:5]),
                    MAX_BYTES >> 20)
        return {}
    return {name: (root / name).read_bytes() for name in changed}


def restore(root: Path, files: dict[str, bytes]) -> None:
    """Write a version's own files back under ``root`` (atomically, only those that differ)."""
    for name, data in files.items():
        path = (root / name).resolve()
        if root.resolve() not in path.parents:
            raise ValueError(f"a model file {name!r} recorded by a training lies outside MODEL_DIR")
        if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
            tmp.write(data)
        os.replace(tmp.name, path)
