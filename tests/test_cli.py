import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import SAMPLE, tree_hash, write_dicom_slices

from denoise.checkpoint import load_checkpoint
from denoise.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_help_and_usage_errors(capsys):
    assert main(["--help"]) == 0
    capsys.readouterr()
    assert main(["run"]) == 2  # missing -i/-o
    assert "-i" in capsys.readouterr().err
    assert main(["simulate", "-i", "x", "-o", "y", "--noise", "salt:1"]) == 2
    err = capsys.readouterr().err
    assert "bad noise spec 'salt:1'" in err and "rician:LEVEL" in err  # names the bad value and the valid forms


def test_info_lists_series_without_patient_names(tmp_path, phantom_3d, capsys):
    write_dicom_slices(tmp_path / "d", phantom_3d)
    (tmp_path / "d" / "readme.txt").write_text("x")
    assert main(["info", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "16x24x24" in out and "MR" in out and "skipped" in out
    assert "Doe" not in out and "PID12345" not in out


def test_simulate_then_evaluate_round_trip(tmp_path, phantom_3d, capsys):
    src = tmp_path / "clean"
    write_dicom_slices(src / "series", phantom_3d)
    nib.save(nib.Nifti1Image(phantom_3d.T.copy(), np.eye(4)), str(src / "vol.nii.gz"))
    before = tree_hash(src)
    assert main(["simulate", "-i", str(src), "-o", str(tmp_path / "noisy"), "--noise", "rician:0.05", "--seed", "1"]) == 0
    assert tree_hash(src) == before
    a = nib.load(str(tmp_path / "noisy" / "vol.nii.gz")).get_fdata()
    assert main(["simulate", "-i", str(src), "-o", str(tmp_path / "noisy2"), "--noise", "rician:0.05", "--seed", "1"]) == 0
    np.testing.assert_array_equal(a, nib.load(str(tmp_path / "noisy2" / "vol.nii.gz")).get_fdata())
    assert not np.array_equal(a, phantom_3d.T)
    capsys.readouterr()
    assert main(["evaluate", "--denoised", str(tmp_path / "noisy"), "--reference", str(src)]) == 0
    out = capsys.readouterr().out
    values = [float(v) for v in re.findall(r"psnr=([\d.]+)", out)]
    assert len(values) == 2 and all(15 < v < 60 for v in values)
    assert (tmp_path / "noisy" / "evaluation.csv").exists()


def test_readme_test_line_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    lines = [ln for ln in readme.splitlines() if "pytest" in ln and ln.startswith("python -m venv")]
    assert len(lines) == 1 and lines[0] in ci


@pytest.mark.skipif(not SAMPLE.exists(), reason="no sample data")
def test_sample_data_is_readable():
    from denoise.io import discover_scans

    scans, skipped = discover_scans(SAMPLE)
    kinds = {(s.kind, s.load().modality) for s in scans}
    assert ("dicom", "CT") in kinds and ("nifti", "MR") in kinds and ("dicom", "MR") in kinds
    assert [s.relpath for s in skipped] == ["SOURCES.md"]


def test_train_cli_with_yaml_config(tmp_path, tiny_training_set):
    data, cfg = tiny_training_set
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--model", "dae", "--dims", "2", "--noise", "rician:0.05",
                 "--out", str(out), "--config", str(cfg), "--epochs", "2", "--steps-per-epoch", "3", "--quiet",
                 "--device", "cpu"]) == 0
    assert (out / "best.pt").exists() and (out / "last.pt").exists()
    assert load_checkpoint(out / "last.pt")[1]["noise"] == "rician:0.05"  # the option beats the config
    # without --noise the config's noise applies, not the CLI's default
    noisy_cfg = tmp_path / "noise.yaml"
    noisy_cfg.write_text(cfg.read_text().replace("train:\n", "train:\n  noise: gaussian:0.07\n"))
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "n"), "--config", str(noisy_cfg),
                 "--epochs", "1", "--steps-per-epoch", "1", "--quiet", "--device", "cpu"]) == 0
    assert load_checkpoint(tmp_path / "n" / "last.pt")[1]["noise"] == "gaussian:0.07"
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  learning_rate: 1\n")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "x"), "--config", str(bad)]) == 2


def test_train_cli_fine_tunes_a_checkpoint(tmp_path, tiny_training_set):
    data, cfg = tiny_training_set
    first = tmp_path / "first"
    assert main(["train", "--data", str(data), "--out", str(first), "--config", str(cfg), "--noise", "gaussian:0.05",
                 "--epochs", "1", "--steps-per-epoch", "2", "--quiet", "--device", "cpu"]) == 0
    start, start_info, _ = load_checkpoint(first / "last.pt")
    out = tmp_path / "tuned"
    assert main(["train", "--data", str(data), "--init", str(first / "last.pt"), "--out", str(out),
                 "--epochs", "1", "--steps-per-epoch", "2", "--quiet", "--device", "cpu"]) == 0
    tuned, info, _ = load_checkpoint(out / "last.pt")
    # architecture, scaling, patch size and noise come from the checkpoint; fine-tuning learning rate
    assert info["model"] == start_info["model"] and info["normalization"] == start_info["normalization"]
    assert info["train"]["patch_size"] == 16 and info["noise"] == "gaussian:0.05" and info["train"]["lr"] == 1e-4
    assert info["init"] == "first/last.pt" and info["data"]["fine_tuned_from"] == "first"
    moved = [not torch.equal(a, b) for a, b in zip(start.state_dict().values(), tuned.state_dict().values())]
    assert any(moved)
    # a config's model section changes the checkpoint's architecture: here a wider DAE grown from it
    grow = tmp_path / "grow.yaml"
    grow.write_text("model:\n  channels: [6, 8]\n")
    assert main(["train", "--data", str(data), "--init", str(first / "last.pt"), "--config", str(grow),
                 "--out", str(tmp_path / "wide"), "--epochs", "1", "--steps-per-epoch", "1", "--quiet", "--device", "cpu"]) == 0
    _, wide, _ = load_checkpoint(tmp_path / "wide" / "last.pt")
    assert wide["model"] == {**start_info["model"], "channels": [6, 8]}
    # ... or turns the 2D DAE into its slice-preserving 3D form
    slab = tmp_path / "slab.yaml"
    slab.write_text("model:\n  spatial_dims: 3\n  slab: true\n  depth_levels: 1\ntrain:\n  patch_depth: 4\n  batch_size: 2\n")
    assert main(["train", "--data", str(data), "--init", str(first / "last.pt"), "--config", str(slab),
                 "--out", str(tmp_path / "slab"), "--epochs", "1", "--steps-per-epoch", "1", "--quiet", "--device", "cpu"]) == 0
    _, slab_info, _ = load_checkpoint(tmp_path / "slab" / "last.pt")
    assert slab_info["model"] == {**start_info["model"], "spatial_dims": 3, "slab": True, "depth_levels": 1}
    # a CT model cannot be fine-tuned on MR scans (its intensity scaling would be wrong), nor a 2D model as 3D
    assert main(["train", "--data", str(data), "--init", "ct-2d", "--out", str(tmp_path / "x"), "--quiet",
                 "--device", "cpu"]) == 2
    assert main(["train", "--data", str(data), "--init", str(first / "last.pt"), "--dims", "3",
                 "--out", str(tmp_path / "y"), "--quiet", "--device", "cpu"]) == 2


def test_train_cli_needs_a_modality_for_a_mixed_folder_and_defaults_the_noise_to_it(tmp_path, tiny_training_set, phantom_3d):
    """A folder with CT and MR scans is refused without --modality (one model, one intensity scale
    and noise physics); with it, the other modality is left out of training, and without --noise
    the noise suits the modality (Rician for MR, sinogram low-dose for CT), never Rician on HU."""
    data, cfg = tiny_training_set
    for i in range(2):  # CT volumes in HU: air around a water-like body
        nib.save(nib.Nifti1Image((phantom_3d - 1000.0 + 10 * i).T.copy(), np.eye(4)), str(data / f"c{i}_ct.nii.gz"))
    common = ["--config", str(cfg), "--epochs", "1", "--steps-per-epoch", "1", "--quiet", "--device", "cpu"]
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "mixed"), *common]) == 2
    assert not (tmp_path / "mixed" / "last.pt").exists()
    for modality, noise, scaling in [("MR", "rician:0.01-0.09", "percentile"), ("CT", "lowdose:0.1-0.5", "window")]:
        out = tmp_path / modality
        assert main(["train", "--data", str(data), "--modality", modality, "--out", str(out), *common]) == 0
        info = load_checkpoint(out / "last.pt")[1]
        assert info["noise"] == noise and info["normalization"]["kind"] == scaling
        assert info["data"]["files"] and all(("_ct" in f) == (modality == "CT") for f in info["data"]["files"])


# --- the CLI explains itself: help texts, README's CLI block, evaluate --out --------------------

OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def _subparsers() -> dict:
    import argparse

    from denoise.cli import _parser

    return next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)).choices


def _usage(argv: list[str], capsys) -> str:
    """The usage part (up to the first blank line) of ``denoise ARGV --help``."""
    assert main([*argv, "--help"]) == 0
    return capsys.readouterr().out.split("\n\n")[0]


def _readme_cli_block() -> dict[str, str]:
    """README's "Command line" block, comments dropped: its text per subcommand ("" = `denoise` itself)."""
    section = (ROOT / "README.md").read_text().split("## Command line", 1)[1]
    block = re.search(r"```\n(.*?)```", section, re.S).group(1)
    per: dict[str, str] = {}
    cmd = None
    for line in block.splitlines():
        line = line.split("#", 1)[0]
        head = re.match(r"denoise(?: ([a-z]+))?(?![\w-])", line)
        if head:
            cmd = head.group(1) or ""
        else:
            assert cmd is not None and line.startswith(" "), f"README CLI block: {line!r} continues no command"
        per[cmd] = per.get(cmd, "") + " " + line[head.end() if head else 0 :]
    return per


def test_readme_cli_block_matches_help(capsys):
    """Every subcommand of `denoise --help` is in README's block and the other way round; per
    subcommand, the options its --help usage lists are the ones the README names, and an option
    the README shows with choices (a|b) has the choices --help shows ({a,b})."""
    readme = _readme_cli_block()
    top = _usage([], capsys)
    commands = set(re.search(r"\{([\w,]+)\}", top).group(1).split(","))
    assert commands == set(readme) - {""}
    for cmd in sorted(commands | {""}):
        usage = _usage([cmd] if cmd else [], capsys)
        if not cmd:  # `denoise` itself: only the subcommand choice after its options
            usage = usage.split("{")[0]
        want = set(OPTION.findall(usage)) - {"-h"}
        named = set(OPTION.findall(readme[cmd]))
        assert named == want, f"denoise {cmd}: README names {sorted(named - want)} that --help lacks, lacks {sorted(want - named)}"
        for opt, choices in re.findall(r"(--?[\w-]+) \{([^}]+)\}", usage):
            shown = re.search(rf"{re.escape(opt)} ([\w.-]+(?:\|[\w.-]+)+)(?![\w|])", readme[cmd])
            if shown:
                assert shown.group(1).split("|") == choices.split(","), f"denoise {cmd} {opt}"


def test_every_option_has_help_with_its_default():
    """Each option of each subcommand says what it is; each optional one states its default (a
    value set in the parser is shown as it is), and defaults written out in words match the code."""
    import argparse
    import inspect

    from denoise.batch import denoise_folder
    from denoise.bench import CLASSICAL, SLOW_FAMILIES
    from denoise.bench_real import DEFAULT_REAL_METHODS
    from denoise.config import TrainConfig

    helps = {}
    for cmd, parser in _subparsers().items():
        for a in parser._actions:
            if isinstance(a, argparse._HelpAction):
                continue
            text = (a.help or "") % {**vars(a), "prog": parser.prog}
            helps[(cmd, a.option_strings[-1] if a.option_strings else a.dest)] = text
            assert len(text) > 15, f"denoise {cmd} {a.option_strings or a.dest}: no help"
            if a.option_strings and not a.required and a.nargs != 0 and a.dest != "quiet":
                assert re.search(r"default|required", text, re.I), f"denoise {cmd} {a.option_strings}: {text!r}"
            if a.default not in (None, False):
                assert f"default: {a.default}" in text, f"denoise {cmd} {a.option_strings}: {text!r}"
    run_defaults = inspect.signature(denoise_folder).parameters
    for opt, param in [("--overlap", "overlap"), ("--strength", "strength"), ("--num-parts", "num_parts"),
                       ("--part-id", "part_id"), ("--format", "fmt"), ("--device", "device")]:
        assert f"default: {run_defaults[param].default}" in helps[("run", opt)]
    assert f"else {TrainConfig.epochs})" in helps[("train", "--epochs")]
    assert f"else {TrainConfig.steps_per_epoch})" in helps[("train", "--steps-per-epoch")]
    methods = helps[("bench", "--methods")]
    assert ",".join(DEFAULT_REAL_METHODS) in methods
    assert all(m in methods for m in CLASSICAL) and all(f in methods for f in SLOW_FAMILIES)
    assert "only when named" in methods


def _scored_pair(tmp_path, phantom_3d):
    ref, den = tmp_path / "ref", tmp_path / "den"
    for folder, a in ((ref, phantom_3d), (den, phantom_3d * 1.01)):
        folder.mkdir()
        nib.save(nib.Nifti1Image(a.T.copy(), np.eye(4)), str(folder / "vol.nii.gz"))
    return ["evaluate", "--denoised", str(den), "--reference", str(ref)]


def test_evaluate_out_takes_a_folder_or_a_csv_path(tmp_path, phantom_3d, capsys):
    args = _scored_pair(tmp_path, phantom_3d)
    existing = tmp_path / "tables"
    existing.mkdir()
    for out, written in [(existing, existing / "evaluation.csv"),  # a folder: the table inside it
                         (tmp_path / "new", tmp_path / "new" / "evaluation.csv"),  # a new folder, made
                         (tmp_path / "sub" / "scores.csv", tmp_path / "sub" / "scores.csv")]:  # a .csv path
        assert main([*args, "--out", str(out)]) == 0
        assert f"-> {written}" in capsys.readouterr().out
        assert written.read_text().startswith("scan,psnr,ssim")
    # anything else is a usage error naming the option, before anything is scored or written
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    for bad in (notes, tmp_path / "table.tsv"):
        assert main([*args, "--out", str(bad)]) == 2
        err = capsys.readouterr().err
        assert f"--out {bad}" in err and "folder" in err and ".csv" in err and "Traceback" not in err
    assert notes.read_text() == "mine" and not (tmp_path / "table.tsv").exists()
    assert not (tmp_path / "den" / "evaluation.csv").exists()
