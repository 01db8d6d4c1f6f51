"""Speed and memory of the shipped models and the batch job on this machine (2 CPU cores).

    python scripts/bench_speed.py --out docs/speed.json

Measures: ms per 256x256 slice (mr-2d, ct-2d, NLM, BM3D), seconds and peak RSS of the process for a
256^3 volume through mr-3d (after a small warm-up), both ways it runs: its slab network (a volume
with 2 mm slices) and mr-2d along three planes (a 1 mm isotropic volume), FLOPs per voxel of each model (counted from the conv layers), and for `denoise run`:
peak RSS over folders of 10 vs 100 scans and the speedup of --workers 2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from denoise.bench_deploy import run_cli_measured


def conv_flops_per_voxel(net: torch.nn.Module, shape: tuple[int, ...]) -> float:
    """2 x multiply-adds of every conv / transposed conv for one input of ``shape``, per input voxel."""
    total = 0

    def hook(mod, inp, out):
        nonlocal total
        k = int(np.prod(mod.kernel_size)) * mod.in_channels // mod.groups
        if isinstance(mod, (torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)):
            total += 2 * k * mod.out_channels * int(np.prod(inp[0].shape[2:]))
        else:
            total += 2 * k * int(out.numel())
    hooks = [m.register_forward_hook(hook) for m in net.modules()
             if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d))]
    cfg = getattr(net, "config", None)
    channels = cfg.input_channels if cfg is not None else 1
    with torch.no_grad():
        net.predict(torch.zeros(1, channels, *shape))
    for h in hooks:
        h.remove()
    return total / float(np.prod(shape))


def time_it(fn, repeats: int = 20) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    from denoise import denoise_scan, load_model
    from denoise.models import ClassicalDenoiser, bm3d_available
    from denoise.scan import Scan

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=Path("docs/speed.json"))
    p.add_argument("--skip-volume", action="store_true")
    p.add_argument("--skip-batch", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    res: dict[str, object] = {"machine": f"2 CPU cores, torch {torch.__version__}"}
    slice_ = Scan(rng.random((1, 256, 256)).astype(np.float32) * 1000, (1, 1, 1), modality="MR")
    for name in ("mr-2d", "ct-2d", "vae-mr-2d", "sparse-mr-2d"):
        try:
            m = load_model(name, device="cpu")
        except ValueError:
            continue
        res[f"{name}_ms_per_256_slice"] = round(1000 * time_it(lambda m=m: denoise_scan(slice_, m)), 1)
        res[f"{name}_kflop_per_voxel"] = round(conv_flops_per_voxel(m.net, (256, 256)) / 1e3, 1)
    res["nlm_ms_per_256_slice"] = round(1000 * time_it(lambda: denoise_scan(slice_, ClassicalDenoiser("nlm"))), 1)
    if bm3d_available():
        res["bm3d_ms_per_256_slice"] = round(1000 * time_it(lambda: denoise_scan(slice_, ClassicalDenoiser("bm3d")), 1), 1)
    try:
        m3 = load_model("mr-3d", device="cpu")
    except ValueError:
        m3 = None
    if m3 is not None:
        # mr-3d on thick-slice volumes runs its slab network; on near-isotropic ones mr-2d along the
        # three planes (denoise.infer.LearnedDenoiser.plan): both timed, each on a 256^3 volume
        res["mr-3d_slab_kflop_per_voxel"] = round(conv_flops_per_voxel(m3.net, (32, 64, 64)) / 1e3, 1)
        if m3.isotropic is not None:
            res["mr-3d_3planes_kflop_per_voxel"] = round(3 * conv_flops_per_voxel(m3.isotropic.net, (256, 256)) / 1e3, 1)
        if not args.skip_volume:
            vol = rng.random((256, 256, 256)).astype(np.float32) * 1000
            for path, spacing in (("slab", (2.0, 1.0, 1.0)), ("3planes", (1.0, 1.0, 1.0))):
                if path == "3planes" and m3.isotropic is None:
                    continue
                denoise_scan(Scan(vol[:64, :64, :64], spacing, modality="MR"), m3)  # warm-up
                with _PeakRSS() as rss:
                    t = time.perf_counter()
                    denoise_scan(Scan(vol, spacing, modality="MR"), m3)
                    secs = time.perf_counter() - t
                res[f"mr-3d_{path}_s_per_256cube"] = round(secs, 1)
                res[f"mr-3d_{path}_mvox_per_s"] = round(256**3 / secs / 1e6, 2)
                res[f"mr-3d_{path}_256cube_peak_rss_mb"] = rss.peak_mb
            res["mr-3d_256cube_input_mb"] = round(vol.nbytes / 2**20)
    if not args.skip_batch:
        res.update(_batch())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.skip_volume and args.out.exists():  # keep the earlier volume measurement
        old = json.loads(args.out.read_text())
        res = {**{k: v for k, v in old.items() if k.startswith("mr-3d")}, **res}
    args.out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return 0


def _batch() -> dict[str, float]:
    import nibabel as nib

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        for n in (10, 100):
            d = Path(tmp) / f"in{n}"
            d.mkdir()
            for i in range(n):
                nib.save(nib.Nifti1Image(rng.random((96, 96, 16)).astype(np.float32) * 500, np.eye(4)),
                         str(d / f"s{i:03d}_mr.nii.gz"))
            rss, secs = _run_child(["run", "-i", str(d), "-o", str(Path(tmp) / f"out{n}"), "-m", "mr-2d", "--quiet"])
            out[f"run_{n}_scans_peak_rss_mb"] = rss
            out[f"run_{n}_scans_seconds"] = secs
        d = Path(tmp) / "in10"
        _, serial = _run_child(["run", "-i", str(d), "-o", str(Path(tmp) / "s1"), "-m", "mr-2d", "--quiet"])
        _, par = _run_child(["run", "-i", str(d), "-o", str(Path(tmp) / "s2"), "-m", "mr-2d", "--quiet", "--workers", "2"])
        out["workers2_speedup_10_scans"] = round(serial / par, 2)
    return out


class _PeakRSS:
    """Peak resident memory (MB) of this process while the block runs, polled every 50 ms."""

    def __enter__(self):
        import threading

        import psutil

        self._proc, self._stop, self.peak_mb = psutil.Process(), threading.Event(), 0.0
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, round(self._proc.memory_info().rss / 2**20))
            time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _run_child(args: list[str]) -> tuple[float, float]:
    """(peak RSS in MB of the child process tree, polled every 50 ms; wall seconds)."""
    peak, secs, _ = run_cli_measured(args)
    return peak, secs


if __name__ == "__main__":
    sys.exit(main())
