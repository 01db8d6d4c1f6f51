"""Files appear whole or not at all: write under a temporary sibling name, then rename into place.

The one home of the rule for the files a rerun or another program may read while the package
writes them: output scans, manifests, summaries, checkpoints, training tables (an export is
assembled in a temporary folder and renamed the same way). A temporary is ``.NAME.TAG.tmp[EXT]`` beside its destination (an
8-hex TAG keeps concurrent writers apart); a DICOM series being replaced waits as ``.NAME.TAG.old``.
`is_leftover` recognises both after a killed run, so a rerun can sweep them.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["temp_sibling", "is_leftover", "remove_leftovers", "write_atomic", "write_text_atomic"]

log = logging.getLogger(__name__)


def temp_sibling(path: Path, kind: str = "tmp", tag: str | None = None, ext: str = "") -> Path:
    """``.NAME.TAG.KIND[EXT]`` beside ``path``: where an output is written before it is renamed into
    place (kind ``tmp``) or where a DICOM series it replaces waits (kind ``old``). The 8-hex TAG keeps
    concurrent writers apart; `is_leftover` recognises these names after a killed run."""
    return path.with_name(f".{path.name}.{tag or uuid.uuid4().hex[:8]}.{kind}{ext}")


def is_leftover(candidate: Path, path: Path) -> bool:
    """Whether ``candidate`` is one of `temp_sibling`'s names for ``path``."""
    prefix = f".{path.name}."
    if candidate.parent != path.parent or not candidate.name.startswith(prefix):
        return False
    tag, _, kind = candidate.name[len(prefix):].partition(".")
    return len(tag) == 8 and all(c in "0123456789abcdef" for c in tag) and (kind.startswith("tmp") or kind == "old")


def remove_leftovers(dests: Iterable[Path], root: Path) -> None:
    """Delete what a killed earlier writer left half-written for these destinations: their
    temporaries (``.NAME.TAG.tmp*``) and a DICOM series moved aside (``.NAME.TAG.old``); nothing
    else, so writers of other destinations in the same folder are never touched. Each removal is
    logged relative to ``root``."""
    for dest in dests:
        if not dest.parent.is_dir():
            continue
        for left in dest.parent.glob(f".{glob.escape(dest.name)}.*"):
            if is_leftover(left, dest):
                log.info("removing %s, left half-written by an earlier run", left.relative_to(root))
                shutil.rmtree(left) if left.is_dir() and not left.is_symlink() else left.unlink()


def write_atomic(path: Path, write: Callable[[Path], object], *, ext: str = "") -> Path:
    """Call ``write(tmp)`` for a `temp_sibling` of ``path`` (ending in ``ext``, for writers that
    go by the file name, e.g. ``.nii.gz``), then rename it onto ``path``: readers see the old file or
    the whole new one. If ``write`` fails (or is interrupted) the temporary is removed and ``path``
    is left as it was."""
    tmp = temp_sibling(path, ext=ext)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: Path, text: str) -> None:
    """`write_atomic` of a text file."""
    write_atomic(path, lambda tmp: tmp.write_text(text))
