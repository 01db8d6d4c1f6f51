"""Issue #29 (CLI 10): simulate -> run -> evaluate scores DICOM as it scores NIfTI. Outputs keep the
input tree's folder names (a series written here goes into the same folder name again, never one
level deeper), derived series pair with their sources (by path, else by UID), a missing reference
is warned about, SeriesDescription is cut between words, and the noise map has its own number."""

import csv
import logging
import re
import shutil

import pydicom
import pytest
from conftest import SAMPLE

from denoise.cli import main
from denoise.io import discover_scans, read_scan
from denoise.io.dicom_write import RESEARCH_NOTE, series_description
from denoise.metrics import foreground_mask, psnr, ssim
from denoise.normalize import reference_intensity

pytestmark = pytest.mark.skipif(not (SAMPLE / "mr_dwi_b0_dicom").is_dir(), reason="no sample data")

MR = "mr_dwi_b0_dicom/S3000_DTI_PA-ortho_b0"  # a scanner's series (12 x 80 x 80)
PHANTOM = "phantom_3d_dicom"  # a series this package wrote (48^3): read as phantom_3d_dicom/S1001_...


def _csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _expected(den_folder, ref):
    """Foreground PSNR/SSIM computed here, independently of the pairing under test."""
    d, r = read_scan(den_folder).array, ref.array
    rng, mask = reference_intensity(r), foreground_mask(r)
    return psnr(r, d, data_range=rng, mask=mask), ssim(r, d, data_range=rng, mask=mask)


@pytest.fixture
def chain(tmp_path, caplog):
    """clean (two sample series) -> simulate -> run -m tv --noise-map --reference clean."""
    clean, noisy, den = tmp_path / "clean", tmp_path / "noisy", tmp_path / "den"
    for name in ("mr_dwi_b0_dicom", PHANTOM):
        shutil.copytree(SAMPLE / name, clean / name)
    assert main(["simulate", "-i", str(clean), "-o", str(noisy), "--noise", "rician:0.05", "--seed", "1", "--quiet"]) == 0
    with caplog.at_level(logging.WARNING):
        assert main(["run", "-i", str(noisy), "-o", str(den), "-m", "tv", "--noise-map", "--reference", str(clean),
                     "--quiet"]) == 0
    return clean, noisy, den


def test_outputs_keep_the_input_folder_names(chain):
    clean, noisy, den = chain
    for root in (noisy, den):  # the series lie where the clean one's relpath says, never a level deeper
        assert len(list((root / MR).glob("IM*.dcm"))) == 12 and not [p for p in (root / MR).iterdir() if p.is_dir()]
        assert len(list((root / PHANTOM).glob("IM*.dcm"))) == 48
    assert len(list((den / f"{MR}_noise").glob("IM*.dcm"))) == 12
    rows = {r["output"]: r for r in _csv(den / "manifest.csv")}
    assert set(rows) == {MR, PHANTOM} and {r["noise_map"] for r in rows.values()} == {f"{MR}_noise", f"{PHANTOM}_noise"}


def test_evaluate_scores_the_dicom_round_trip_with_real_psnr(chain, capsys, caplog):
    clean, noisy, den = chain
    refs = {"mr_dwi_b0_dicom": read_scan(clean / "mr_dwi_b0_dicom"), PHANTOM: read_scan(clean / PHANTOM)}
    manifest = {r["output"]: r for r in _csv(den / "manifest.csv")}
    capsys.readouterr()
    for scored, tag in ((den, "den"), (noisy, "noisy")):
        with caplog.at_level(logging.WARNING):
            caplog.clear()
            assert main(["evaluate", "--denoised", str(scored), "--reference", str(clean)]) == 0
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        table = _csv(scored / "evaluation.csv")
        rows = {r["reference"]: r for r in table}
        assert len(table) == 2 and set(rows) == {s.relpath for s in discover_scans(clean)[0]}  # noise maps left out
        for folder, ref in refs.items():
            row = next(r for k, r in rows.items() if k.startswith(folder))
            want_psnr, want_ssim = _expected(scored / (MR if folder != PHANTOM else PHANTOM), ref)
            assert 15 < want_psnr < 45 and row["reason"] == ""
            assert float(row["psnr"]) == pytest.approx(want_psnr, abs=1e-3)
            assert float(row["ssim"]) == pytest.approx(want_ssim, abs=1e-4)
            if tag == "den":  # run --reference scored the same pairs the same way
                out = MR if folder != PHANTOM else PHANTOM
                assert float(manifest[out]["psnr_fg"]) == pytest.approx(want_psnr, abs=1e-3)
                assert not manifest[out]["warning"]
    out = capsys.readouterr().out
    assert len(re.findall(r"psnr=\d+\.\d{3}", out)) == 4


def test_pairs_by_uid_when_the_trees_do_not_line_up(chain, tmp_path):
    """`run` on one series folder: its outputs' relpaths lack the top folder, so only the UIDs the
    derived series records (Related Series Sequence: noisy's source, the clean series) pair them."""
    clean, noisy, _ = chain
    sub = tmp_path / "den_sub"
    assert main(["run", "-i", str(noisy / "mr_dwi_b0_dicom"), "-o", str(sub), "-m", "tv", "--quiet",
                 "--reference", str(clean)]) == 0
    row = _csv(sub / "manifest.csv")[0]
    assert not row["input"].startswith("mr_dwi_b0_dicom") and float(row["psnr_fg"]) > 15
    assert main(["evaluate", "--denoised", str(sub), "--reference", str(clean)]) == 0
    (ev,) = _csv(sub / "evaluation.csv")
    assert ev["reference"] == MR
    assert float(ev["psnr"]) == pytest.approx(float(row["psnr_fg"]), abs=1e-3)
    related = pydicom.dcmread(str(next((sub / "S3000_DTI_PA-ortho_b0").glob("*.dcm")))).RelatedSeriesSequence
    source = pydicom.dcmread(str(next((clean / "mr_dwi_b0_dicom").glob("*.dcm"))))
    assert related[0].SeriesInstanceUID == source.SeriesInstanceUID and len(related) == 2


def test_nifti_outputs_of_dicom_series_pair_with_them(chain, tmp_path):
    clean, noisy, _ = chain
    out = tmp_path / "den_nii"
    assert main(["run", "-i", str(noisy / "mr_dwi_b0_dicom"), "-o", str(out / "mr_dwi_b0_dicom"), "-m", "tv",
                 "--format", "nifti", "--quiet"]) == 0
    assert (out / f"{MR}.nii.gz").is_file()
    assert main(["evaluate", "--denoised", str(out), "--reference", str(clean)]) == 0
    (ev,) = [r for r in _csv(out / "evaluation.csv") if r["scan"].endswith(".nii.gz")]
    assert ev["scan"] == f"{MR}.nii.gz" and ev["reference"] == MR and float(ev["psnr"]) > 15


def test_a_missing_reference_is_warned_about(chain, tmp_path, capsys, caplog):
    clean, noisy, _ = chain
    partial = tmp_path / "partial"
    shutil.copytree(clean / PHANTOM, partial / PHANTOM)  # the MR series' reference is missing
    out = tmp_path / "den2"
    with caplog.at_level(logging.WARNING):
        assert main(["run", "-i", str(noisy), "-o", str(out), "-m", "tv", "--quiet", "--reference", str(partial)]) == 0
    rows = {r["output"]: r for r in _csv(out / "manifest.csv")}
    assert rows[MR]["psnr_fg"] == "" and "PSNR/SSIM left empty (--reference): no reference" in rows[MR]["warning"]
    assert rows[PHANTOM]["psnr_fg"] and not rows[PHANTOM]["warning"]
    assert any("PSNR/SSIM left empty" in r.getMessage() and MR in r.getMessage() for r in caplog.records)
    assert str(tmp_path) not in (out / "manifest.csv").read_text()
    capsys.readouterr()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main(["evaluate", "--denoised", str(out), "--reference", str(partial)]) == 1
    err = capsys.readouterr().err
    assert "1 of 2 scan(s) not scored" in err
    assert any("no reference at the same relative path" in r.getMessage() for r in caplog.records)
    missing = next(r for r in _csv(out / "evaluation.csv") if not r["psnr"])
    assert missing["scan"].startswith(MR) and "no reference" in missing["reason"]


def test_series_numbers_and_descriptions(chain):
    clean, noisy, den = chain
    first = {p: pydicom.dcmread(str(next((den / p).glob("*.dcm")))) for p in (MR, f"{MR}_noise")}
    source = pydicom.dcmread(str(next((clean / "mr_dwi_b0_dicom").glob("*.dcm"))))
    assert first[MR].SeriesNumber != first[f"{MR}_noise"].SeriesNumber  # the noise map has its own number
    for ds in first.values():
        desc = ds.SeriesDescription
        assert len(desc) <= 64 and desc.endswith(f" - {RESEARCH_NOTE}") and desc.count(RESEARCH_NOTE) == 1
        assert desc.startswith(source.SeriesDescription + " simulated")  # the source's name is kept
    assert "denoised tv" in first[MR].SeriesDescription and "noise map tv" in first[f"{MR}_noise"].SeriesDescription


@pytest.mark.parametrize("old, done", [
    ("DTI_PA-ortho simulated rician:0.05 seed 2 - RESEARCH USE ONLY", "denoised tv"),
    ("t1_mprage_sag_p2_iso_0.9mm_192slices_FS_extra_long_name", "denoised mr-2d"),
    ("FSE PD axial fat saturated high resolution 512 matrix", "simulated mrkspace:0.03,coils=8 seed 1"),
    ("a b c", "simulated mrkspace:0.03,coils=8,zf=2,pf=0.75,accel=2 seed 1"),
])
def test_series_description_is_cut_between_words(old, done):
    desc = series_description(old, done)
    assert len(desc) <= 64 and desc.endswith(f" - {RESEARCH_NOTE}") and desc.count(RESEARCH_NOTE) == 1
    words = desc[: -len(f" - {RESEARCH_NOTE}")].split()
    whole = set(old.split()) | set(done.split())
    assert all(w in whole for w in words[1:])  # whole words only, but the source's name ...
    assert words[0] in whole or re.match(r"^[\w.]+$", words[0]) and old.startswith(words[0] + "_")  # ... cut at _
    assert done.split()[0] in words  # what was done is named
