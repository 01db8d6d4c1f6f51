"""The training recipes in scripts/train_pretrained.py are what the shipped models were trained with:
each recipe, as scripts/train_all.sh runs it, resolves to the architecture and training settings
recorded inside the shipped checkpoint (so changing a recipe without retraining fails here)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from denoise.checkpoint import load_checkpoint
from denoise.config import ModelConfig, config_from_dict, to_dict

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = ROOT / "denoise" / "pretrained"
sys.path.insert(0, str(ROOT / "scripts"))
train_pretrained = pytest.importorskip("train_pretrained")

NOT_RECIPE = {"device"}  # machine-dependent, not a recipe setting


@pytest.mark.parametrize("name", sorted(train_pretrained.RECIPES))
def test_recipe_resolves_to_the_shipped_checkpoints_settings(name, capsys):
    _, info, _ = load_checkpoint(PRETRAINED / f"{name}.pt")
    argv = ["--model", name, "--print-config"]
    if info["train"].get("cpu_bf16"):
        argv.append("--bf16")
    if info.get("init"):
        argv += ["--init", "grown-from.pt"]
    assert train_pretrained.main(argv) == 0
    resolved = json.loads(capsys.readouterr().out)
    # fields added since the checkpoint was shipped take their defaults in both
    shipped_model = json.loads(json.dumps(to_dict(config_from_dict(ModelConfig, info["model"]))))
    assert resolved["model"] == shipped_model
    differing = {k: (v, resolved["train"][k]) for k, v in info["train"].items()
                 if k not in NOT_RECIPE and json.dumps(v) != json.dumps(resolved["train"][k])}
    assert not differing, f"{name}: recipe differs from the shipped checkpoint (shipped, recipe): {differing}"
    assert resolved["files"] == info["data"]["files"]


def test_a_grown_recipe_refuses_to_ship_without_its_starting_weights(tmp_path, capsys):
    grown = [n for n, r in train_pretrained.RECIPES.items() if r.get("grown_from")]
    assert grown
    for name in grown:  # (an empty --data: were the check missing, reading the scans fails instead)
        with pytest.raises(SystemExit) as e:
            train_pretrained.main(["--model", name, "--steps", "1", "--data", str(tmp_path)])
        assert e.value.code == 2 and "--init" in capsys.readouterr().err
