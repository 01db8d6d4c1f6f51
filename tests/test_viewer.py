"""Viewer: app logic with streamlit's AppTest, and one end-to-end run in headless Chromium."""

import io
import re
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLE, write_dicom_slices

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
    assert table.loc["nlm", "PSNR fg volume"] > table.loc["noisy", "PSNR fg volume"]
    assert at.radio[1].value == "simulate"
    assert any("Research use only" in c.value for c in at.caption)


@pytest.mark.timeout(600)
def test_method_selection_and_real_mode():
    at = _app()
    at.multiselect[0].set_value(["tv", "nlm"]).run()
    assert set(at.table[0].value.index) == {"noisy", "tv", "nlm"}
    at.radio[1].set_value("real").run()
    assert not at.exception
    table = at.table[0].value
    assert "noise sigma (est.)" in table.columns and "PSNR fg volume" not in table.columns


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.browser
@pytest.mark.timeout(600)
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian chromium not installed")
@pytest.mark.skipif(not SAMPLE.exists(), reason="no sample data")
def test_end_to_end_in_chromium(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    port = _free_port()
    denoise_bin = shutil.which("denoise") or str(Path(sys.executable).parent / "denoise")
    proc = subprocess.Popen([denoise_bin, "view", "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                              "--disable-component-update", "--disable-sync", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            deadline = time.time() + 60
            while True:
                try:
                    page.goto(f"http://127.0.0.1:{port}", timeout=10_000)
                    break
                except Exception:
                    if time.time() > deadline:
                        raise
                    time.sleep(1)
            page.get_by_text("Metrics").wait_for(timeout=240_000)
            page.locator("[data-testid='stTable']").first.wait_for(timeout=240_000)
            # select a second method
            box = page.locator("[data-testid='stMultiSelect'] input").first
            box.click()
            box.fill("tv")
            page.get_by_role("option", name="tv", exact=True).click()
            page.keyboard.press("Escape")
            page.locator("[data-testid='stTable'] th", has_text="tv").first.wait_for(timeout=240_000)
            # move the slice slider with the keyboard
            slider = page.get_by_role("slider").first
            slider.focus()
            for _ in range(3):
                page.keyboard.press("ArrowRight")
            page.wait_for_timeout(1500)
            page.get_by_text("Running").wait_for(state="hidden", timeout=240_000)
            # after the rerun Streamlit swaps each image's src; wait until every image has decoded
            # (a fixed check right after "Running" hides races the browser's image loading)
            page.wait_for_function(
                """() => {
                    const imgs = [...document.querySelectorAll("[data-testid='stImage'] img")];
                    return imgs.length >= 4 && imgs.every(e => e.complete && e.naturalWidth > 0);
                }""",
                timeout=120_000,
            )
            table_text = page.locator("[data-testid='stTable']").first.inner_text()
            page.screenshot(path=str(tmp_path / "viewer.png"), full_page=True)
            assert (tmp_path / "viewer.png").stat().st_size > 10_000
            browser.close()
        assert "tv" in table_text and "nlm" in table_text
        numbers = [float(x) for x in re.findall(r"\b\d+\.\d+\b", table_text)]
        assert len(numbers) >= 6 and any(15 < x < 60 for x in numbers)  # PSNR values in dB
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    time.sleep(1)
    with socket.socket() as sock:  # `denoise view` is the server: stopping it leaves nothing listening
        assert sock.connect_ex(("127.0.0.1", port)) != 0
