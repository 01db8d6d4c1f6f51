"""Exceptions raised by the readers and writers; every message names the file."""

from __future__ import annotations

__all__ = ["ScanReadError", "NotAnImageError"]


class ScanReadError(ValueError):
    """A file or series that should be an image could not be read (corrupt, truncated, ...)."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class NotAnImageError(ScanReadError):
    """A valid file that holds no image (DICOM SR/RTSTRUCT/SEG, a text file ...): skip it."""
