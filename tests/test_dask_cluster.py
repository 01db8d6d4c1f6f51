"""`denoise run --scheduler` against a real Dask cluster: a `dask scheduler` and two `dask worker`
processes on loopback, each worker its own process with its own memory limit (not a LocalCluster
inside the test)."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from denoise.cli import main
from denoise.cluster import process_cluster
from denoise.io import read_scan

pytest.importorskip("distributed")

# deterministic and slow enough (about a second a scan) for a worker to be killed mid-run
METHOD = "nlm"
COMPARED = ("input", "status", "output", "model", "model_hash", "input_hash", "shape", "sigma_before", "sigma_after")


@pytest.fixture
def cluster(tmp_path):
    """(scheduler address, {worker name: process}) of a scheduler and two single-threaded workers."""
    with process_cluster(2, memory_limit="2GiB", log_dir=tmp_path / "logs") as (address, workers):
        yield address, workers


@pytest.fixture
def tree(tmp_path, phantom_3d):
    root = tmp_path / "in"
    rng = np.random.default_rng(0)
    for i in range(8):
        vol = np.tile(phantom_3d[:8], (1, 2, 2)) * (1 + 0.1 * i) + 40
        vol = (vol + rng.normal(0, 25, vol.shape)).astype(np.float32)
        (root / f"s{i % 2}").mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(vol.T.copy(), np.diag([1.0, 1.0, 2.0, 1.0])), str(root / f"s{i % 2}" / f"v{i}.nii.gz"))
    return root


def _rows(out: Path) -> dict[str, dict]:
    with open(out / "manifest.csv", newline="") as fh:
        return {r["input"]: r for r in csv.DictReader(fh)}


def _same_as_serial(out: Path, serial: Path) -> None:
    rows, ref = _rows(out), _rows(serial)
    assert rows.keys() == ref.keys()
    for key, r in ref.items():
        assert {k: rows[key][k] for k in COMPARED} == {k: r[k] for k in COMPARED}
        assert np.array_equal(read_scan(out / r["output"]).array, read_scan(serial / r["output"]).array)


@pytest.fixture
def serial(tree, tmp_path):
    out = tmp_path / "serial"
    assert main(["run", "-i", str(tree), "-o", str(out), "-m", METHOD, "--quiet"]) == 0
    return out


def test_run_on_a_real_cluster_equals_the_serial_run(cluster, tree, serial, tmp_path):
    address, _ = cluster
    out = tmp_path / "cluster"
    assert main(["run", "-i", str(tree), "-o", str(out), "-m", METHOD, "--scheduler", address, "--quiet"]) == 0
    _same_as_serial(out, serial)


def test_a_worker_killed_mid_run_loses_nothing(cluster, tree, serial, tmp_path):
    """Kill one worker (SIGKILL, as an out-of-memory kill or a lost node) once scans are done: the
    run completes on the other worker or stops with a manifest naming only finished scans, and
    --continue finishes the rest; the outputs then equal the serial run's."""
    address, workers = cluster
    out = tmp_path / "cluster"
    cmd = [sys.executable, "-m", "denoise.cli", "run", "-i", str(tree), "-o", str(out), "-m", METHOD,
           "--scheduler", address, "--quiet"]
    run = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and run.poll() is None:
        if (out / "manifest.csv").exists() and any(r["status"] == "ok" for r in _rows(out).values()):
            break
        time.sleep(0.05)
    done_at_kill = sum(r["status"] == "ok" for r in _rows(out).values())
    os.killpg(workers["w1"].pid, signal.SIGKILL)
    log = run.communicate(timeout=300)[0]
    assert done_at_kill < 8, "the run ended before the kill; nothing was tested"
    print(f"killed w1 after {done_at_kill} of 8 scans; the run exited {run.returncode}")
    rows = _rows(out)
    for r in rows.values():  # every row the manifest has is a whole, readable output
        if r["status"] == "ok":
            assert read_scan(out / r["output"]).array.size
    if run.returncode != 0:  # stopped cleanly: the rest is finished by --continue
        assert main(["run", "-i", str(tree), "-o", str(out), "-m", METHOD, "--scheduler", address, "--continue",
                     "--quiet"]) == 0, log
    _same_as_serial(out, serial)
    assert not [p for p in out.rglob(".*") if p.name != ".denoise-run.lock"]  # no temporaries left
