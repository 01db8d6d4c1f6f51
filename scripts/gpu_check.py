"""Checks that need a CUDA GPU, which CI never has: run it by hand where one is present.

    python scripts/gpu_check.py [--out gpu_check.json]

1. `resolve_device("auto")` picks the GPU.
2. Every shipped model gives the same result on the GPU as on the CPU (foreground PSNR on a noisy
   sample scan within 0.05 dB; cuDNN may use TF32, so not bit for bit).
3. Training on the GPU with mixed precision (``TrainConfig.amp``, the default) raises validation
   PSNR over the first epoch's for every model kind (2D dae/vae/sparse/linear, 3D dae), with finite losses, and with the
   batches drawn by DataLoader workers (``num_workers``); the checkpoint made on the GPU loads on
   the CPU and predicts what it predicts on the GPU.
4. Speed on the GPU: ms per 256x256 slice (mr-2d, ct-2d) and seconds per 256^3 volume (mr-3d).
5. `denoise run --device cuda` over sample_data/ writes every scan.

Prints one JSON object and exits non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from denoise.config import ModelConfig, TrainConfig
from denoise.infer import denoise_scan, load_model, resolve_device
from denoise.io import read_scan
from denoise.metrics import foreground_mask, psnr
from denoise.noise import add_noise
from denoise.normalize import reference_intensity
from denoise.scan import Scan
from denoise.train import fit

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"


def _phantom(n: int = 24, size: int = 48) -> np.ndarray:
    z, y, x = np.mgrid[:n, :size, :size].astype(np.float32)
    vol = 100 * ((x - size / 2) ** 2 + (y - size / 2) ** 2 < (size / 3) ** 2)
    vol += 60 * (((x - size / 3) ** 2 + (y - size / 2) ** 2 + (z - n / 2) ** 2) < (size / 8) ** 2)
    return vol.astype(np.float32) + 10


def check_parity(failures: list[str]) -> dict:
    mr = read_scan(SAMPLE / "mr_t1_brain_slab.nii.gz")
    noisy = add_noise(mr, "rician:0.05", seed=0)
    mask, rng = foreground_mask(mr.array), reference_intensity(mr.array)
    out = {}
    for pt in sorted((ROOT / "denoise" / "pretrained").glob("*.pt")):
        if "ct" in pt.stem:
            continue  # MR sample; ct-2d runs in check_speed and the CLI run
        res = {}
        for dev in ("cpu", "cuda"):
            den = denoise_scan(noisy, load_model(pt.stem, device=dev))
            res[dev] = den.array
        p_cpu = psnr(mr.array, res["cpu"], data_range=rng, mask=mask)
        p_gpu = psnr(mr.array, res["cuda"], data_range=rng, mask=mask)
        diff = float(np.abs(res["cpu"] - res["cuda"]).max() / rng)
        out[pt.stem] = {"psnr_cpu": round(p_cpu, 3), "psnr_cuda": round(p_gpu, 3), "max_abs_diff_of_range": diff}
        if abs(p_cpu - p_gpu) > 0.05:
            failures.append(f"parity {pt.stem}: {p_cpu:.3f} dB on CPU vs {p_gpu:.3f} on GPU")
    return out


def check_training(failures: list[str]) -> dict:
    scans = [Scan(_phantom() * f, (2, 1, 1), modality="MR") for f in (1.0, 0.8, 1.2)]
    out = {}
    dae2d = ModelConfig(kind="dae", spatial_dims=2, channels=(8, 16))
    cases = [  # (name, model, DataLoader workers)
        ("dae-2d", dae2d, 0),
        ("dae-2d-workers", dae2d, 2),
        ("vae-2d", ModelConfig(kind="vae", spatial_dims=2, channels=(8, 16), latent_channels=8, residual=False), 0),
        ("sparse-2d", ModelConfig(kind="sparse", spatial_dims=2, channels=(8, 16), latent_channels=8, residual=False), 0),
        ("linear-2d", ModelConfig(kind="linear", spatial_dims=2), 0),
        ("dae-3d", ModelConfig(kind="dae", spatial_dims=3, channels=(8, 16)), 0),
    ]
    for name, mcfg, workers in cases:
        tcfg = TrainConfig(noise="gaussian:0.1", patch_size=16, batch_size=8, steps_per_epoch=30, epochs=5, lr=3e-3,
                           val_patches=8, device="cuda", amp=True, early_stop_patience=10, val_scans=(1,),
                           num_workers=workers)
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            hist = fit(mcfg, tcfg, scans, d, name=name, progress=False)
            seconds = time.perf_counter() - t
            finite = all(np.isfinite(h["loss"]) for h in hist)
            best = max(h["val_psnr"] for h in hist)
            gain = best - hist[0]["val_psnr"]  # learning on the GPU (the short non-residual runs stay below the noisy input)
            x = torch.rand(1, mcfg.input_channels, *([16] * mcfg.spatial_dims))
            with torch.no_grad():
                on_gpu = load_model(Path(d) / "best.pt", device="cuda").net.predict(x.cuda()).float().cpu()
                on_cpu = load_model(Path(d) / "best.pt", device="cpu").net.predict(x).float()
            same = float((on_gpu - on_cpu).abs().max())
        out[name] = {"val_psnr_gain_db": round(gain, 2), "losses_finite": finite, "seconds": round(seconds, 1),
                     "cpu_vs_gpu_max_abs_diff": same}
        if not finite or gain <= 0 or same > 1e-2:
            failures.append(f"training {name}: finite={finite} gain={gain:.2f} dB cpu/gpu diff={same:.2g}")
    return out


def check_speed() -> dict:
    out = {}
    rng = np.random.default_rng(0)
    vol2d = Scan(rng.random((64, 256, 256)).astype(np.float32) * 1000, (1, 1, 1), modality="MR")
    for name in ("mr-2d", "ct-2d"):
        m = load_model(name, device="cuda")
        denoise_scan(vol2d, m)  # warm-up (cuDNN autotuning, allocations)
        torch.cuda.synchronize()
        t = time.perf_counter()
        denoise_scan(vol2d, m)
        torch.cuda.synchronize()
        out[f"{name}_ms_per_256_slice_in_a_64_slice_volume"] = round(1000 * (time.perf_counter() - t) / 64, 2)
    m = load_model("mr-3d", device="cuda")
    cube = rng.random((256, 256, 256)).astype(np.float32) * 1000
    # mr-3d's two paths: its slab network (2 mm slices) and mr-2d along three planes (isotropic)
    for path, spacing in (("slab", (2.0, 1.0, 1.0)), ("3planes", (1.0, 1.0, 1.0))):
        denoise_scan(Scan(vol2d.array[:40], spacing, modality="MR"), m)  # warm-up
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        denoise_scan(Scan(cube, spacing, modality="MR"), m)
        torch.cuda.synchronize()
        out[f"mr-3d_{path}_s_per_256cube"] = round(time.perf_counter() - t, 2)
        out[f"mr-3d_{path}_256cube_peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return out


def check_cli(failures: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run([sys.executable, "-m", "denoise.cli", "run", "-i", str(SAMPLE), "-o", d, "--device", "cuda",
                            "--quiet"], capture_output=True, text=True)
        manifest = Path(d) / "manifest.csv"
        rows = list(csv.DictReader(manifest.open())) if manifest.exists() else []
    statuses = {row["input"]: row["status"] for row in rows}
    if r.returncode != 0 or not rows or "failed" in statuses.values():
        failures.append(f"denoise run --device cuda exited {r.returncode}, statuses {statuses}: {r.stderr[-500:]}")
    return {"returncode": r.returncode, "statuses": statuses, "stderr_tail": r.stderr[-300:]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, help="also write the JSON here")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA GPU here: nothing to check", file=sys.stderr)
        return 2
    failures: list[str] = []
    res: dict = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
                 "auto_device": str(resolve_device("auto"))}
    if res["auto_device"] != "cuda":
        failures.append(f"resolve_device('auto') gave {res['auto_device']}")
    for name, fn in [("parity", lambda: check_parity(failures)), ("training", lambda: check_training(failures)),
                     ("speed", check_speed), ("cli", lambda: check_cli(failures))]:
        try:
            res[name] = fn()
        except Exception as exc:  # report every check, then fail
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
    res["failures"] = failures
    text = json.dumps(res, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
