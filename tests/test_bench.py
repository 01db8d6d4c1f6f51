import csv

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
