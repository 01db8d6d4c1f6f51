"""Heavier checks of the shipped models on held-out real data (marked ``slow``: ``pytest -m slow``;
they need ../shared/data). They guard the benchmark's headline claims against a regression in a
retrained model, a recipe or the inference path; the full numbers are docs/benchmarks.md's."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED

from denoise.bench_cases import T1_FILE, t1_slabs
from denoise.infer import denoise_scan, load_model
from denoise.metrics import data_range_for, foreground_mask, psnr
from denoise.models import ClassicalDenoiser
from denoise.noise import add_noise

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not (SHARED / T1_FILE).exists(), reason="../shared/data not available")]


@pytest.mark.parametrize("level", [0.05, 0.09])
def test_mr_2d_beats_nlm_with_the_true_sigma_on_the_held_out_t1(level):
    """On the held-out T1 slabs at Rician 5% / 9%, mr-2d (blind) is above the noisy input and above
    NLM given the true noise level, on the foreground PSNR with the package's data range."""
    model = load_model("mr-2d")
    gains = []
    for k, clean in enumerate(t1_slabs(SHARED)):
        noisy = add_noise(clean, f"rician:{level}", seed=k)
        rng, mask = data_range_for(clean.array, "MR"), foreground_mask(clean.array)
        score = {name: psnr(clean.array, out.array, data_range=rng, mask=mask) for name, out in (
            ("noisy", noisy), ("mr-2d", denoise_scan(noisy, model)),
            ("nlm", denoise_scan(noisy, ClassicalDenoiser("nlm", sigma=level, rician=True))))}
        assert score["mr-2d"] > score["noisy"] + 3
        gains.append(score["mr-2d"] - score["nlm"])
    assert np.mean(gains) > 0.5, gains
