"""Fault injection for `denoise run` (issue #23): each numbered case of the issue, reproduced on small
real data (sample_data) or files made here, with the fixed behaviour asserted: exit code, message,
inputs byte-identical (sha256), nothing written outside OUT, manifest rows matching the disk.

Cases that need a user without root's DAC override (unreadable input, read-only OUT) run the CLI
under ``setpriv`` with every capability dropped when the tests run as root.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import SAMPLE, write_dicom_slices

from denoise.cli import main
from denoise.outdir import OutputLock, lock_name

CLI = [sys.executable, "-c", "import sys; from denoise.cli import main; sys.exit(main(sys.argv[1:]))"]
FAST = ["-m", "gaussian", "--quiet", "--device", "cpu"]


# --- helpers ---------------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under root (symlinks recorded by their target, never followed)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_file():
            try:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            except PermissionError:
                out[rel] = "unreadable"
        else:
            out[rel] = "dir"
    return out


def manifest(out: Path, name: str = "manifest.csv") -> dict[str, dict]:
    with open(out / name, newline="", encoding="utf-8", errors="surrogateescape") as fh:
        return {r["input"]: r for r in csv.DictReader(fh)}


def assert_manifest_matches_disk(out: Path) -> dict[str, dict]:
    """Every row's output exists, and every output on disk has a row (the manifest describes OUT)."""
    rows = manifest(out)
    claimed = {r[k] for r in rows.values() for k in ("output", "noise_map") if r.get(k)}
    for rel in claimed:
        assert (out / rel).exists(), f"manifest names {rel}, which is not on disk"
    on_disk = set()
    for p in out.rglob("*"):
        rel = p.relative_to(out).as_posix()
        if p.name.startswith(".") or rel in ("manifest.csv", "summary.json"):
            continue
        if p.is_file() and p.suffix == ".dcm":
            on_disk.add(p.parent.relative_to(out).as_posix())
        elif p.is_file():
            on_disk.add(rel)
    assert on_disk <= claimed, f"outputs on disk without a manifest row: {sorted(on_disk - claimed)}"
    return rows


def nifti(path: Path, shape=(24, 24, 8), seed: int = 0, scale: float = 1.0) -> Path:
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[: shape[2], : shape[1], : shape[0]]
    vol = (500 + 300 * (((y - shape[1] / 2) ** 2 + (x - shape[0] / 2) ** 2) < (shape[0] / 3) ** 2)) * scale
    vol = vol + rng.normal(0, 20, vol.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.abs(vol).T.astype(np.float32), np.eye(4)), str(path))
    return path


def run_cli(args: list[str], *, drop_caps: bool = False, cwd: Path | None = None, timeout: float = 300):
    """The CLI in a subprocess; ``drop_caps`` runs it without root's DAC override (as a normal user would)."""
    cmd = CLI + args
    if drop_caps and os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot drop the DAC override")
        cmd = [setpriv, "--inh-caps=-all", "--bounding-set=-all", *cmd]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


@pytest.fixture
def tree(tmp_path) -> Path:
    """IN with a NIfTI scan, a nested NIfTI and the sample CT DICOM series."""
    src = tmp_path / "in"
    nifti(src / "x.nii.gz")
    nifti(src / "a" / "x.nii.gz", seed=1, scale=2.0)
    shutil.copytree(SAMPLE / "ct_abdomen_dicom", src / "ct")
    return src


# --- 1, 2: no output may land on an input ----------------------------------------------------------


def test_single_file_input_into_its_own_folder_is_refused(tmp_path):
    d = tmp_path / "d"
    scan = nifti(d / "scan.nii.gz")
    before = snapshot(tmp_path)
    assert main(["run", "-i", str(scan), "-o", str(d), *FAST]) == 2
    assert main(["run", "-i", str(scan), "-o", str(d / "sub" / ".."), *FAST]) == 2
    assert snapshot(tmp_path) == before  # the scan byte-identical, no manifest, nothing written


@pytest.mark.parametrize("layout", ["out_contains_in", "in_contains_out", "same", "dot", "dotdot",
                                    "symlink_to_in", "symlinked_subfolder_into_in"])
def test_overlapping_input_and_output_are_refused_before_anything_is_written(tmp_path, layout, capsys):
    nest = tmp_path / "nest"
    src = nest / "a"
    nifti(src / "x.nii.gz")
    nifti(src / "a" / "x.nii.gz", seed=1)  # IN=nest/a, OUT=nest: its output would be nest/a/x.nii.gz, an input
    nifti(src / "sub" / "y.nii.gz", seed=2)
    cwd = None
    if layout == "out_contains_in":
        out = nest
    elif layout == "in_contains_out":
        out = src / "out"
    elif layout == "same":
        out = src
    elif layout == "dot":
        cwd, out = src, Path(".")
    elif layout == "dotdot":
        out = src / "a" / ".."
    elif layout == "symlink_to_in":
        out = tmp_path / "link"
        out.symlink_to(src, target_is_directory=True)
    else:  # OUT/sub is a link into IN/sub: OUT/sub/y.nii.gz would overwrite IN/sub/y.nii.gz
        out = tmp_path / "out"
        out.mkdir()
        (out / "sub").symlink_to(src / "sub", target_is_directory=True)
    before = snapshot(tmp_path)
    old = Path.cwd()
    try:
        if cwd:
            os.chdir(cwd)
        rc = main(["run", "-i", str(src), "-o", str(out), *FAST])
    finally:
        os.chdir(old)
    assert rc == 2
    assert "error" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_nested_but_separate_folders_still_work(tmp_path):
    """The rule is about overlap, not closeness: IN and OUT side by side in one parent are fine."""
    src = tmp_path / "p" / "in"
    nifti(src / "x.nii.gz")
    before = snapshot(src)
    assert main(["run", "-i", str(src), "-o", str(tmp_path / "p" / "out"), *FAST]) == 0
    assert snapshot(src) == before
    assert manifest(tmp_path / "p" / "out")["x.nii.gz"]["status"] == "ok"


# --- 3: an exclusive lock on OUT --------------------------------------------------------------------


def test_a_second_run_into_a_locked_out_is_refused_and_touches_nothing(tree, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    in_flight = out / ".x.nii.gz.0a1b2c3d.tmp.nii.gz"  # the first run's temporary, being written
    with OutputLock(out):
        in_flight.write_bytes(b"half")
        rc = main(["run", "-i", str(tree), "-o", str(out), *FAST])
        err = capsys.readouterr().err
        assert rc == 2
        assert "in use by another denoise run" in err and f"pid {os.getpid()}" in err
        assert in_flight.read_bytes() == b"half", "the refused run swept a live run's temporary"
        assert not (out / "manifest.csv").exists()
    assert not (out / lock_name()).exists(), "the lock is released on exit"
    assert main(["run", "-i", str(tree), "-o", str(out), *FAST]) == 0


def test_two_runs_started_on_one_out(tmp_path):
    """Run A holds OUT; run B, started while A works, exits 2 at once; A finishes untouched."""
    src = tmp_path / "in"
    for i in range(12):
        nifti(src / f"v{i}.nii.gz", shape=(96, 96, 32), seed=i)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    a = subprocess.Popen(CLI + ["run", "-i", str(src), "-o", str(out), "-m", "nlm", "--quiet"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / lock_name()).exists():
        time.sleep(0.02)
    b = run_cli(["run", "-i", str(src), "-o", str(out), "-m", "nlm", "--quiet"])
    a_running = a.poll() is None
    a_out, a_err = a.communicate(timeout=600)
    assert a_running, "run A ended before run B started; make the inputs bigger"
    assert b.returncode == 2 and "in use by another denoise run" in b.stderr
    assert a.returncode == 0, a_err
    rows = assert_manifest_matches_disk(out)
    assert sorted(rows) == sorted(f"v{i}.nii.gz" for i in range(12)) and all(r["status"] == "ok" for r in rows.values())
    assert not list(out.glob(".*"))  # no temporaries, lock released


def test_a_killed_runs_stale_lock_is_taken_over(tree, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / lock_name()).write_text(json.dumps({"pid": dead.pid, "host": "here", "started": time.time() - 60}))
    assert main(["run", "-i", str(tree), "-o", str(out), *FAST]) == 0
    assert not (out / lock_name()).exists()
    assert_manifest_matches_disk(out)


def test_parts_of_one_split_share_out_but_a_whole_run_does_not(tree, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    with OutputLock(out, num_parts=2, part_id=0):
        assert main(["run", "-i", str(tree), "-o", str(out), "--num-parts", "2", "--part-id", "1", *FAST]) == 0
        assert main(["run", "-i", str(tree), "-o", str(out), *FAST]) == 2
        assert main(["run", "-i", str(tree), "-o", str(out), "--num-parts", "2", "--part-id", "0", *FAST]) == 2
        assert main(["run", "-i", str(tree), "-o", str(out), "--num-parts", "3", "--part-id", "2", *FAST]) == 2
    assert "in use" in capsys.readouterr().err


# --- 4: the manifest always describes what is on disk ------------------------------------------------


def test_rerun_without_continue_interrupted_keeps_rows_for_outputs_on_disk(tree, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert main(["run", "-i", str(tree), "-o", str(out), *FAST]) == 0
    first = assert_manifest_matches_disk(out)
    import denoise.batch as batch

    real, calls = batch.process_scan, []

    def dies_on_the_second(source, opts):
        calls.append(source.relpath)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user's Ctrl-C, or the kill, in the middle of the rerun
        return real(source, opts)

    monkeypatch.setattr(batch, "process_scan", dies_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        batch.denoise_folder(tree, out, model="gaussian", progress=False)
    rows = assert_manifest_matches_disk(out)
    assert {k for k, r in rows.items() if r["status"] == "ok"} == {k for k, r in first.items() if r["status"] == "ok"}
    assert not (out / lock_name()).exists()


@pytest.mark.parametrize("when", ["rerun", "manifest_write"])
def test_sigkill_during_a_rerun_or_a_manifest_write_leaves_a_manifest_that_matches(tree, tmp_path, when):
    out = tmp_path / "out"
    assert main(["run", "-i", str(tree), "-o", str(out), *FAST]) == 0
    before = snapshot(tree)
    # the rerun kills itself with SIGKILL: on its 2nd scan, or between writing the manifest's
    # temporary and renaming it (the manifest is then the earlier one, a .tmp beside it)
    hook = {
        "rerun": "import denoise.batch as b; f = b.process_scan; n = [0]\n"
                 "def g(s, o):\n n[0] += 1\n if n[0] == 2: os.kill(os.getpid(), signal.SIGKILL)\n return f(s, o)\n"
                 "b.process_scan = g\n",
        "manifest_write": "import denoise.manifest as m; r = m.os.replace; n = [0]\n"
                          "def g(a, c):\n if str(c).endswith('manifest.csv'):\n  n[0] += 1\n"
                          "  if n[0] == 2: os.kill(os.getpid(), signal.SIGKILL)\n return r(a, c)\n"
                          "m.os.replace = g\n",
    }[when]
    code = ("import os, signal, sys\n" + hook + "from denoise.cli import main\nsys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, "run", "-i", str(tree), "-o", str(out), *FAST],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert (out / lock_name()).exists(), "a SIGKILLed run cannot remove its lock file"
    rows = assert_manifest_matches_disk(out)
    assert all(r["status"] == "ok" for r in rows.values())
    assert main(["run", "-i", str(tree), "-o", str(out), "--continue", *FAST]) == 0  # stale lock taken over
    assert_manifest_matches_disk(out)
    assert not [p for p in out.rglob(".*")], "temporaries or the lock left behind"
    assert snapshot(tree) == before


# --- 5-7, 9: one bad file never stops the batch; rows name the file; no absolute paths ---------------


def test_links_loops_unreadable_and_broken_files_each_fail_alone(tmp_path):
    parent = tmp_path / "Doe^John_1234567"  # a parent folder named after the patient
    src = parent / "in"
    nifti(src / "a_good.nii.gz")
    nifti(src / "z_good.nii.gz", seed=3)
    (src / "loop1.nii.gz").symlink_to(src / "loop2.nii.gz")
    (src / "loop2.nii.gz").symlink_to(src / "loop1.nii.gz")
    (src / "dangling.nii.gz").symlink_to(parent / "gone.nii.gz")
    (src / "IM0001").symlink_to(parent / "gone_dicom")
    nifti(src / "locked.nii.gz", seed=4).chmod(0)
    (src / "garbage.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    series = src / "series"
    files = write_dicom_slices(series, np.full((3, 16, 16), 100.0, np.float32))
    files[1].write_bytes(files[1].read_bytes()[:-200])  # header fine, pixel data cut short
    before = snapshot(parent)
    out = tmp_path / "out"
    proc = run_cli(["run", "-i", str(src), "-o", str(out), "-m", "gaussian", "--device", "cpu"], drop_caps=True)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    rows = assert_manifest_matches_disk(out)
    assert rows["a_good.nii.gz"]["status"] == "ok" and rows["z_good.nii.gz"]["status"] == "ok"
    reasons = {k: r["reason"] for k, r in rows.items()}
    assert "loop" in reasons["loop1.nii.gz"] and "loop" in reasons["loop2.nii.gz"]
    assert "broken symbolic link" in reasons["dangling.nii.gz"] and "broken symbolic link" in reasons["IM0001"]
    assert "permission denied" in reasons["locked.nii.gz"]
    assert rows["garbage.nii.gz"]["status"] == "failed"
    bad_series = [r for k, r in rows.items() if k.startswith("series/")]
    assert len(bad_series) == 1 and bad_series[0]["status"] == "failed"
    assert bad_series[0]["files"] == f"series/{files[1].name}", "the row names the file to look at"
    for r in rows.values():
        assert r["status"] in ("ok", "failed") and (r["status"] == "ok" or r["reason"])
    text = (out / "manifest.csv").read_text() + proc.stderr + proc.stdout
    assert "Doe^John" not in text, "a parent folder's name (absolute paths) leaks into the manifest or log"
    assert snapshot(parent) == before


# --- 6, 8, 10: refusals with exit 2 before anything is written ----------------------------------------


@pytest.mark.parametrize("case", ["readonly_out", "readonly_parent"])
def test_unwritable_out_is_refused_up_front(tree, tmp_path, case):
    ro = tmp_path / "ro"
    ro.mkdir()
    out = ro if case == "readonly_out" else ro / "new_out"
    ro.chmod(0o555)
    try:
        proc = run_cli(["run", "-i", str(tree), "-o", str(out), *FAST], drop_caps=True)
    finally:
        ro.chmod(0o755)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "cannot" in proc.stderr and "folder" in proc.stderr
    assert list(ro.iterdir()) == []


@pytest.mark.parametrize("case", ["unknown", "missing", "corrupt", "pickled"])
def test_a_bad_model_is_refused_once_before_the_run(tree, tmp_path, case, capsys):
    if case == "unknown":
        model = "no-such-model"
    elif case == "missing":
        model = str(tmp_path / "nothere.pt")
    elif case == "corrupt":
        model = str(tmp_path / "corrupt.pt")
        Path(model).write_bytes(os.urandom(2048))
    else:  # a checkpoint that would run code when unpickled
        model = str(tmp_path / "evil.pt")
        torch.save({"state_dict": {}, "info": Exploit(tmp_path / "pwned")}, model)
    out = tmp_path / "out"
    assert main(["run", "-i", str(tree), "-o", str(out), "-m", model, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "cannot be used" in err and err.count("\n") <= 3
    assert not out.exists()
    assert not (tmp_path / "pwned").exists()


class Exploit:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch '{self.path}'",))


@pytest.mark.parametrize("content", ["empty", "no_scans"])
def test_run_on_an_input_without_scans_says_so(tmp_path, content, capsys):
    src = tmp_path / "in"
    src.mkdir()
    if content == "no_scans":
        (src / "notes.txt").write_text("hello")
    out = tmp_path / "out"
    assert main(["run", "-i", str(src), "-o", str(out), *FAST]) == 2
    assert "no DICOM or NIfTI scans found" in capsys.readouterr().err
    assert not out.exists()
