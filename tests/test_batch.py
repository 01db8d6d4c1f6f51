"""denoise run / denoise_folder: discovery, mirrored outputs, manifest, resume, kill safety, Dask."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from conftest import tree_hash, write_dicom_slices
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import generate_uid

from denoise.batch import UsageError, denoise_folder
from denoise.checkpoint import save_checkpoint
from denoise.cli import main
from denoise.config import ModelConfig
from denoise.io import read_scan
from denoise.models import build_model


@pytest.fixture
def tiny_model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    net = build_model(ModelConfig(kind="dae", spatial_dims=2, channels=(4, 8)))
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, net, {"name": "tiny", "model": {"kind": "dae", "spatial_dims": 2, "channels": [4, 8]},
                                "normalization": {"kind": "percentile"}})
    return path


@pytest.fixture
def study(tmp_path, phantom_3d) -> Path:
    root = tmp_path / "in"
    write_dicom_slices(root / "pat" / "mixed", phantom_3d[:6], names=[f"a{k}.dcm" for k in range(6)])
    write_dicom_slices(root / "pat" / "mixed", phantom_3d[:4] * 0.5, names=[f"b{k}.dcm" for k in range(4)])
    nib.save(nib.Nifti1Image(phantom_3d.T.copy(), np.diag([1, 1, 2, 1.0])), str(root / "vol.nii.gz"))
    sr = Dataset()
    sr.file_meta = FileMetaDataset()
    sr.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    sr.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    sr.SOPInstanceUID = generate_uid()
    sr.Modality = "SR"
    sr.save_as(str(root / "pat" / "report.dcm"), enforce_file_format=True)
    good = (root / "pat" / "mixed" / "a0.dcm").read_bytes()
    (root / "pat" / "broken.dcm").write_bytes(good[:400])
    (root / "notes.txt").write_text("hello")
    return root


def _manifest(out: Path) -> dict[str, dict]:
    with open(out / "manifest.csv", newline="") as fh:
        return {r["input"]: r for r in csv.DictReader(fh)}


def test_run_mixed_folder_outputs_and_manifest(study, tmp_path, tiny_model):
    before = tree_hash(study)
    out = tmp_path / "out"
    code = main(["run", "-i", str(study), "-o", str(out), "-m", str(tiny_model), "--quiet", "--device", "cpu"])
    assert code == 1  # the corrupt DICOM failed
    rows = _manifest(out)
    status = {k: v["status"] for k, v in rows.items()}
    assert status["vol.nii.gz"] == "ok" and status["notes.txt"] == "skipped"
    assert status["pat/report.dcm"] == "skipped" and "non-image" in rows["pat/report.dcm"]["reason"]
    assert status["pat/broken.dcm"] == "failed" and rows["pat/broken.dcm"]["reason"]
    series = [k for k in rows if k.startswith("pat/mixed/")]
    assert len(series) == 2 and all(status[k] == "ok" for k in series)
    assert (out / "vol.nii.gz").exists()
    np.testing.assert_allclose(nib.load(str(out / "vol.nii.gz")).affine, np.diag([1, 1, 2, 1.0]))
    for k in series:
        d = read_scan(out / k)
        assert d.meta["format"] == "dicom"
        assert rows[k]["model"] == "tiny" and rows[k]["model_hash"] and rows[k]["sigma_before"]
    text = (out / "manifest.csv").read_text()
    assert "Doe" not in text and "PID12345" not in text
    assert tree_hash(study) == before  # inputs never modified
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]


def test_continue_rewrites_nothing(study, tmp_path, tiny_model):
    out = tmp_path / "out"
    denoise_folder(study, out, model=str(tiny_model), device="cpu", progress=False)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "manifest.csv"
              and p.name != "summary.json"}
    time.sleep(0.05)
    s = denoise_folder(study, out, model=str(tiny_model), device="cpu", resume=True, progress=False)
    assert s["processed"] == 0 and s["reused"] == 3
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}


def test_changed_input_is_redone_with_continue(study, tmp_path, tiny_model):
    out = tmp_path / "out"
    denoise_folder(study, out, model=str(tiny_model), device="cpu", progress=False)
    img = nib.load(str(study / "vol.nii.gz"))
    nib.save(nib.Nifti1Image(img.get_fdata() * 2, img.affine), str(study / "vol.nii.gz"))
    s = denoise_folder(study, out, model=str(tiny_model), device="cpu", resume=True, progress=False)
    assert s["processed"] == 1


def test_output_inside_input_is_refused(study, tiny_model):
    before = tree_hash(study)
    assert main(["run", "-i", str(study), "-o", str(study / "sub"), "-m", str(tiny_model)]) == 2
    assert main(["run", "-i", str(study), "-o", str(study)]) == 2
    assert tree_hash(study) == before
    with pytest.raises(UsageError):
        denoise_folder(study, study / "x")


def test_killed_run_leaves_no_partial_output_and_continue_completes(tmp_path, phantom_3d, tiny_model):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(6):
        nib.save(nib.Nifti1Image(np.tile(phantom_3d.T, (6, 6, 4)) * (1 + i / 10), np.eye(4)), str(src / f"v{i}.nii.gz"))
    ref_out = tmp_path / "ref"
    denoise_folder(src, ref_out, model=str(tiny_model), device="cpu", progress=False)
    out = tmp_path / "out"
    cmd = [sys.executable, "-c", "import sys; from denoise.cli import main; sys.exit(main(sys.argv[1:]))",
           "run", "-i", str(src), "-o", str(out), "-m", str(tiny_model), "--quiet", "--device", "cpu"]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("v*.nii.gz"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = list(out.glob("v*.nii.gz"))
    for p in done:  # whatever exists is complete
        np.testing.assert_array_equal(nib.load(str(p)).get_fdata(), nib.load(str(ref_out / p.name)).get_fdata())
    assert len(done) < 6, "the run finished before it was killed; make the inputs bigger"
    assert main(["run", "-i", str(src), "-o", str(out), "-m", str(tiny_model), "--continue", "--quiet",
                 "--device", "cpu"]) == 0
    for i in range(6):
        np.testing.assert_array_equal(nib.load(str(out / f"v{i}.nii.gz")).get_fdata(),
                                      nib.load(str(ref_out / f"v{i}.nii.gz")).get_fdata())
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]


def test_a_new_run_removes_what_a_killed_one_left_half_written_and_nothing_else(study, tmp_path, tiny_model):
    out = tmp_path / "out"
    denoise_folder(study, out, model=str(tiny_model), device="cpu", progress=False)
    series = next(p for p in (out / "pat").rglob("*") if p.is_dir() and list(p.glob("*.dcm")))
    left = [out / ".manifest.csv.0a1b2c3d.tmp", out / ".summary.json.0a1b2c3d.tmp",
            out / ".vol.nii.gz.0a1b2c3d.tmp.nii.gz", series.with_name(f".{series.name}.0a1b2c3d.old")]
    for f in left[:3]:
        f.write_text("half")
    left[3].mkdir()
    (left[3] / "x.dcm").write_bytes(b"half")
    tmp_series = series.with_name(f".{series.name}.0a1b2c3d.tmp")
    tmp_series.mkdir()
    (tmp_series / "y.dcm").write_bytes(b"half")
    others = [out / ".vol.nii.gz.notes", out / ".other.nii.gz.0a1b2c3d.tmp.nii.gz", out / ".manifest.part1.csv.0a1b2c3d.tmp"]
    for f in others:  # not temporaries of this run's outputs: a user's file, another output, another part's
        f.write_text("keep")
    before = (out / "vol.nii.gz").read_bytes()
    s = denoise_folder(study, out, model=str(tiny_model), device="cpu", resume=True, progress=False)
    assert s["processed"] == 0 and s["ok"] == 3
    assert not any(f.exists() for f in [*left, tmp_series])
    assert all(f.read_text() == "keep" for f in others)
    assert (out / "vol.nii.gz").read_bytes() == before


def test_every_temporary_name_the_writers_use_is_recognised_as_a_leftover(tmp_path):
    """The writers (temp_sibling) and the sweep (is_leftover) share one naming rule, so no temporary
    of a killed run can escape the sweep, and nothing else is caught by it."""
    from denoise.atomic import is_leftover, temp_sibling

    dest = tmp_path / "vol.nii.gz"
    for name in (temp_sibling(dest), temp_sibling(dest, ext=".nii.gz"), temp_sibling(dest, "old")):
        assert name.parent == dest.parent and name.name.startswith(".") and is_leftover(name, dest)
    assert temp_sibling(dest).name != temp_sibling(dest).name  # concurrent writers never collide
    for other in (dest, tmp_path / ".vol.nii.gz.notes", tmp_path / ".vol.nii.gz.zzzzzzzz.tmp",
                  temp_sibling(tmp_path / "vol.nii"), temp_sibling(tmp_path / "sub" / "vol.nii.gz")):
        assert not is_leftover(other, dest)


def test_reference_adds_metrics_and_nifti_format(study, tmp_path, tiny_model):
    out = tmp_path / "out"
    denoise_folder(study, out, model=str(tiny_model), device="cpu", reference=study, fmt="nifti", noise_map=True,
                   progress=False)
    rows = _manifest(out)
    assert float(rows["vol.nii.gz"]["psnr_fg"]) > 10 and 0 < float(rows["vol.nii.gz"]["ssim_fg"]) <= 1
    series = [k for k in rows if k.startswith("pat/mixed/")]
    assert all(rows[k]["output"].endswith(".nii.gz") and (out / rows[k]["output"]).exists() for k in series)
    assert (out / "vol_noise.nii.gz").exists()


def test_sharding_splits_the_work(study, tmp_path, tiny_model):
    a = denoise_folder(study, tmp_path / "o", model=str(tiny_model), device="cpu", num_parts=2, part_id=0, progress=False)
    b = denoise_folder(study, tmp_path / "o", model=str(tiny_model), device="cpu", num_parts=2, part_id=1, progress=False)
    assert a["processed"] + b["processed"] == 3 and a["processed"] and b["processed"]


@pytest.mark.timeout(300)
def test_dask_local_cluster_equals_serial(study, tmp_path, tiny_model):
    pytest.importorskip("dask.distributed")
    denoise_folder(study, tmp_path / "serial", model=str(tiny_model), device="cpu", progress=False)
    s = denoise_folder(study, tmp_path / "dask", model=str(tiny_model), device="cpu", workers=2, progress=False)
    assert s["ok"] == 3
    np.testing.assert_array_equal(nib.load(str(tmp_path / "serial" / "vol.nii.gz")).get_fdata(),
                                  nib.load(str(tmp_path / "dask" / "vol.nii.gz")).get_fdata())
    ser, das = _manifest(tmp_path / "serial"), _manifest(tmp_path / "dask")
    assert {k: v["status"] for k, v in ser.items()} == {k: v["status"] for k, v in das.items()}
    for k in ser:
        if ser[k]["status"] == "ok" and ser[k]["kind"] == "dicom":
            np.testing.assert_allclose(read_scan(tmp_path / "serial" / k).array, read_scan(tmp_path / "dask" / k).array)


def test_classical_method_as_model_denoises_the_folder(tmp_path, phantom_3d):
    """`denoise run -m nlm`: classical baselines run through the same batch job (e.g. for CT)."""
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    noisy = phantom_3d + rng.normal(0, 30, phantom_3d.shape).astype(np.float32)
    nib.save(nib.Nifti1Image(noisy.T.copy(), np.eye(4)), str(src / "v_mr.nii.gz"))
    out = tmp_path / "out"
    assert main(["run", "-i", str(src), "-o", str(out), "-m", "nlm", "--quiet"]) == 0
    rows = _manifest(out)
    assert rows["v_mr.nii.gz"]["model"] == "nlm" and rows["v_mr.nii.gz"]["status"] == "ok"
    den = read_scan(out / "v_mr.nii.gz").array
    assert np.abs(den - phantom_3d).mean() < np.abs(noisy - phantom_3d).mean()


def test_ct_not_in_hounsfield_units_is_flagged(tmp_path, phantom_3d):
    """A CT series stored without its rescale intercept (air at 0 instead of -1000 HU) is denoised
    but flagged in the manifest; the same pixels with the right intercept are not."""
    stored = (phantom_3d[:4] / phantom_3d.max() * 1100).astype(np.int16)  # air 0, tissue ~1000-1100
    # (the helper takes physical values: stored = (value - intercept) / slope)
    write_dicom_slices(tmp_path / "in" / "hu", stored - 1024.0, modality="CT", intercept=-1024.0, signed=True)
    write_dicom_slices(tmp_path / "in" / "raw", stored, modality="CT", intercept=0.0, signed=True)
    out = tmp_path / "out"
    assert main(["run", "-i", str(tmp_path / "in"), "-o", str(out), "-m", "gaussian", "--quiet"]) == 0
    rows = {Path(k).parts[0]: r for k, r in _manifest(out).items()}
    assert rows["hu"]["status"] == rows["raw"]["status"] == "ok"
    assert rows["hu"]["warning"] == ""
    assert "Hounsfield" in rows["raw"]["warning"] and "intercept" in rows["raw"]["warning"]


def test_tta_is_recorded_and_continue_redoes_a_run_without_it(study, tmp_path, tiny_model):
    out = tmp_path / "out"
    denoise_folder(study, out, model=str(tiny_model), device="cpu", progress=False)
    s = denoise_folder(study, out, model=str(tiny_model), device="cpu", resume=True, tta=True, progress=False)
    assert s["processed"] == 3  # different output: not reused
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    assert all(r["model"].endswith("+tta") for r in rows if r["status"] == "ok")
    s = denoise_folder(study, out, model=str(tiny_model), device="cpu", resume=True, tta=True, progress=False)
    assert s["processed"] == 0
    with pytest.raises(UsageError):
        denoise_folder(study, tmp_path / "o2", model="nlm", tta=True, progress=False)


def test_planes_are_recorded_checked_and_continue_redoes_a_run_without_them(tmp_path, tiny_model, phantom_3d):
    src = tmp_path / "in"
    src.mkdir()
    iso = np.ascontiguousarray(phantom_3d[:, 4:20, 4:20])  # 16^3, 1 mm: three planes apply
    nib.save(nib.Nifti1Image(iso.T.copy(), np.eye(4)), str(src / "iso.nii.gz"))
    out = tmp_path / "out"
    denoise_folder(src, out, model=str(tiny_model), device="cpu", progress=False)
    one = nib.load(str(out / "iso.nii.gz")).get_fdata()
    s = denoise_folder(src, out, model=str(tiny_model), device="cpu", resume=True, planes=3, progress=False)
    assert s["processed"] == 1  # other inference options: not reused
    assert _manifest(out)["iso.nii.gz"]["model"] == "tiny+3planes"
    assert not np.allclose(nib.load(str(out / "iso.nii.gz")).get_fdata(), one)
    assert denoise_folder(src, out, model=str(tiny_model), device="cpu", resume=True, planes=3,
                          progress=False)["processed"] == 0
    assert denoise_folder(src, out, model=str(tiny_model), device="cpu", resume=True, progress=False)["processed"] == 1
    with pytest.raises(UsageError, match="classical"):
        denoise_folder(src, tmp_path / "o2", model="nlm", planes=3, progress=False)
    with pytest.raises(UsageError, match="2D models"):
        denoise_folder(src, tmp_path / "o3", model="mr-3d", planes=3, progress=False)
    assert not (tmp_path / "o3").exists()  # refused before anything was written


def test_a_model_of_the_other_modality_is_run_but_warned_about(tmp_path, tiny_model, phantom_3d):
    src = tmp_path / "in"
    write_dicom_slices(src / "ct", phantom_3d[:4] * 2.0 - 1000.0, modality="CT", intercept=-1024.0, signed=True)
    nib.save(nib.Nifti1Image(phantom_3d.T.copy(), np.eye(4)), str(src / "mr.nii.gz"))
    out = tmp_path / "out"
    assert denoise_folder(src, out, model=str(tiny_model), device="cpu", progress=False)["failed"] == 0
    rows = {Path(k).parts[0]: r for k, r in _manifest(out).items()}
    assert "trained on MR scans and this scan is CT" in rows["ct"]["warning"]
    assert rows["mr.nii.gz"]["warning"] == ""


def test_strength_blends_with_the_input_and_is_recorded(tmp_path, phantom_3d):
    """--strength S: output = input + S (full - input); 0 gives the input back; the manifest records
    it and --continue redoes a scan run at another strength."""
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    vol = (phantom_3d + rng.normal(0, 30, phantom_3d.shape) + 100).astype(np.float32)
    nib.save(nib.Nifti1Image(vol.T.copy(), np.eye(4)), str(src / "mr_v.nii.gz"))
    full = denoise_folder(src, tmp_path / "full", model="nlm", progress=False)
    assert full["ok"] == 1
    half = tmp_path / "half"
    assert main(["run", "-i", str(src), "-o", str(half), "-m", "nlm", "--strength", "0.5", "--quiet"]) == 0
    a_full = nib.load(str(tmp_path / "full" / "mr_v.nii.gz")).get_fdata()
    a_half = nib.load(str(half / "mr_v.nii.gz")).get_fdata()
    np.testing.assert_allclose(a_half, vol.T + 0.5 * (a_full - vol.T), rtol=1e-5, atol=1e-3)
    assert _manifest(half)["mr_v.nii.gz"]["model"] == "nlm+strength0.5"
    zero = tmp_path / "zero"
    assert main(["run", "-i", str(src), "-o", str(zero), "-m", "nlm", "--strength", "0", "--quiet"]) == 0
    np.testing.assert_allclose(nib.load(str(zero / "mr_v.nii.gz")).get_fdata(), vol.T, atol=1e-4)
    s = denoise_folder(src, half, model="nlm", resume=True, progress=False)  # full strength now: redone
    assert s["processed"] == 1
    assert main(["run", "-i", str(src), "-o", str(tmp_path / "x"), "--strength", "1.5"]) == 2


def test_a_temporary_a_killed_worker_left_during_the_run_is_gone_when_it_ends(study, tmp_path, tiny_model, monkeypatch):
    """On a cluster a worker can be killed mid-write (a lost node, an out-of-memory kill): its task
    is redone elsewhere and the run ends well, but the temporary it was writing is never renamed.
    The run removes such debris of its own destinations when its tasks are done."""
    import denoise.batch as batch
    from denoise.atomic import temp_sibling

    out = tmp_path / "out"
    run = batch._run_recorded
    left = []

    def run_and_lose_a_worker(todo, opts, *args, **kwargs):
        dest = out / batch.output_relpath(todo[0], opts.fmt)
        left.append(temp_sibling(dest, ext=".nii.gz"))
        left[0].parent.mkdir(parents=True, exist_ok=True)
        left[0].write_bytes(b"half a file")  # what the killed worker had written so far
        return run(todo, opts, *args, **kwargs)

    monkeypatch.setattr(batch, "_run_recorded", run_and_lose_a_worker)
    s = denoise_folder(study, out, model=str(tiny_model), device="cpu", progress=False)
    assert s["ok"] >= 2 and left and not left[0].exists()  # (the study's broken file fails, as it should)
    assert not [p for p in out.rglob(".*") if p.name != ".denoise-run.lock"]
