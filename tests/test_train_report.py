"""Training that reports (issue #29, item 12): the split, the starting score, metrics.csv, summary.json
and a warning when fine-tuning made the model worse."""

import csv
import dataclasses
import json
import logging

import numpy as np

from denoise.checkpoint import save_checkpoint
from denoise.config import ModelConfig, TrainConfig
from denoise.models import build_model
from denoise.scan import Scan
from denoise.train import fit
from denoise.train_report import split_lines, training_summary


def test_summary_warns_only_when_the_run_ended_below_its_start():
    hist = [{"epoch": 0, "val_psnr": 30.0}, {"epoch": 1, "val_psnr": 31.0}, {"epoch": 2, "val_psnr": 30.5}]
    summary, warning = training_summary(hist, {"val_psnr": 30.2})
    assert summary["best_epoch"] == 1 and summary["best_gain_db"] == 0.8 and summary["last_gain_db"] == 0.3
    assert warning is None
    summary, warning = training_summary(hist, {"val_psnr": 30.8})
    assert summary["last_gain_db"] < 0 and "worse" in warning and "30.80" in warning and "30.50" in warning
    assert training_summary(hist)[1] is None  # from scratch: no baseline, no warning


def test_split_lines_name_the_files():
    lines = split_lines([0, 2], [1], ["a/t1.nii.gz", "b/flair.nii.gz", "c/t2.nii.gz"])
    assert "t1.nii.gz" in lines[0] and "t2.nii.gz" in lines[0] and "flair.nii.gz" in lines[1]


def test_fit_writes_metrics_and_summary_and_scores_the_start(tmp_path, phantom_3d, caplog):
    cfg = ModelConfig(spatial_dims=2, channels=(4, 8))
    torch_net = build_model(cfg)
    save_checkpoint(tmp_path / "start.pt", torch_net, {"model": dataclasses.asdict(cfg)})
    train = TrainConfig(noise="gaussian:0.1", patch_size=16, batch_size=4, steps_per_epoch=2, epochs=2, val_patches=4,
                        device="cpu", lr=0.0)  # lr 0: every epoch scores exactly the start
    scans = [Scan(phantom_3d * f, (2, 1, 1), modality="MR") for f in (1.0, 0.8, 1.2)]
    with caplog.at_level(logging.INFO, logger="denoise.train"):
        fit(cfg, train, scans, tmp_path / "run", init=tmp_path / "start.pt", progress=False,
            data_summary={"files": ["a.nii.gz", "b.nii.gz", "c.nii.gz"]})
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["start", "0", "1"]
    assert np.allclose([float(r["val_psnr"]) for r in rows], float(rows[0]["val_psnr"]), atol=1e-4)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["epochs"] == 2 and abs(summary["best_gain_db"]) < 1e-3
    text = caplog.text
    assert "starting model (start.pt)" in text and "validation scans (1)" in text and ".nii.gz" in text
