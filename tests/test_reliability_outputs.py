"""Outputs keep what the input promised (issue #23): magnitude inputs stay non-negative, and NIfTI
outputs keep the source's dimensions (trailing singleton axes included)."""

import nibabel as nib
import numpy as np
import pytest
import torch

from denoise.batch import denoise_folder
from denoise.config import ModelConfig
from denoise.infer import LearnedDenoiser, denoise_array
from denoise.io import read_scan, write_scan
from denoise.models import build_model
from denoise.models.base import Denoiser
from denoise.normalize import reference_intensity


class _Undershoot(Denoiser):
    """Returns its input lowered by 0.2 on the model scale (a model overshooting below zero)."""

    name = "undershoot"

    def denoise_batch(self, batch):
        return batch - 0.2


@pytest.fixture
def magnitude(phantom_3d, rng):
    """A non-negative phantom: zeroed background outside the head, Rician-like noise inside."""
    noisy = np.abs(phantom_3d + rng.normal(0, 30, phantom_3d.shape)).astype(np.float32)
    noisy[phantom_3d == 0] = 0.0
    assert noisy.min() == 0 and (noisy == 0).mean() > 0.2
    return noisy


@pytest.fixture
def random_model():
    torch.manual_seed(0)
    net = build_model(ModelConfig(kind="dae", spatial_dims=2, channels=(4, 8)))
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.3)  # untrained: its outputs swing both ways around the input
    return LearnedDenoiser(net.eval(), {"model": {"kind": "dae", "spatial_dims": 2, "channels": [4, 8]}}, device="cpu")


def test_magnitude_input_through_a_model_stays_non_negative(magnitude, random_model):
    out = denoise_array(magnitude, random_model, modality="MR")
    assert out.shape == magnitude.shape and out.min() >= 0
    assert np.ptp(out) > 0  # not a collapsed output


def test_input_with_negatives_can_still_come_out_negative(magnitude, random_model):
    shifted = magnitude - 100.0  # e.g. a difference image: negatives are real values
    out = denoise_array(shifted, random_model, modality="MR")
    assert (out < 0).any()


def test_clip_is_at_zero_only_and_only_for_non_negative_inputs(magnitude):
    den = _Undershoot()
    drop = 0.2 * reference_intensity(magnitude)  # percentile scaling: offset 0, scale = reference
    np.testing.assert_allclose(denoise_array(magnitude, den), np.maximum(magnitude - drop, 0), rtol=1e-5, atol=1e-3)
    signed = magnitude - 50.0
    drop_signed = 0.2 * reference_intensity(signed)
    np.testing.assert_allclose(denoise_array(signed, den), signed - drop_signed, rtol=1e-5, atol=1e-3)


def test_ct_in_hu_is_not_clipped(phantom_3d):
    hu = phantom_3d - 1000.0  # air -1000 HU, tissue about 0
    out = denoise_array(hu, _Undershoot(), modality="CT")
    np.testing.assert_allclose(out, hu - 0.2 * 2000.0, atol=1e-2)  # window [-1000, 1000]: 0.2 = 400 HU


@pytest.mark.parametrize("shape", [(16, 16, 4, 1), (16, 16, 1)])
def test_nifti_singleton_dimensions_survive_a_round_trip(tmp_path, rng, shape):
    data = rng.random(shape).astype(np.float32) * 100
    affine = np.array([[0.8, 0, 0, -5], [0, 0.9, 0, 3], [0, 0, 2.0, 7], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(data, affine), str(tmp_path / "in.nii.gz"))
    scan = read_scan(tmp_path / "in.nii.gz")
    assert scan.array.ndim == len([d for d in shape if d != 1])  # the reader drops the singletons
    out = write_scan(scan.with_array(scan.array + 1), tmp_path / "out.nii.gz")
    back = nib.load(str(out))
    assert back.shape == shape
    np.testing.assert_allclose(back.affine, affine, atol=1e-6)
    np.testing.assert_allclose(back.get_fdata(), data + 1, atol=1e-4)


def test_batch_output_of_a_4d_singleton_nifti_keeps_its_shape(tmp_path, phantom_3d):
    src = tmp_path / "in"
    src.mkdir()
    vol = phantom_3d.T[..., None].copy()  # (x, y, z, 1)
    nib.save(nib.Nifti1Image(vol, np.diag([1.0, 1.0, 2.0, 1.0])), str(src / "vol_mr.nii.gz"))
    s = denoise_folder(src, tmp_path / "out", model="gaussian", device="cpu", progress=False)
    assert s["ok"] == 1 and s["failed"] == 0
    out = nib.load(str(tmp_path / "out" / "vol_mr.nii.gz"))
    assert out.shape == vol.shape
    assert not np.allclose(out.get_fdata(), vol)  # it was denoised, not copied
