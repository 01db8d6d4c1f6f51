"""Decoding a DICOM file's pixel data, with a reason that says what was tried when it fails.

pydicom tries every installed decoding plugin (pylibjpeg, GDCM when python-gdcm is importable,
Pillow, ...) in turn. When all fail, the reason names each plugin and what it said; the codecs
extra is suggested only when no plugin for the transfer syntax is installed at all.

pydicom logs each failing plugin with ``LOGGER.exception`` (an ERROR record carrying the
traceback) on the ``pydicom.pixels.decoders.base`` logger; through the root logger those
tracebacks reached stderr even under ``--quiet``. A filter on that logger drops such records
unless pydicom's own debugging is on (``pydicom.config.debug(True)``): the reason carries every
plugin's message, and the CLI's logging configuration governs everything else pydicom logs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pydicom
from pydicom import uid as dicom_uid

from denoise.io.errors import ScanReadError

if TYPE_CHECKING:
    from denoise.io.dicom_read import FrameRef

__all__ = ["decode", "read_frames", "decode_failure_reason"]

_DECODER_LOGGER = "pydicom.pixels.decoders.base"
CODECS_HINT = "install the codecs extra (pip install 'denoise[codecs]')"


class _DropPluginTracebacks(logging.Filter):
    """Drop pydicom's per-plugin failure tracebacks unless pydicom debugging is switched on."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info is None:
            return True
        return logging.getLogger("pydicom").isEnabledFor(logging.DEBUG)


def _install_filter() -> None:
    logger = logging.getLogger(_DECODER_LOGGER)
    if not any(isinstance(f, _DropPluginTracebacks) for f in logger.filters):
        logger.addFilter(_DropPluginTracebacks())


_install_filter()


def read_frames(frames: Sequence[FrameRef]) -> np.ndarray:
    """Stored values -> physical values (per-frame rescale) as float32, shape (n, rows, cols).

    Each file is decoded once while its frames follow one another."""
    cache: dict[Path, np.ndarray] = {}
    out = []
    for f in frames:
        if f.path not in cache:
            cache.clear()
            cache[f.path] = decode(f.path)
        data = cache[f.path]
        img = data[f.frame] if data.ndim == 3 else data
        slope = float(f.header.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(f.header.get("RescaleIntercept", 0.0) or 0.0)
        out.append(img.astype(np.float32) * np.float32(slope) + np.float32(intercept))
    return np.stack(out)


def decode(path: Path) -> np.ndarray:
    """Stored pixel values of one file: ``(rows, cols)`` or ``(frames, rows, cols)``.

    Raises:
        ScanReadError: unreadable file, no PixelData, or pixel data that no decoder could decode.
    """
    try:
        ds = pydicom.dcmread(str(path))
    except Exception as exc:
        raise ScanReadError(path, f"corrupt or truncated DICOM file ({type(exc).__name__}: {exc})") from exc
    if "PixelData" not in ds:
        raise ScanReadError(path, "DICOM image without PixelData")
    try:
        arr = ds.pixel_array
    except Exception as exc:
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        raise ScanReadError(path, decode_failure_reason(ts, exc, int(ds.get("BitsStored", 0) or 0))) from exc
    return np.asarray(arr)


def available_plugins(ts: str) -> tuple[str, ...] | None:
    """Names of the installed pydicom decoding plugins for ``ts``; None when pydicom has no
    decoder for that transfer syntax at all."""
    from pydicom.pixels import get_decoder

    try:
        return tuple(get_decoder(ts).available_plugins)
    except (NotImplementedError, ValueError):
        return None


def decode_failure_reason(ts: dicom_uid.UID | None, exc: Exception, bits_stored: int = 0) -> str:
    """Why pixel data of transfer syntax ``ts`` could not be decoded (no paths in it)."""
    text = _one_line(f"{type(exc).__name__}: {exc}")
    if ts is None or not getattr(ts, "is_compressed", False):
        return f"pixel data cannot be decoded, file truncated or corrupt ({text})"
    name = getattr(ts, "name", str(ts))
    plugins = available_plugins(str(ts))
    if plugins is None:
        return f"compressed pixel data ({name}) cannot be decoded: pydicom has no decoder for this transfer syntax"
    if not plugins:
        from pydicom.pixels import get_decoder

        missing = "; ".join(get_decoder(str(ts)).missing_dependencies)
        return (f"compressed pixel data ({name}) cannot be decoded: no decoder for it is installed"
                f"{f' ({missing})' if missing else ''}; {CODECS_HINT}")
    tried = _plugin_messages(str(exc))
    if not tried:  # failed before any plugin ran (e.g. truncated fragments)
        return (f"compressed pixel data ({name}) cannot be decoded, file truncated or corrupt "
                f"(installed decoders: {', '.join(plugins)}; {text})")
    reason = (f"compressed pixel data ({name}) could not be decoded by any installed decoder; tried "
              + "; ".join(f'{p} ("{m}")' for p, m in tried)
              + ". The compressed stream is damaged or uses a variant none of them supports")
    if ts == dicom_uid.JPEGExtended12Bit and bits_stored > 8:
        reason += ("; 12-bit lossy JPEG: decompress the file first with a tool built for it "
                   "(e.g. DCMTK's dcmdjpeg)")
    elif "gdcm" not in plugins:
        reason += "; pip install python-gdcm adds another decoder to try"
    return reason


def _plugin_messages(text: str) -> list[tuple[str, str]]:
    """(plugin, message) pairs from pydicom's "Unable to decode ... all available plugins" error."""
    if "available plugins" not in text:
        return []
    out: list[tuple[str, str]] = []
    for line in text.splitlines()[1:]:
        m = re.match(r"^\s+([\w.-]+): (.*)$", line)
        if m:
            out.append((m.group(1), _one_line(m.group(2))))
        elif out and line.strip():  # a plugin's message spanning lines
            out[-1] = (out[-1][0], _one_line(out[-1][1] + " " + line))
    return out


def _one_line(text: str) -> str:
    return " ".join(text.split())
