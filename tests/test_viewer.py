"""Viewer: app logic with streamlit's AppTest, and one end-to-end run in headless Chromium."""

import io
import json
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import write_dicom_slices

from denoise.viewer.support import resolve_under_root, scan_from_upload

APP = str(Path(__file__).resolve().parents[1] / "apps" / "viewer.py")
st_testing = pytest.importorskip("streamlit.testing.v1")


def _app():
    at = st_testing.AppTest.from_file(APP, default_timeout=240)
    at.run()
    return at


@pytest.mark.timeout(600)
def test_first_screen_simulates_and_scores_without_clicks():
    at = _app()
    assert not at.exception
    table = at.table[0].value
    assert "noisy" in table.index and "nlm" in table.index
    assert table.loc["nlm", "PSNR fg volume (dB)"] > table.loc["noisy", "PSNR fg volume (dB)"]
    assert at.radio(key="mode").value == "simulate"
    assert any("Research use only" in c.value for c in at.caption)


@pytest.mark.timeout(600)
def test_method_selection_and_real_mode():
    at = _app()
    at.multiselect[0].set_value(["tv", "nlm"]).run()
    assert set(at.table[0].value.index) == {"noisy", "tv", "nlm"}
    at.radio(key="mode").set_value("real").run()
    assert not at.exception
    table = at.table[0].value
    assert "noise sigma est. (% of ref. intensity)" in table.columns and "PSNR fg volume (dB)" not in table.columns


@pytest.mark.timeout(600)
def test_anomaly_tab_offers_every_score_and_computes_each():
    at = _app()
    box = at.selectbox(key="anomaly_score")
    assert {"vae-mr-2d: residual", "vae-mr-2d: kl", "sparse-mr-2d: residual", "zscore (no model)"} <= set(box.options)
    for choice in ("vae-mr-2d: kl", "zscore (no model)"):
        at.selectbox(key="anomaly_score").set_value(choice).run()
        assert not at.exception
        assert any(c.startswith(f"anomaly map ({choice}") for c in _captions(at)), choice
        assert any(c.startswith("anomaly colour bar") for c in _captions(at))


@pytest.mark.timeout(600)
def test_data_root_is_confined(tmp_path, monkeypatch):
    root = tmp_path / "root"
    write_dicom_slices(root / "a", np.ones((3, 8, 8), np.float32) * 100)
    (tmp_path / "secret.nii").write_text("x")
    monkeypatch.setenv("DENOISE_DATA_ROOT", str(root))
    at = _app()
    at.radio[0].set_value("data root").run()
    at.text_input[0].set_value("../secret.nii").run()
    assert any("outside the data root" in e.value for e in at.error)
    # a bad path leaves the rest of the sidebar in place (it was hidden by st.stop before)
    assert at.radio(key="mode").value == "simulate" and at.multiselect(key="methods").value
    assert any("No scan to show" in i.value for i in at.info)


@pytest.mark.timeout(600)
def test_typed_path_and_dropdown_agree_and_the_sidebar_keeps_its_state(tmp_path, monkeypatch):
    root = tmp_path / "root"
    vol = (np.random.default_rng(0).random((4, 32, 32)) * 100 + 100).astype(np.float32)
    files = write_dicom_slices(root / "a", vol)
    nib.save(nib.Nifti1Image(vol.T.copy(), np.eye(4)), str(root / "b.nii.gz"))
    monkeypatch.setenv("DENOISE_DATA_ROOT", str(root))
    at = _app()
    at.radio(key="source").set_value("data root").run()
    at.multiselect(key="methods").set_value(["tv"]).run()
    assert at.selectbox(key="root_pick").value == "a"
    # a typed path that the list holds: the dropdown names it (it silently named "a" before)
    at.text_input(key="root_typed").set_value("./b.nii.gz").run()
    assert at.selectbox(key="root_pick").value == "b.nii.gz" and at.text_input(key="root_typed").value == ""
    # one the list does not hold: the dropdown is emptied and disabled, so it names no other scan
    at.text_input(key="root_typed").set_value(f"a/{files[0].name}").run()
    assert not at.exception and not at.error
    box = [s for s in at.selectbox if s.label == "scan under data root"]
    assert len(box) == 1 and box[0].value is None and box[0].disabled
    # a bad one: an error, and the whole sidebar stays with its settings
    at.text_input(key="root_typed").set_value("missing.nii.gz").run()
    assert any("does not exist" in e.value for e in at.error)
    assert at.multiselect(key="methods").value == ["tv"] and at.slider(key="level").value == 0.05
    # cleared: back to the dropdown's last pick, the selection untouched
    at.text_input(key="root_typed").set_value("").run()
    assert at.selectbox(key="root_pick").value == "b.nii.gz" and at.multiselect(key="methods").value == ["tv"]


def test_resolve_under_root_refuses_escapes(tmp_path):
    root = tmp_path / "root"
    (root / "ok").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    assert resolve_under_root(root, "ok") == (root / "ok").resolve()
    for bad in ("../outside", str(outside), "link", "ok/../../outside"):
        with pytest.raises(ValueError):
            resolve_under_root(root, bad)


def test_bad_uploads_give_clear_messages(tmp_path, phantom_3d):
    with pytest.raises(ValueError, match="upload a .nii"):
        scan_from_upload("notes.txt", b"hello")
    with pytest.raises(ValueError, match="not a valid zip"):
        scan_from_upload("series.zip", b"PK\x03\x04garbage")
    with pytest.raises(ValueError, match="broken.nii.gz"):
        scan_from_upload("broken.nii.gz", b"\x1f\x8b\x08not really")
    folder = tmp_path / "s"
    write_dicom_slices(folder, phantom_3d[:3])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in folder.iterdir():
            zf.write(f, f.name)
    scan = scan_from_upload("series.zip", buf.getvalue())
    assert scan.array.shape == (3, 24, 24)


# --- issue #29: every method side by side, the CLI's warnings, sidebar state, metrics that read right ---

def _elements(at, kind: str) -> list:
    found = []

    def walk(node):
        if getattr(node, "type", "") == kind:
            found.append(node)
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return found


def _captions(at) -> list[str]:
    return [img.caption for el in _elements(at, "image") for img in el.proto.imgs]


@pytest.mark.timeout(600)
def test_every_method_gets_residual_and_error_maps_and_the_training_range_is_warned():
    at = _app()
    at.multiselect(key="methods").set_value(["dae:mr-2d", "tv"]).run()
    caps = _captions(at)
    for method in ("dae:mr-2d", "tv"):  # not only the first method
        assert any(c.startswith(f"residual {method} (rms") and c.endswith("a.u.)") for c in caps), caps
        assert any(c.startswith(f"error {method} (rms") for c in caps), caps
    assert any(c.startswith("error noisy") for c in caps)
    assert sum("colour bar" in c and not c.startswith("anomaly") for c in caps) == 2  # residuals, errors
    assert not at.warning  # rician 0.05: inside mr-2d's training range rician:0.002-0.09
    assert "rician:0.002-0.09" in at.slider(key="level").help
    at.slider(key="level").set_value(0.15).run()
    assert any("0.15 is outside the range dae:mr-2d was trained on" in w.value for w in at.warning)
    at.slider(key="level").set_value(0.05).run()
    at.selectbox(key="noise_kind").set_value("gaussian").run()
    assert any("trained on rician noise" in w.value and "not gaussian" in w.value for w in at.warning)
    # the chart: best first, an axis title with units, an axis that does not start at 0
    spec = json.loads(_elements(at, "vega_lite_chart")[0].proto.spec)
    x, y = spec["layer"][0]["encoding"]["x"], spec["layer"][0]["encoding"]["y"]
    assert x["title"] == "PSNR fg volume (dB): higher is better" and x["scale"]["zero"] is False
    table = at.table[0].value
    assert y["sort"] == list(table["PSNR fg volume (dB)"].sort_values(ascending=False).index)
    assert 0 < x["scale"]["domain"][0] < table["PSNR fg volume (dB)"].min()


@pytest.mark.timeout(600)
def test_switching_scans_keeps_plane_box_image_and_methods_in_step():
    at = _app()
    at.multiselect(key="methods").set_value(["dae:mr-2d", "tv"]).run()
    at.selectbox(key="plane").set_value("sagittal").run()
    assert any(c.startswith("noisy · sagittal") for c in _captions(at))
    at.selectbox(key="sample_pick").set_value("ct_abdomen_dicom").run()  # another modality, 3 slices
    assert not at.exception
    plane = at.selectbox(key="plane").value
    assert any(c.startswith(f"noisy · {plane} ") for c in _captions(at))  # the box names what is shown
    assert at.multiselect(key="methods").value == ["dae:ct-2d", "tv"]  # carried over, not reset
    assert any(c.endswith("HU") for c in _captions(at) if "colour bar" in c)  # colour bars in HU
    at.selectbox(key="sample_pick").set_value("phantom_shepp_logan_2d.nii.gz").run()  # 2D: axial only
    assert at.selectbox(key="plane").value == "axial" and any(c.startswith("noisy · axial") for c in _captions(at))
    assert at.multiselect(key="methods").value == ["dae:mr-2d", "tv"]


def test_difference_maps_are_diverging_centred_at_zero_and_share_one_scale():
    from denoise.viewer.compare import diverging_rgb, nice_limit, symmetric_limit

    rgb = diverging_rgb(np.array([[-100.0, -50.0, 0.0, 50.0, 100.0]]), 50.0).astype(int)[0]
    assert rgb.shape == (5, 3)
    assert rgb[2].min() > 235 and np.ptp(rgb[2]) < 12  # 0 is white
    assert rgb[3, 0] > rgb[3, 2] + 50 and rgb[1, 2] > rgb[1, 0] + 50  # +limit red, -limit blue
    np.testing.assert_array_equal(rgb[4], rgb[3])  # clipped beyond the limit
    np.testing.assert_array_equal(rgb[0], rgb[1])
    assert [nice_limit(v) for v in (37.2, 60.0, 0.013, 101.0, 0.0)] == [40.0, 60.0, 0.015, 150.0, 1.0]
    rng = np.random.default_rng(0)
    small, large = rng.normal(0, 5, (64, 64)), rng.normal(0, 20, (64, 64))
    large[0, 0] = 1e6  # one extreme voxel does not set the scale
    limit = symmetric_limit([small, large])
    assert np.percentile(np.abs(np.concatenate([small.ravel(), large.ravel()])), 99) <= limit < 100
    assert symmetric_limit([small]) < limit  # the scale is shared: set by the widest map of the row
    assert symmetric_limit([np.zeros((4, 4))]) == 1.0


def test_residual_and_error_for_every_method():
    from denoise.viewer.compare import difference_slices

    clean = np.full((8, 8), 100.0, np.float32)
    noisy = clean + np.arange(64, dtype=np.float32).reshape(8, 8)
    den = {"a": noisy - 1, "b": noisy - 2}
    res, err = difference_slices(noisy, den, clean)
    assert list(res) == ["a", "b"] and list(err) == ["noisy", "a", "b"]
    np.testing.assert_allclose(res["b"], 2.0)  # noisy - denoised
    np.testing.assert_allclose(err["a"], noisy - 1 - clean)  # denoised - clean, signed
    np.testing.assert_allclose(err["noisy"], noisy - clean)
    res, err = difference_slices(noisy, den, None)
    assert list(res) == ["a", "b"] and err == {}


def test_colour_bar_units_and_zoom_of_colour_images():
    from denoise.viewer.compare import colorbar_png, scan_units, zoom_center

    assert scan_units("CT") == "HU" and scan_units("MR") == "a.u."
    png = colorbar_png(40.0, "HU", "residual")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    z = zoom_center(np.zeros((100, 60, 3), np.uint8), 2.0)
    assert z.shape == (100, 60, 3)
    assert zoom_center(np.zeros((10, 10)), 1.0).shape == (10, 10)


def test_best_is_the_highest_score_or_the_lowest_noise():
    from denoise.viewer.compare import best_methods, chart_points, metric_direction

    sim = [{"method": "noisy", "PSNR fg volume (dB)": 26.0, "seconds": 0.0},
           {"method": "nlm", "PSNR fg volume (dB)": 30.1, "seconds": 1.0},
           {"method": "dae:mr-2d", "PSNR fg volume (dB)": 31.5, "seconds": 2.0}]
    assert best_methods(sim, "PSNR fg volume (dB)") == {"dae:mr-2d"}
    assert best_methods(sim, "seconds") == set() and metric_direction("data range (HU)") is None
    points, (lo, hi) = chart_points(sim, "PSNR fg volume (dB)")
    assert [m for m, _ in points] == ["dae:mr-2d", "nlm", "noisy"]
    assert 20 < lo < 26 and 31.5 < hi < 35
    assert (31.5 - 30.1) / (hi - lo) > 0.15  # a 1.4 dB gap is a visible part of the axis
    col = "noise sigma est. (% of ref. intensity)"
    real = [{"method": "noisy", col: 5.0}, {"method": "nlm", col: 1.2}, {"method": "tv", col: 2.0}]
    assert best_methods(real, col) == {"nlm"}  # the noisy input was highlighted as best before
    points, (lo, hi) = chart_points(real, col)
    assert [m for m, _ in points] == ["nlm", "tv", "noisy"] and 0 <= lo < 1.2 and hi > 5.0


def test_metric_tables_carry_units(phantom_3d):
    from denoise.metrics import estimate_sigma
    from denoise.normalize import reference_intensity
    from denoise.scan import Scan
    from denoise.viewer.support import metrics_rows, noise_column

    mr = Scan(phantom_3d * 100, (1.0, 1.0, 1.0), modality="MR")
    noisy = mr.with_array(mr.array + np.random.default_rng(0).normal(0, 5, mr.array.shape).astype(np.float32))
    rows = metrics_rows(mr, noisy, {"id": (noisy.array, 0.1)}, plane="axial", index=5)
    assert {"PSNR fg volume (dB)", "PSNR fg slice (dB)", "data range (a.u.)", "seconds"} <= set(rows[0])
    rows = metrics_rows(None, noisy, {}, plane="axial", index=5)
    expect = 100 * estimate_sigma(noisy.array[5]) / reference_intensity(noisy.array)
    assert rows[0][noise_column("MR")] == pytest.approx(expect, abs=1e-3)
    ct = Scan(phantom_3d * 1000 - 1000, (1.0, 1.0, 1.0), modality="CT")
    assert noise_column("CT") in metrics_rows(None, ct, {}, plane="axial", index=5)[0]
    thin = Scan(mr.array[:3], (1.0, 1.0, 1.0), modality="MR")  # a sagittal slice 3 voxels high: no SSIM, no crash
    row = metrics_rows(thin, thin, {}, plane="sagittal", index=5)[0]
    assert np.isnan(row["SSIM fg slice"]) and np.isfinite(row["SSIM fg volume"])


def test_noise_outside_the_training_range_is_warned():
    from denoise.viewer.advice import noise_range_warning, real_noise_warning

    trained = "rician:0.002-0.09"
    assert noise_range_warning("rician:0.05", trained, "mr-2d") is None
    assert "0.15 is outside the range mr-2d was trained on" in noise_range_warning("rician:0.15", trained, "mr-2d")
    assert "not gaussian" in noise_range_warning("gaussian:0.05", trained, "mr-2d")
    assert noise_range_warning("gaussian:0.05", "rician:0.01-0.09|gaussian:0.01-0.05", "m") is None
    assert "dose fraction 0.5" in noise_range_warning("lowdose:0.5", "lowdose:0.001-0.25", "ct-2d")
    assert noise_range_warning("rician:0.5", None, "m") is None  # unknown training noise: no verdict
    assert noise_range_warning("rician:0.5", "future:1", "m") is None
    assert real_noise_warning(0.10, trained, "mr-2d") is None  # within the margin of a rough estimate
    assert "about 20.0%" in real_noise_warning(0.20, trained, "mr-2d")
    assert real_noise_warning(0.9, "lowdose:0.001-0.25", "ct-2d") is None


def test_model_and_scan_warnings_from_checkpoint_info():
    from denoise import load_model
    from denoise.viewer.advice import model_warnings, scan_warnings, training_noise

    mr2d = load_model("mr-2d", device="cpu")
    assert training_noise(mr2d.info) == mr2d.info["train"]["noise"] == "rician:0.002-0.09"
    assert training_noise({}) is None
    other = model_warnings("upload:ct-2d.pt", "CT", "lowdose:0.001-0.25", "MR", spec="rician:0.05")
    assert len(other) == 1 and "trained on CT scans and this scan is MR" in other[0]
    assert "upload:ct-2d.pt" in other[0]
    assert model_warnings("dae:mr-2d", "MR", "rician:0.002-0.09", "MR", spec="rician:0.05") == []
    assert model_warnings("dae:mr-2d", "MR", "rician:0.002-0.09", "MR", real_level=0.3)
    hu = np.full((4, 16, 16), -1000.0, np.float32)
    hu[:, 4:12, 4:12] = 40
    assert scan_warnings("CT", hu) == []
    assert "Hounsfield" in scan_warnings("CT", hu + 1024)[0]  # stored values, not rescaled
    assert scan_warnings("MR", hu + 1024) == []


def test_sidebar_rules_for_scan_choice_methods_and_checkpoint_names():
    from denoise.viewer.advice import carry_methods, checkpoint_label, root_choice

    opts = ["a", "sub/b.nii.gz"]
    assert root_choice("a", "", opts) == ("a", "list")
    assert root_choice("gone", "", opts) == ("a", "list")
    assert root_choice("a", " ./sub/b.nii.gz/ ", opts) == ("sub/b.nii.gz", "list")
    assert root_choice("a", "sub", opts) == ("sub", "typed")
    assert root_choice("a", "../x", opts) == ("../x", "typed")  # the reader refuses it, with its message
    mr = ["dae:mr-2d", "dae:mr-3d", "sparse:sparse-mr-2d", "nlm", "tv"]
    ct = ["dae:ct-2d", "nlm", "tv"]
    assert carry_methods(None, ct, ["dae:ct-2d", "nlm"]) == ["dae:ct-2d", "nlm"]
    assert carry_methods(["tv", "dae:mr-2d", "dae:mr-3d"], ct, ["nlm"]) == ["tv", "dae:ct-2d"]
    assert carry_methods(["dae:ct-2d", "nlm"], mr, ["nlm"]) == ["dae:mr-2d", "nlm"]
    assert carry_methods(["sparse:sparse-mr-2d"], ct, ["nlm"]) == ["nlm"]  # nothing carries over
    assert carry_methods([], ct, ["nlm"]) == []  # an emptied selection stays empty
    assert checkpoint_label("my_model.pt") == "upload:my_model.pt"
    assert checkpoint_label("C:\\runs\\best.pt") == "upload:best.pt"


@pytest.mark.timeout(600)
def test_captions_give_slice_position_and_orientation_and_zoom_offers_pan():
    at = _app()
    at.selectbox(key="plane").set_value("coronal").run()
    caption = next(c for c in _captions(at) if c.startswith("noisy · coronal"))
    assert " mm · top S, left " in caption  # position in world mm, superior up
    assert not [s for s in at.slider if s.key in ("pan_x", "pan_y")]
    at.slider(key="zoom").set_value(2.0).run()
    assert {s.key for s in at.slider} >= {"pan_x", "pan_y"} and not at.exception


@pytest.mark.timeout(600)
def test_uncertainty_row_shows_each_learned_method_with_its_colour_bar():
    at = _app()
    methods = at.multiselect(key="methods").value
    learned = [m for m in methods if ":" in m]
    assert learned  # the default selection holds a shipped model
    at.checkbox(key="uncertainty").check().run()
    assert not at.exception
    assert any(m.value.startswith("**Uncertainty**") for m in at.markdown)
    # (AppTest does not expose st.image; the row's captions travel with the markdown above it)
    at.multiselect(key="methods").set_value(["nlm"]).run()
    assert any("for learned methods" in c.value for c in at.caption)


@pytest.mark.timeout(600)
def test_k_space_noise_and_the_noise_level_map_are_shown():
    """The simulate mode offers SENSE-accelerated k-space noise, whose level varies across the image;
    a learned output told a map of the noise level (`denoise run --noise-level auto`) says so, exactly
    when the model chose one."""
    from denoise import add_noise, load_model
    from denoise.io import read_scan
    from denoise.viewer.app import MRKSPACE_OPTIONS
    from denoise.viewer.support import SAMPLE_DIR

    at = _app()
    at.selectbox(key="noise_kind").set_value("mrkspace").run()
    at.slider(key="level").set_value(0.05).run()
    at.multiselect(key="methods").set_value(["dae:mr-2d", "tv"]).run()
    assert not at.exception
    assert set(at.table[0].value.index) == {"noisy", "dae:mr-2d", "tv"}
    noisy = add_noise(read_scan(SAMPLE_DIR / "mr_t1_brain_slab.nii.gz"), f"mrkspace:0.05{MRKSPACE_OPTIONS}", seed=0)
    chose_map = load_model("mr-2d", device="cpu").with_noise_level(noisy.array, "auto")[0].sigma_map
    assert chose_map  # this noise does vary across the sample T1: the positive case is what is tested
    captions = [c.value for c in at.caption if "map of the noise level" in c.value]
    assert len(captions) == 1 and captions[0].startswith("mr-2d:") and "tv" not in captions[0]
    at.selectbox(key="noise_kind").set_value("rician").run()  # uniform noise: one level per slice, no caption
    assert not [c for c in at.caption if "map of the noise level" in c.value]
