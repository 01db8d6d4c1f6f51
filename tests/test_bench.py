import csv
import re

import nibabel as nib
import numpy as np

from denoise.bench import FIELDS, run_benchmark
from denoise.cli import main


def test_tiny_benchmark_runs_and_reports(tmp_path, phantom_3d):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        nib.save(nib.Nifti1Image((phantom_3d * (1 + 0.2 * i)).T.copy(), np.eye(4)), str(data / f"p{i}_mr.nii.gz"))
    out = tmp_path / "bench"
    md = run_benchmark(data, ["rician:0.05", "rician:0.09"], out, methods=["noisy", "nlm", "nlm:oracle", "gaussian"],
                       progress=False)
    with open(out / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert set(FIELDS) <= set(rows[0])
    assert len(rows) == 2 * 2 * 4
    assert {r["method"] for r in rows} == {"noisy", "nlm", "nlm:oracle", "gaussian"}
    by = {(r["scan"], r["noise"], r["method"]): r for r in rows}
    for scan in ("p0_mr.nii.gz", "p1_mr.nii.gz"):
        assert float(by[(scan, "rician:0.09", "nlm:oracle")]["psnr_fg"]) > float(by[(scan, "rician:0.09", "noisy")]["psnr_fg"])
        assert float(by[(scan, "rician:0.05", "noisy")]["psnr_fg"]) > float(by[(scan, "rician:0.09", "noisy")]["psnr_fg"])
        assert 0.5 < float(by[(scan, "rician:0.05", "noisy")]["lesion_contrast_kept"]) < 1.5
    text = md.read_text()
    assert "vs nlm:oracle" in text and "[" in text
    assert (out / "psnr_vs_rician.png").exists() and (out / "example_0.png").exists()


def test_bench_cli_and_ct_skips_mr_noise(tmp_path, phantom_3d, capsys):
    data = tmp_path / "d"
    data.mkdir()
    nib.save(nib.Nifti1Image((phantom_3d - 1000).T.copy(), np.eye(4)), str(data / "x_ct.nii.gz"))
    assert main(["bench", "--data", str(data), "--noise", "rician:0.05,lowdose:0.25", "--methods", "noisy,tv",
                 "--out", str(tmp_path / "o"), "--quiet"]) == 0
    with open(tmp_path / "o" / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["noise"] for r in rows} == {"lowdose:0.25"}  # Rician is MR-only


def test_model_oracle_reads_only_the_added_noise(phantom_3d):
    """The learned models' oracle: the model's own noise estimator read on the true added noise,
    so a reference with noise of its own does not inflate it (as the blind estimate is)."""
    from denoise.bench import _method, model_oracle
    from denoise.config import ModelConfig
    from denoise.infer import LearnedDenoiser
    from denoise.models import build_model
    from denoise.noise import add_noise
    from denoise.noise_level import noise_level
    from denoise.normalize import reference_intensity
    from denoise.scan import Scan

    ref = reference_intensity(phantom_3d)
    own = add_noise(phantom_3d, "gaussian:0.03", seed=1)  # a reference with its own 3% noise
    clean = Scan(own, (1, 1, 1), modality="MR")
    noisy = add_noise(clean, "gaussian:0.05", seed=2)
    net = build_model(ModelConfig(channels=(4, 8), noise_channel=True))
    model = LearnedDenoiser(net, {"model": {"kind": "dae", "spatial_dims": 2, "noise_channel": True},
                                  "train": {"patch_size": 32}}, name="tiny", device="cpu")
    oracle = model_oracle(model, noisy, clean) * reference_intensity(noisy.array) / ref
    blind = np.mean([noise_level(s, 32) for s in noisy.array / ref])
    assert abs(oracle - 0.05) < 0.005 and blind > oracle + 0.005
    cache = {"tiny": model}
    den = _method("dae:tiny:oracle", "MR", "gaussian", 0.0, cache, noisy, clean)
    assert den.sigma == model_oracle(model, noisy, clean) and den.net is net
    assert _method("dae:tiny", "MR", "gaussian", 0.0, cache, noisy, clean) is model


def test_reuse_carries_classical_rows_only_for_identical_noisy_cases(tmp_path, phantom_3d):
    """``reuse`` copies a classical row from an earlier results.csv when the case's noisy input has
    the same fingerprint; a case whose noisy input differs, and the four example cases, are
    recomputed."""
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        nib.save(nib.Nifti1Image((phantom_3d * (1 + 0.2 * i)).T.copy(), np.eye(4)), str(data / f"p{i}_mr.nii.gz"))
    kw = dict(methods=["noisy", "gaussian"], progress=False)
    first = tmp_path / "first"
    run_benchmark(data, ["rician:0.05", "rician:0.09"], first, **kw)
    with open(first / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    marked = []
    for r in rows:  # mark every stored gaussian row; spoil the fingerprint of one late case
        if r["method"] == "gaussian":
            r["psnr_fg"] = "99.999"
            marked.append((r["scan"], r["noise"]))
        if (r["scan"], r["noise"], r["method"]) == ("p2_mr.nii.gz", "rician:0.09", "noisy"):
            r["psnr_fg"] = "1.000"
    with open(first / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    second = tmp_path / "second"
    run_benchmark(data, ["rician:0.05", "rician:0.09"], second, reuse=first / "results.csv", **kw)
    with open(second / "results.csv", newline="") as fh:
        got = {(r["scan"], r["noise"]): r["psnr_fg"] for r in csv.DictReader(fh) if r["method"] == "gaussian"}
    assert set(got) == set(marked) and len(got) == 6
    reused = {k for k, v in got.items() if v == "99.999"}
    assert reused == {("p2_mr.nii.gz", "rician:0.05")}  # cases 1-4 make the figures; the last has a changed input


def test_default_methods_leave_out_bm3d_and_bm4d(monkeypatch):
    """BM3D/BM4D take minutes per volume: they run only when named, even where installed."""
    from denoise import bench
    from denoise.bench_real import DEFAULT_REAL_METHODS

    monkeypatch.setattr(bench, "bm3d_available", lambda: True)
    methods = bench.default_methods()
    assert [m for m in methods if m.split(":")[0] in ("bm3d", "bm4d")] == []
    assert {"noisy", "gaussian:oracle", "nlm", "nlm:oracle", "tv", "wavelet:oracle", "dae:mr-2d", "dae:mr-3d"} <= set(methods)
    assert [m for m in DEFAULT_REAL_METHODS if m.split(":")[0] in ("bm3d", "bm4d")] == []


def test_bench_says_what_it_left_out_and_shows_each_method(tmp_path, phantom_3d, capsys, monkeypatch):
    """Without --methods the output names the slow methods left out and how to add them; the
    progress bar names the running method, with a bar over its slices."""
    from denoise import bench

    data = tmp_path / "d"
    data.mkdir()
    nib.save(nib.Nifti1Image(phantom_3d.T.copy(), np.eye(4)), str(data / "p_mr.nii.gz"))
    monkeypatch.setattr(bench, "default_methods", lambda: ["noisy", "gaussian"])  # a quick default list
    assert main(["bench", "--data", str(data), "--noise", "rician:0.05", "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert "bm3d, bm3d:oracle and bm4d:oracle are left out" in err and "--methods" in err
    assert re.search(r"gaussian: +\d+%\|", err) and re.search(r"slices: +\d+%\|", err)  # the running method, its slices
    with open(tmp_path / "o" / "results.csv", newline="") as fh:
        assert {r["method"] for r in csv.DictReader(fh)} == {"noisy", "gaussian"}
    assert main(["bench", "--data", str(data), "--noise", "rician:0.05", "--out", str(tmp_path / "q"),
                 "--methods", "noisy", "--quiet"]) == 0
    assert "left out" not in capsys.readouterr().err  # named methods: nothing left out
