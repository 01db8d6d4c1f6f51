"""Where a CPU training step of the mr-2d recipe goes (the figures in docs/design.md's data bullet).

    python scripts/bench_train_step.py histogram   # data vs compute per step, NumpyHistogramShift vs MONAI's path
    python scripts/bench_train_step.py workers     # steps/s with 0-2 DataLoader workers and 1-2 torch threads
    python scripts/bench_train_step.py lowdose     # ct-2d's preparation: low-dose noise fields, 1 vs all threads

The mr-2d recipe as scripts/train_all.sh runs it (two neighbouring slices each side, batch 32,
contrast and coarse augmentation, bfloat16 autocast), on the recipe's training volumes in
../shared/data. A timing, not a test: run it on an otherwise idle machine. ``lowdose`` times what a ct-2d run does
before its first step: the full-dose noise fields of its volumes (`denoise.train.prepare_volumes`).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import torch

from denoise.config import TrainConfig
from denoise.data import NumpyHistogramShift, PatchSampler, patch_batches
from denoise.models import build_model
from denoise.recipes import RECIPES, load_training_scans
from denoise.train import prepare_volumes

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _setup():
    recipe = RECIPES["mr-2d"]
    model_cfg = recipe["model"]
    train_cfg = TrainConfig(**recipe["train"])
    vols, _ = prepare_volumes(load_training_scans(DATA, recipe["files"]), train_cfg, 0)
    sampler = PatchSampler(vols, noise=train_cfg.noise, spatial_dims=2, patch_size=train_cfg.patch_size, seed=0,
                           context=model_cfg.context, noise_channel=model_cfg.noise_channel,
                           contrast_augment=train_cfg.contrast_augment, coarse_augment=train_cfg.coarse_augment)
    model = build_model(model_cfg)
    return model, torch.optim.AdamW(model.parameters(), train_cfg.lr), sampler, train_cfg


def _step(model, opt, x, y, cfg) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model.training_loss(x, y, cfg)
    opt.zero_grad()
    loss.backward()
    opt.step()


def histogram() -> None:
    from monai.transforms import RandHistogramShift

    torch.set_num_threads(2)
    fast = NumpyHistogramShift.__call__
    for label in ["numpy", "monai", "numpy", "monai"]:
        NumpyHistogramShift.__call__ = fast if label == "numpy" else RandHistogramShift.__call__
        model, opt, sampler, cfg = _setup()
        t_data = t_step = 0.0
        for i in range(110):
            t0 = time.perf_counter()
            x, y = (torch.as_tensor(a) for a in sampler.batch(32))
            t1 = time.perf_counter()
            _step(model, opt, x, y, cfg)
            if i >= 10:
                t_data, t_step = t_data + t1 - t0, t_step + time.perf_counter() - t1
        print(f"{label}: data {t_data * 10:.0f} ms/batch, compute {t_step * 10:.0f} ms/step, "
              f"{100 / (t_data + t_step):.2f} steps/s", flush=True)


def workers(num_workers: int, threads: int) -> None:
    torch.set_num_threads(threads)
    model, opt, sampler, cfg = _setup()
    batches = patch_batches(sampler, 32, num_workers=num_workers)
    for i in range(160):
        if i == 20:
            t = time.perf_counter()
        _step(model, opt, *next(batches), cfg)
    print(f"workers {num_workers} threads {threads}: {140 / (time.perf_counter() - t):.2f} steps/s", flush=True)


def lowdose() -> None:
    import os

    recipe = RECIPES["ct-2d"]
    scans = load_training_scans(DATA, recipe["files"], halves=True, pseudo=recipe["pseudo_ct"])
    cfg = TrainConfig(**recipe["train"])
    cores = len(os.sched_getaffinity(0))
    for n in (1, cores):
        torch.set_num_threads(n)  # _lowdose starts as many worker threads as torch may use
        t = time.perf_counter()
        prepare_volumes(scans, cfg, 0)
        print(f"low-dose noise fields, {n} thread(s): {time.perf_counter() - t:.0f} s", flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["histogram"]:
        histogram()
    elif sys.argv[1:] == ["workers"]:
        for w, n in [(0, 2), (1, 2), (1, 1), (2, 1)]:  # one process each: a fresh thread pool and loader
            subprocess.run([sys.executable, __file__, "workers", str(w), str(n)], check=True)
    elif sys.argv[1:] == ["lowdose"]:
        lowdose()
    elif len(sys.argv) == 4 and sys.argv[1] == "workers":
        workers(int(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit(__doc__)
