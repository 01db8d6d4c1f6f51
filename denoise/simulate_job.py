"""`denoise simulate`: write a noisy copy of every scan in a folder (load -> add noise -> save,
the same formats mirrored), for benchmarks and for trying a model on known noise."""

from __future__ import annotations

import logging
from pathlib import Path

from tqdm.auto import tqdm

from denoise.io import ScanReadError, discover_scans
from denoise.noise import add_noise, implausible_level, parse_noise

__all__ = ["simulate_folder"]

log = logging.getLogger(__name__)


def simulate_folder(input: str | Path, output: str | Path, noise: str, *, seed: int = 0,
                    progress: bool = True) -> dict[str, int]:
    """Write a noisy copy of every scan under ``input`` into ``output`` (same formats, mirrored).

    Scan ``k`` (in sorted relative-path order) gets seed ``seed + k``, so a rerun reproduces it.
    Outputs go where `denoise run` puts them (`denoise.scan_task.output_relpath`: a DICOM series
    as a derived series in ``output/<its relpath>/``), so `denoise run` and `evaluate_folder`
    pair them with their sources (`denoise.pairing`). A level no scanner makes
    (`denoise.noise.implausible_level`, e.g. ``rician:5``, 500%) is warned about, then simulated
    as asked.
    """
    from denoise.batch import _check_usage
    from denoise.scan_task import atomic_write, output_relpath

    spec = parse_noise(noise)
    warning = implausible_level(spec)
    if warning:
        log.warning("--noise %s: %s", noise, warning)
    src, out = Path(input).resolve(), Path(output).resolve()
    _check_usage(src, out, "same", 1, 0, None, None, None)
    sources, _ = discover_scans(src)
    counts = {"ok": 0, "failed": 0}
    for k, s in enumerate(tqdm(sources, desc="simulate", unit="scan", disable=not progress)):
        try:
            noisy = add_noise(s.load(), noise, seed=seed + k)
            atomic_write(noisy, out / output_relpath(s, "same"), f"simulated {noise} seed {seed + k}")
            counts["ok"] += 1
        except (ScanReadError, ValueError) as exc:
            counts["failed"] += 1
            tqdm.write(f"failed: {s.relpath}: {exc}")
    return counts
