"""`denoise export`: ONNX / TorchScript networks plus their inference spec, run back through
onnxruntime with the torch path's pre- and post-processing."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from denoise import load_model
from denoise.checkpoint import load_checkpoint, save_checkpoint
from denoise.cli import main
from denoise.config import ModelConfig
from denoise.export import EXPORT_FILE, export_model, input_channels
from denoise.infer import denoise_array, denoise_scan
from denoise.io import read_scan
from denoise.models import build_model
from denoise.pretrained import PRETRAINED_DIR

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

SLAB = ModelConfig(spatial_dims=3, channels=(4, 8, 16), context=1, noise_channel=True, shuffle=2, slab=True,
                   depth_levels=2, tail=4)
SAMPLES = PRETRAINED_DIR.parents[1] / "sample_data"


def _random_checkpoint(path, cfg, norm=None):
    torch.manual_seed(0)
    net = build_model(cfg)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.2)
    return save_checkpoint(path, net, {"name": path.stem, "model": dataclasses.asdict(cfg),
                                       "normalization": norm or {"kind": "percentile"}, "train": {"patch_size": 32}})


@pytest.fixture(scope="module")
def mr2d_export(tmp_path_factory):
    return export_model("mr-2d", tmp_path_factory.mktemp("exp") / "mr-2d").parent


@pytest.fixture(scope="module")
def slab_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("slab")
    ckpt = _random_checkpoint(root / "slab.pt", SLAB)
    return ckpt, export_model(ckpt, root / "onnx").parent


def test_onnx_matches_torch_on_sample_scans(mr2d_export):
    """The exported mr-2d on real sample scans (DICOM DWI b0, NIfTI T1 slab) equals the torch path:
    maximum difference below 1e-5 of the scan's intensity scale."""
    onnx, ref = load_model(mr2d_export, device="cpu"), load_model("mr-2d", device="cpu")
    for path in (SAMPLES / "mr_dwi_b0_dicom", SAMPLES / "mr_t1_brain_slab.nii.gz"):
        scan = read_scan(path)
        a, b = denoise_scan(scan, onnx).array, denoise_scan(scan, ref).array
        scale = float(np.percentile(np.abs(scan.array), 99.5))
        assert a.shape == b.shape == scan.array.shape
        assert np.abs(a - b).max() / scale < 1e-5
        assert np.abs(b - scan.array).max() / scale > 1e-3  # the model did change the scan


def test_dynamic_shapes_any_size_any_slices(slab_export, mr2d_export):
    """Any in-plane size (odd, not multiples of the divisor), any number of slices, down to one."""
    ckpt, folder = slab_export
    onnx, ref = load_model(folder, device="cpu", planes=1), load_model(ckpt, device="cpu", planes=1)
    onnx2, ref2 = load_model(mr2d_export, device="cpu"), load_model("mr-2d", device="cpu")
    rng = np.random.default_rng(1)
    for shape in [(1, 37, 41), (7, 50, 29), (13, 64, 64), (33, 30)]:
        x = rng.gamma(4.0, 25.0, shape).astype(np.float32)
        for a, b in ((onnx, ref), (onnx2, ref2)):
            ya, yb = denoise_array(x, a), denoise_array(x, b)
            assert np.abs(ya - yb).max() / x.max() < 1e-5, (shape, a.name)


def test_spec_states_what_inference_needs(mr2d_export):
    spec = json.loads((mr2d_export / EXPORT_FILE).read_text())
    _, info, _ = load_checkpoint(PRETRAINED_DIR / "mr-2d.pt")
    m = info["model"]
    pre = spec["preprocessing"]
    assert spec["checkpoint"] == info
    assert len(spec["network"]["input"]["channels"]) == input_channels(m) == 1 + 2 * m["context"] + 1
    assert pre["context"]["slices_each_side"] == m["context"]
    assert pre["noise_channel"]["present"] and str(info["train"]["patch_size"]) in pre["noise_channel"]["tiles"]
    assert pre["normalization"]["kind"] == info["normalization"]["kind"]
    assert pre["normalization"]["percentile"] == info["normalization"]["percentile"]
    import hashlib

    digest = hashlib.sha256((mr2d_export / spec["network"]["file"]).read_bytes()).hexdigest()
    assert spec["network"]["sha256"] == digest
    assert (mr2d_export / "MODEL_CARD.md").read_text() == (PRETRAINED_DIR / "mr-2d.md").read_text()
    assert "research use" in spec["research_use"].lower()


def test_ct_window_and_passthrough_survive_export(tmp_path):
    """A CT model's window normalisation travels in the spec: values outside the model range
    (out-of-field padding) come back exactly, as on the torch path."""
    cfg = ModelConfig(spatial_dims=2, channels=(4, 8), context=0)
    ckpt = _random_checkpoint(tmp_path / "ct.pt", cfg, {"kind": "window", "low": -1000.0, "high": 1000.0})
    folder = export_model(ckpt, tmp_path / "ct").parent
    spec = json.loads((folder / EXPORT_FILE).read_text())
    assert spec["preprocessing"]["normalization"]["offset"] == -1000.0
    assert "Hounsfield" in spec["preprocessing"]["units"]
    x = np.random.default_rng(2).normal(0, 30, (3, 40, 40)).astype(np.float32)
    x[:, :5] = -3024.0
    a = denoise_array(x, load_model(folder, device="cpu"), modality="CT")
    b = denoise_array(x, load_model(ckpt, device="cpu"), modality="CT")
    assert np.array_equal(a[:, :5], x[:, :5])
    assert np.abs(a - b).max() < 1e-3


def test_a_network_path_outside_the_folder_is_refused(slab_export, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(slab_export[1], folder)
    spec = json.loads((folder / EXPORT_FILE).read_text())
    spec["network"]["file"] = "../elsewhere.onnx"
    (folder / EXPORT_FILE).write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="file name inside the folder"):
        load_model(folder, device="cpu")


def test_changed_network_file_is_refused(slab_export, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(slab_export[1], folder)
    data = bytearray((folder / "network.onnx").read_bytes())
    data[-10] ^= 0xFF
    (folder / "network.onnx").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256"):
        load_model(folder, device="cpu")


def test_torchscript_export_matches_and_is_not_loaded_by_the_toolkit(slab_export, tmp_path):
    ckpt, _ = slab_export
    folder = export_model(ckpt, tmp_path / "ts", fmt="torchscript").parent
    net, _, _ = load_checkpoint(ckpt)
    scripted = torch.jit.load(str(folder / "network.ts"))
    for shape in [(1, 2, 5, 37, 41), (2, 2, 9, 64, 48)]:
        x = torch.rand(*shape)
        with torch.no_grad():
            assert torch.allclose(scripted(x), net.predict(x), atol=1e-5)
    with pytest.raises(ValueError, match="ONNX exports only"):
        load_model(folder, device="cpu")


def test_cli_export_refuses_non_empty_folder_and_leaves_nothing_on_failure(tmp_path, monkeypatch, capsys):
    cfg = ModelConfig(spatial_dims=2, channels=(4, 8))
    ckpt = _random_checkpoint(tmp_path / "m.pt", cfg)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("x")
    assert main(["export", "-m", str(ckpt), "-o", str(tmp_path / "busy")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "busy" / "keep.txt").read_text() == "x"

    import denoise.export as ex

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ex, "_write_network", boom)
    with pytest.raises(RuntimeError):
        export_model(ckpt, tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "m.pt"]  # no folder, no temporary
    monkeypatch.undo()
    # --overwrite replaces an earlier export, never another folder
    assert main(["export", "-m", str(ckpt), "-o", str(tmp_path / "busy"), "--overwrite"]) == 2
    assert "not an exported model folder" in capsys.readouterr().err and (tmp_path / "busy" / "keep.txt").exists()
    assert main(["export", "-m", str(ckpt), "-o", str(tmp_path / "exp")]) == 0
    (tmp_path / "exp" / "stale.txt").write_text("x")
    assert main(["export", "-m", str(ckpt), "-o", str(tmp_path / "exp"), "--overwrite"]) == 0
    assert not (tmp_path / "exp" / "stale.txt").exists() and (tmp_path / "exp" / EXPORT_FILE).is_file()


def test_run_with_an_exported_folder(mr2d_export, tmp_path):
    """`denoise run -m DIR` writes what `run -m mr-2d` writes (to 1e-5 of the scale), the
    manifest tells the runtimes apart, and --continue reuses the exported model's rows."""
    src = tmp_path / "in"
    shutil.copytree(SAMPLES / "mr_dwi_b0_dicom", src / "dwi")
    assert main(["run", "-i", str(src), "-o", str(tmp_path / "a"), "-m", str(mr2d_export), "--quiet"]) == 0
    assert main(["run", "-i", str(src), "-o", str(tmp_path / "b"), "-m", "mr-2d", "--quiet"]) == 0
    import csv

    rows = {k: list(csv.DictReader(open(tmp_path / k / "manifest.csv"))) for k in "ab"}
    assert rows["a"][0]["status"] == rows["b"][0]["status"] == "ok"
    assert rows["a"][0]["model"] == "mr-2d.onnx" and rows["b"][0]["model"] == "mr-2d"
    assert main(["run", "-i", str(src), "-o", str(tmp_path / "a"), "-m", str(mr2d_export), "--continue", "--quiet"]) == 0
    again = list(csv.DictReader(open(tmp_path / "a" / "manifest.csv")))
    assert again[0]["output_stamp"] == rows["a"][0]["output_stamp"]  # reused, not rewritten
    a = read_scan(tmp_path / "a" / rows["a"][0]["output"]).array
    b = read_scan(tmp_path / "b" / rows["b"][0]["output"]).array
    assert np.abs(a - b).max() <= 1.0 + 1e-5 * float(np.abs(b).max())  # DICOM stores integers: rounding only


@pytest.mark.parametrize("kind", ["vae", "sparse", "linear"])
def test_every_family_exports(kind, tmp_path):
    """The other autoencoders export too (the VAE as its deterministic posterior-mean output)."""
    cfg = ModelConfig(kind=kind, spatial_dims=2, channels=(4, 8), latent_channels=4, patch_size=8, n_components=4)
    ckpt = _random_checkpoint(tmp_path / f"{kind}.pt", cfg)
    folder = export_model(ckpt, tmp_path / kind).parent
    x = np.random.default_rng(3).gamma(4.0, 25.0, (3, 45, 37)).astype(np.float32)
    a = denoise_array(x, load_model(folder, device="cpu"))
    b = denoise_array(x, load_model(ckpt, device="cpu"))
    assert np.abs(a - b).max() / x.max() < 1e-5
