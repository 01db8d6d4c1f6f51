"""The viewer's downloads (issue #29 item 8): any method's result as NIfTI or as a derived DICOM
series (zip), written by the same writers as `denoise run`, and the metrics table as CSV."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from denoise.io import write_scan
from denoise.scan import Scan

__all__ = ["NIFTI", "DICOM", "download_formats", "scan_to_download", "download_section", "metrics_csv"]

NIFTI = "NIfTI (.nii.gz)"
DICOM = "DICOM series (zip)"
NOISY = "noisy input"


def download_formats(scan: Scan) -> list[str]:
    """The formats a result of ``scan`` can be written in: a derived DICOM series needs a DICOM
    source (its identifiers and geometry); NIfTI works for every scan."""
    return [DICOM, NIFTI] if scan.meta.get("format") == "dicom" else [NIFTI]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def scan_to_download(scan: Scan, name: str, fmt: str | None = None) -> tuple[bytes, str, str]:
    """(bytes, file name, mime) of ``scan`` in ``fmt`` (`NIFTI` or `DICOM`; default: the source's
    own format). NIfTI keeps an integer source's data type where the values fit
    (`denoise.io.nifti.integer_storage`); DICOM is a derived series as `denoise run` writes it."""
    fmt = fmt or download_formats(scan)[0]
    if fmt not in download_formats(scan):
        raise ValueError(f"cannot write {fmt} from a {scan.meta.get('format', 'in-memory')} scan")
    name = _safe(name)
    with tempfile.TemporaryDirectory() as tmp:
        if fmt == DICOM:
            folder = write_scan(scan, Path(tmp) / "series", description=f"denoised {name}")
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
                for f in sorted(folder.iterdir()):
                    zf.write(f, f.name)
            return buf.getvalue(), f"denoised_{name}.zip", "application/zip"
        path = write_scan(scan, Path(tmp) / f"denoised_{name}.nii.gz", keep_dtype=True)
        return path.read_bytes(), path.name, "application/gzip"


@st.cache_data(max_entries=8, show_spinner=False)
def _download_bytes(_scan: Scan, key: str, name: str, fmt: str) -> tuple[bytes, str, str]:
    return scan_to_download(_scan, name, fmt)


def metrics_csv(table: pd.DataFrame) -> bytes:
    """The metrics table as UTF-8 CSV (method as the first column)."""
    return table.reset_index().to_csv(index=False).encode("utf-8")


def download_section(noisy: Scan, results: dict[str, tuple[np.ndarray, float]], key: str, *, simulated: bool) -> None:
    """Pick a method (and, in simulate mode, the noisy input) and a format; the file is written once
    per (results ``key``, method, format) and cached."""
    st.subheader("Download")
    choices = list(results) + ([NOISY] if simulated else [])
    c1, c2 = st.columns(2)
    which = c1.selectbox("result", choices, key="download_method")
    fmt = c2.selectbox("format", download_formats(noisy), key="download_format")
    scan = noisy if which == NOISY else noisy.with_array(results[which][0])
    with st.spinner("writing the file..."):
        data, fname, mime = _download_bytes(scan, key, which, fmt)
    # on_click="ignore": a click must not rerun the page, whose rerun would replace the file being fetched
    st.download_button(f"download {which} ({fmt})", data, file_name=fname, mime=mime, key="download_scan", on_click="ignore")
    st.caption(f"{len(data) / 1e6:.1f} MB. Written as `denoise run` writes its outputs: DICOM as a derived series "
               "(new UIDs, 'RESEARCH USE ONLY' in the description); NIfTI keeps the input's header and, for an "
               "integer input whose values fit, its data type. Research use only.")
