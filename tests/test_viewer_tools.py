"""Viewer tools (issue #29 items 7 and 8, #25 item 3): downloads in any format with the input's data
type, window presets from the whole volume, the manual window starting where the preset was, slice
scrolling, the VAE tab's samples and interpolation target."""

import io
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
from conftest import SAMPLE

from denoise.io import read_scan
from denoise.io.nifti import integer_storage
from denoise.viewer.downloads import DICOM, NIFTI, download_formats, metrics_csv, scan_to_download
from denoise.viewer.scroll import new_steps
from denoise.viewer.support import window_presets

APP = str(Path(__file__).resolve().parents[1] / "apps" / "viewer.py")
st_testing = pytest.importorskip("streamlit.testing.v1")


def _nifti(tmp_path, data: np.ndarray, dtype, slope=None, inter=None) -> Path:
    img = nib.Nifti1Image(data.T, np.diag([0.9, 0.9, 2.0, 1.0]))
    img.set_data_dtype(dtype)
    if slope is not None:
        img.header.set_slope_inter(slope, inter)
    path = tmp_path / f"in_{np.dtype(dtype).name}.nii.gz"
    nib.save(img, str(path))
    return path


def _downloaded(tmp_path, data: bytes, name: str):
    path = tmp_path / name
    path.write_bytes(data)
    return nib.load(str(path))


def test_nifti_download_keeps_an_integer_inputs_dtype_and_grid(tmp_path, phantom_3d):
    source = read_scan(_nifti(tmp_path, (phantom_3d * 1000).astype(np.uint16), np.uint16))
    denoised = source.array + np.random.default_rng(0).normal(0, 3.3, source.array.shape).astype(np.float32)
    denoised = np.clip(denoised, 0, None)
    data, fname, _ = scan_to_download(source.with_array(denoised), "dae:mr-2d")
    out = _downloaded(tmp_path, data, fname)
    assert out.get_data_dtype() == np.uint16 and ":" not in fname
    assert np.abs(out.get_fdata() - denoised.T).max() <= 0.5 + 1e-4  # rounded to the input's integer grid
    float_bytes, _, _ = scan_to_download(source.with_array(denoised).with_array(denoised, nifti_header=None), "x")
    assert len(data) < len(float_bytes)  # smaller than the float32 file it replaces


def test_a_scaled_integer_input_keeps_its_scaling_and_values_that_do_not_fit_stay_float(tmp_path, phantom_3d):
    values = (phantom_3d * 5.0).astype(np.float32)  # stored as int16 with slope 0.001
    source = read_scan(_nifti(tmp_path, values, np.int16, slope=0.001, inter=0.0))
    assert source.meta["nifti_scaling"][0] == pytest.approx(0.001)
    data, fname, _ = scan_to_download(source.with_array(source.array * 0.9), "m")
    out = _downloaded(tmp_path, data, fname)
    assert out.get_data_dtype() == np.int16 and out.dataobj.slope == pytest.approx(0.001)
    assert np.abs(out.get_fdata() - (source.array * 0.9).T).max() <= 0.0005 + 1e-6
    # a result outside int16 at this slope (40 > 32.767) cannot keep the type: float32, exact
    big = source.array * 0 + 40.0
    assert integer_storage(source.meta["nifti_header"], big.T, source.meta["nifti_scaling"]) is None
    data, fname, _ = scan_to_download(source.with_array(big), "m")
    out = _downloaded(tmp_path, data, fname)
    assert out.get_data_dtype() == np.float32 and np.allclose(out.get_fdata(), 40.0)


def test_dicom_input_downloads_as_a_derived_series_or_nifti(dicom_series):
    scan = read_scan(dicom_series)
    assert download_formats(scan) == [DICOM, NIFTI]
    data, fname, mime = scan_to_download(scan.with_array(scan.array * 0.5), "nlm", DICOM)
    assert fname.endswith(".zip") and mime == "application/zip"
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        first = pydicom.dcmread(io.BytesIO(zf.read(names[0])))
    assert len(names) == scan.array.shape[0]
    source = pydicom.dcmread(next(p for p in sorted(dicom_series.iterdir())))
    assert first.SeriesInstanceUID != source.SeriesInstanceUID and "RESEARCH USE ONLY" in first.SeriesDescription
    data, fname, _ = scan_to_download(scan.with_array(scan.array * 0.5), "nlm", NIFTI)
    assert fname.endswith(".nii.gz") and len(data) > 0


def test_a_nifti_input_cannot_be_downloaded_as_dicom(nifti_file):
    scan = read_scan(nifti_file)
    assert download_formats(scan) == [NIFTI]
    with pytest.raises(ValueError, match="cannot write DICOM"):
        scan_to_download(scan, "x", DICOM)


def test_metrics_csv_has_the_method_column_and_every_value():
    table = pd.DataFrame([{"method": "nlm", "PSNR (dB)": 31.5}, {"method": "tv", "PSNR (dB)": 30.25}]).set_index("method")
    back = pd.read_csv(io.BytesIO(metrics_csv(table)))
    assert list(back.columns) == ["method", "PSNR (dB)"] and back["PSNR (dB)"].tolist() == [31.5, 30.25]


def test_mr_window_presets_come_from_the_volume_and_differ_by_tissue(phantom_3d):
    vol = phantom_3d * 1000
    presets = window_presets("MR", vol)
    assert presets == window_presets("MR", vol)  # one set per scan, whatever slice is shown
    soft, bright = presets["soft tissue (foreground 5-95%)"], presets["bright structures (foreground 50-99.9%)"]
    assert bright[0] > soft[0]  # the bright window sits higher
    full = presets["full range"]
    assert full[0] - full[1] / 2 == pytest.approx(vol.min()) and full[0] + full[1] / 2 == pytest.approx(vol.max())
    assert set(window_presets("CT", vol)) == {"soft tissue", "lung", "bone", "brain"}


def test_scroll_steps_count_from_the_last_rerun_and_restart_with_a_new_frame():
    assert new_steps(None, ("a", 3)) == (0, ("a", 3))
    assert new_steps({"token": "a", "total": 5}, ("a", 3)) == (2, ("a", 5))
    assert new_steps({"token": "a", "total": 1}, ("a", 5)) == (-4, ("a", 1))
    assert new_steps({"token": "b", "total": -2}, ("a", 5)) == (-2, ("b", -2))  # a new frame starts at 0


@pytest.mark.timeout(600)
def test_manual_window_starts_from_the_preset_and_downloads_are_offered():
    at = st_testing.AppTest.from_file(APP, default_timeout=240)
    at.run()
    window = at.selectbox(key="window")
    preset = window.value
    assert "bright structures (foreground 50-99.9%)" in window.options
    window.set_value("bright structures (foreground 50-99.9%)").run()
    at.selectbox(key="window").set_value("manual").run()
    center, width = at.number_input(key="win_center").value, at.number_input(key="win_width").value
    at.selectbox(key="window").set_value("bright structures (foreground 50-99.9%)").run()
    at.selectbox(key="window").set_value(preset).run()
    assert not at.exception
    # the manual window began at the bright preset's values, not at a slice's median / full range
    expected = window_presets("MR", read_scan(SAMPLE / "mr_t1_brain_slab.nii.gz").array)["bright structures (foreground 50-99.9%)"]
    assert (center, width) == pytest.approx(expected, rel=1e-6)
    result = at.selectbox(key="download_method")
    assert "noisy input" in result.options and len(result.options) >= 2  # every method, and the noisy input
    assert at.selectbox(key="download_format").options == [NIFTI]
    assert {b.label for b in at.get("download_button")} >= {"metrics table (CSV)"}


@pytest.mark.timeout(600)
def test_vae_tab_draws_the_chosen_number_of_samples_and_interpolates_to_the_chosen_slice():
    at = st_testing.AppTest.from_file(APP, default_timeout=240)
    at.run()
    at.selectbox(key="vae_samples").set_value(8).run()
    at.number_input(key="vae_other").set_value(2).run()
    assert not at.exception
    text = " ".join(c.value for c in at.caption)
    assert "8 latents drawn from the prior" in text and "and of slice 2 (t=1)" in text
    at.number_input(key="vae_seed").set_value(7).run()
    assert "(seed 7)" in " ".join(c.value for c in at.caption) and not at.exception


def test_denoise_array_reports_progress_to_a_callback_up_to_the_total(phantom_3d):
    from denoise.infer import denoise_array
    from denoise.models import ClassicalDenoiser
    from denoise.models.base import Denoiser

    calls = []
    out = denoise_array(phantom_3d, ClassicalDenoiser("gaussian"), batch_size=5, progress=lambda d, t: calls.append((d, t)))
    assert out.shape == phantom_3d.shape
    done = [d for d, _ in calls]
    assert done == sorted(done) and calls[-1] == (phantom_3d.shape[0], phantom_3d.shape[0])
    assert len(calls) == -(-phantom_3d.shape[0] // 5)  # once per batch of slices

    class Whole3D(Denoiser):  # a 3D denoiser: one call per volume
        spatial_dims = 3

        def denoise_batch(self, batch):
            return batch.copy()

    calls.clear()
    series = np.stack([phantom_3d, phantom_3d])  # two time points
    denoise_array(series, Whole3D(), progress=lambda d, t: calls.append((d, t)))
    n = phantom_3d.shape[0]
    assert calls == [(n, 2 * n), (2 * n, 2 * n)]  # in slices, like the 2D count, once per volume


def test_progress_reporter_gives_the_fraction_and_an_eta_from_the_rate_so_far():
    from denoise.viewer.support import progress_reporter

    now = iter([0.0, 10.0, 20.0])
    shown = []
    report = progress_reporter(lambda f, text: shown.append((f, text)), "denoising with bm3d", clock=lambda: next(now))
    report(5, 20)  # 5 slices in 10 s: 15 left at 2 s each
    report(20, 20)
    assert shown[0] == (0.25, "denoising with bm3d: 5/20, about 30 s left")
    assert shown[1] == (1.0, "denoising with bm3d: 20/20")
