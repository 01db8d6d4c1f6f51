"""Three-plane inference of 2D models on near-isotropic volumes, and a 3D checkpoint that hands
such volumes to a 2D model (the shipped mr-3d: slab network on thick slices, mr-2d along three planes)."""

import dataclasses

import numpy as np
import pytest
import torch

from denoise.bench import _method
from denoise.checkpoint import save_checkpoint
from denoise.config import ModelConfig
from denoise.infer import ISOTROPIC_RATIO, MIN_PLANE_SIZE, denoise_array, denoise_scan, load_model
from denoise.models import build_model
from denoise.scan import Scan

FLAT = ModelConfig(spatial_dims=2, channels=(4, 8), context=1, noise_channel=True, shuffle=2)
SLAB = dataclasses.replace(FLAT, spatial_dims=3, slab=True, context=2, depth_levels=1)
MR_NORM = {"kind": "percentile", "low": -1000.0, "high": 1000.0, "percentile": 99.5}


def _save(path, config, seed, **info):
    torch.manual_seed(seed)
    net = build_model(config)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.3)  # random weights: every axis and orientation gives a different output
    return save_checkpoint(path, net.eval(), {"model": dataclasses.asdict(config), "normalization": MR_NORM, **info})


@pytest.fixture
def volume(phantom_3d):
    assert min(phantom_3d.shape) >= MIN_PLANE_SIZE
    # 16^3 around the phantom's centre, shifted below zero in the background so that outputs are not
    # clipped at 0 (non-negative inputs are), which would make each view's clip differ from the mean's
    return np.ascontiguousarray(phantom_3d[:, 4:20, 4:20]) - 100


def test_plan_takes_three_planes_only_on_near_isotropic_volumes_large_enough(tmp_path):
    den = load_model(_save(tmp_path / "flat.pt", FLAT, 0), device="cpu", planes=3)
    n = MIN_PLANE_SIZE
    assert den.plan((n, n, n), (1.0, 1.0, 1.0))[1] == (0, 1, 2)
    assert den.plan((n, n + 9, n), (1.0, 0.9, 0.9))[1] == (0, 1, 2)
    assert den.plan((n, n, n), (ISOTROPIC_RATIO * 1.01, 1.0, 1.0))[1] == (0,)  # thick slices
    assert den.plan((n - 1, n, n), (1.0, 1.0, 1.0))[1] == (0,)  # too few slices for the other planes
    assert den.plan((n, n, n), None)[1] == (0,)  # spacing unknown
    assert load_model(tmp_path / "flat.pt", device="cpu").plan((n, n, n), (1.0, 1.0, 1.0))[1] == (0,)  # default: 1


def test_three_planes_average_the_model_run_along_each_axis(tmp_path, volume):
    path = _save(tmp_path / "flat.pt", FLAT, 0)
    one, three = load_model(path, device="cpu", sigma=0.05), load_model(path, device="cpu", sigma=0.05, planes=3)
    assert three.name.endswith("+3planes") and one.name == "flat"
    views = [np.moveaxis(denoise_array(np.moveaxis(volume, a, 0), one, guard=False), 0, a) for a in range(3)]
    assert not np.allclose(views[0], views[1], atol=1e-3)  # the check below can tell the axes apart
    out = denoise_scan(Scan(volume, (1.0, 1.0, 1.0), modality="MR"), three, guard=False).array
    np.testing.assert_allclose(out, np.mean(views, axis=0), rtol=1e-4, atol=1e-4 * float(np.abs(out).max()))
    thick = denoise_scan(Scan(volume, (3.0, 1.0, 1.0), modality="MR"), three, guard=False).array
    np.testing.assert_allclose(thick, views[0], rtol=1e-4, atol=1e-4 * float(np.abs(out).max()))
    before = volume.copy()
    denoise_array(np.stack([volume, volume]), three, spacing=(1.0, 1.0, 1.0), guard=False)  # (t, z, y, x): each time point
    np.testing.assert_array_equal(volume, before)


def test_a_3d_checkpoint_hands_isotropic_volumes_to_its_isotropic_model(tmp_path, volume):
    flat = _save(tmp_path / "flat.pt", FLAT, 0)
    slab = _save(tmp_path / "slab.pt", SLAB, 1, inference={"isotropic_model": "flat.pt"})  # relative to its folder
    den = load_model(slab, device="cpu", sigma=0.05)
    assert den.isotropic is not None and den.isotropic.sigma == 0.05
    iso, thick = Scan(volume, (1.0, 0.9, 0.9), modality="MR"), Scan(volume, (2.5, 1.0, 1.0), modality="MR")
    np.testing.assert_array_equal(denoise_scan(iso, den, guard=False).array,
                                  denoise_scan(iso, load_model(flat, device="cpu", sigma=0.05, planes=3), guard=False).array)
    own = load_model(slab, device="cpu", sigma=0.05, planes=1)  # its own network everywhere
    assert own.isotropic is None and own.name == "slab+1plane" and own.checkpoint_hash != den.checkpoint_hash
    np.testing.assert_array_equal(denoise_scan(thick, den, guard=False).array, denoise_scan(thick, own, guard=False).array)
    assert not np.allclose(denoise_scan(iso, den, guard=False).array, denoise_scan(iso, own, guard=False).array, atol=1e-3)
    # benchmark variants share the networks and pass sigma/tta on to the isotropic model
    tta = den.variant(sigma=0.07, tta=True)
    assert tta.isotropic.tta and tta.isotropic.sigma == 0.07 and tta.isotropic.net is den.isotropic.net
    assert den.variant(planes=1).isotropic is None and den.variant(planes=1).name == "slab+1plane"
    # the manifest's hash covers the isotropic model's file too
    _save(tmp_path / "flat.pt", FLAT, 2)
    assert load_model(slab, device="cpu").checkpoint_hash != den.checkpoint_hash


def test_bad_plane_settings_are_refused(tmp_path):
    flat = _save(tmp_path / "flat.pt", FLAT, 0)
    with pytest.raises(ValueError, match="planes must be 1 or 3"):
        load_model(flat, device="cpu", planes=2)
    with pytest.raises(ValueError, match="three-plane inference is for 2D models"):
        load_model(_save(tmp_path / "slab.pt", SLAB, 1), device="cpu", planes=3)
    save_checkpoint(tmp_path / "ct.pt", build_model(FLAT).eval(),
                    {"model": dataclasses.asdict(FLAT), "normalization": {"kind": "window", "low": -1000.0, "high": 1000.0}})
    _save(tmp_path / "mixed.pt", SLAB, 1, inference={"isotropic_model": "ct.pt"})
    with pytest.raises(ValueError, match="same normalisation"):
        load_model(tmp_path / "mixed.pt", device="cpu")
    with pytest.raises(ValueError, match="unknown model option"):
        _method("dae:mr-3d:1plane+3planes", "MR", "rician", 0.05, {}, None, None)


def test_shipped_mr3d_runs_mr2d_along_three_planes_on_isotropic_volumes(volume):
    den = load_model("mr-3d", device="cpu")
    assert den.isotropic is not None and den.isotropic.name == "mr-2d"
    assert den.plan(volume.shape, (1.0, 1.0, 1.0))[0] is den.isotropic
    assert den.plan(volume.shape, (2.5, 0.6, 0.6))[0] is den


def test_thick_slices_stored_on_another_axis_are_sliced_along_that_axis(tmp_path, volume):
    flat = load_model(_save(tmp_path / "flat.pt", FLAT, 0), device="cpu", sigma=0.05)
    slab = load_model(_save(tmp_path / "slab.pt", SLAB, 1), device="cpu", sigma=0.05)
    assert flat.plan(volume.shape, (1.0, 1.0, 4.0))[1] == (2,)
    assert flat.plan(volume.shape, (4.0, 1.0, 1.0))[1] == (0,)
    assert flat.plan(volume.shape, (1.0, 1.0, 1.2))[1] == (0,)  # near-isotropic: the stored order
    assert flat.plan(volume.shape, (0.5, 2.0, 2.0))[1] == (0,)  # thin slices of coarse square pixels
    assert flat.plan(volume.shape, (1.0, 2.0, 4.0))[1] == (0,)  # no axis with a square-pixel plane
    for den in (flat, slab):  # a sagittal series with 4 mm slices stored last = the same series stored first
        stored_last = denoise_scan(Scan(volume, (1.0, 1.0, 4.0), modality="MR"), den, guard=False).array
        stored_first = denoise_scan(Scan(np.moveaxis(volume, 2, 0), (4.0, 1.0, 1.0), modality="MR"), den, guard=False).array
        np.testing.assert_allclose(stored_last, np.moveaxis(stored_first, 0, 2), rtol=1e-5,
                                   atol=1e-5 * float(np.abs(stored_first).max()))
        assert not np.allclose(stored_last, denoise_scan(Scan(volume, (1.0, 1.0, 1.0), modality="MR"), den, guard=False).array,
                               atol=1e-3)
