"""SHA-256 identities of files and text (the one home of the rule): checkpoints in manifests and
exports, a scan's input files for ``--continue``."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["file_hash", "files_hash", "text_hash"]


def file_hash(path: str | Path, *, length: int = 12) -> str:
    """The first ``length`` hex digits of a file's SHA-256 (64: the whole digest)."""
    return files_hash([Path(path)], length=length, names=False)


def files_hash(paths: Iterable[Path], *, length: int = 16, names: bool = True) -> str:
    """SHA-256 over files in sorted order; with ``names`` each file's name (not its folder) goes in
    before its contents, so a renamed member changes the identity."""
    h = hashlib.sha256()
    for path in sorted(paths):
        if names:
            h.update(os.fsencode(path.name))  # any file name, also one that is not valid UTF-8
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:length]


def text_hash(text: str | bytes, *, length: int = 12) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``text`` (UTF-8) or of bytes."""
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()[:length]
