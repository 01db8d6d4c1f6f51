"""`denoise run` measured as a deployment sees it (issue #26 sections 3 and 4): peak memory of the
whole process tree on large scans, and throughput on a Dask cluster of separate processes.
`scripts/deploy_benchmark.py` builds the inputs and writes the tables."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["run_cli_measured", "tiled_ct_volume", "memory_rows", "throughput_rows"]


def run_cli_measured(args: list[str]) -> tuple[float, float, int]:
    """Run ``denoise ARGS`` in a child process: (peak RSS in MiB of its process tree, polled every
    50 ms; wall seconds; exit code)."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from denoise.cli import main; sys.exit(main(sys.argv[1:]))",
                             *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            rss = ps.memory_info().rss + sum(c.memory_info().rss for c in ps.children(recursive=True))
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.05)
    return round(peak / 2**20, 0), round(time.perf_counter() - t0, 2), proc.returncode


def tiled_ct_volume(array: np.ndarray, shape: tuple[int, int, int], *, fill: float = -1024.0) -> np.ndarray:
    """A CT volume of ``shape`` (z, y, x) from a real one (z, y, x): in-plane centred and padded
    with air (or cropped), slices repeated back and forth (mirrored, so no jump between copies)."""
    z, y, x = shape
    out = np.full((array.shape[0], y, x), fill, dtype=array.dtype)
    sy, sx = min(y, array.shape[1]), min(x, array.shape[2])
    oy, ox = (y - sy) // 2, (x - sx) // 2
    iy, ix = (array.shape[1] - sy) // 2, (array.shape[2] - sx) // 2
    out[:, oy : oy + sy, ox : ox + sx] = array[:, iy : iy + sy, ix : ix + sx]
    period = np.concatenate([np.arange(len(out)), np.arange(len(out))[::-1]])
    return out[period[np.arange(z) % len(period)]]


def memory_rows(cases: dict[str, list[Path]], model: str | None = None) -> list[dict[str, Any]]:
    """Per case (a name and the files of its input folder): peak RSS, seconds and the largest
    input's voxel count of ``denoise run`` over a folder holding those files."""
    import nibabel as nib

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, files in cases.items():
            src = Path(tmp) / name
            src.mkdir()
            for i, f in enumerate(files):
                shutil.copy(f, src / f"{i:02d}_{f.name}")
            voxels = max(int(np.prod(nib.load(str(f)).shape)) for f in files)
            args = ["run", "-i", str(src), "-o", str(Path(tmp) / f"{name}_out"), "--quiet"]
            peak, secs, rc = run_cli_measured(args + (["-m", model] if model else []))
            rows.append({"case": name, "scans": len(files), "largest_scan_mvoxels": round(voxels / 1e6, 1),
                         "largest_scan_float32_mb": round(voxels * 4 / 2**20), "peak_rss_mb": peak, "seconds": secs,
                         "exit": rc})
            shutil.rmtree(Path(tmp) / f"{name}_out", ignore_errors=True)
            shutil.rmtree(src)
    return rows


def throughput_rows(src: Path, setups: list[tuple[str, int, int]]) -> list[dict[str, Any]]:
    """Per setup (label, workers, threads per worker; workers 0 = no Dask, the serial run):
    wall seconds and scans per minute of ``denoise run`` over ``src`` with the default models,
    against a cluster of separate processes (`denoise.cluster.process_cluster`) already up."""
    from denoise.cluster import process_cluster
    from denoise.io import discover_scans

    n = len(discover_scans(src)[0])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, workers, threads in setups:
            out = Path(tmp) / label
            args = ["run", "-i", str(src), "-o", str(out), "--quiet"]
            if workers:
                with process_cluster(workers, threads=threads, memory_limit="6GiB") as (address, _):
                    peak, secs, rc = run_cli_measured(args + ["--scheduler", address])
            else:
                peak, secs, rc = run_cli_measured(args)
            rows.append({"setup": label, "workers": workers, "threads_per_worker": threads, "scans": n,
                         "seconds": secs, "scans_per_minute": round(60 * n / secs, 1), "exit": rc})
    return rows
