"""The training recipes (denoise.recipes, run by scripts/train_pretrained.py) are what the shipped
models were trained with: each recipe, as scripts/train_all.sh runs it, resolves to the architecture
and training settings recorded inside the shipped checkpoint (so changing a recipe without retraining
fails here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from denoise import recipes
from denoise.checkpoint import load_checkpoint
from denoise.config import ModelConfig, config_from_dict, to_dict

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = ROOT / "denoise" / "pretrained"
SCRIPT = ROOT / "scripts" / "train_pretrained.py"

NOT_RECIPE = {"device"}  # machine-dependent, not a recipe setting


@pytest.mark.parametrize("name", sorted(n for n, r in recipes.RECIPES.items() if not r.get("experiment")))
def test_recipe_resolves_to_the_shipped_checkpoints_settings(name):
    _, info, _ = load_checkpoint(PRETRAINED / f"{name}.pt")
    model, train, resolved = recipes.recipe_configs(name, train_changes={"cpu_bf16": True} if info["train"].get("cpu_bf16") else None)
    # fields added since the checkpoint was shipped take their defaults in both
    shipped_model = json.loads(json.dumps(to_dict(config_from_dict(ModelConfig, info["model"]))))
    assert json.loads(json.dumps(to_dict(model))) == shipped_model
    train_dict = json.loads(json.dumps(to_dict(train), default=str))
    differing = {k: (v, train_dict[k]) for k, v in info["train"].items()
                 if k not in NOT_RECIPE and json.dumps(v) != json.dumps(train_dict[k])}
    assert not differing, f"{name}: recipe differs from the shipped checkpoint (shipped, recipe): {differing}"
    assert resolved["files"] == info["data"]["files"]
    assert info.get("inference") == recipes.RECIPES[name].get("inference")  # what `ship` writes (operating point)


def test_the_script_prints_what_the_library_resolves():
    out = subprocess.run([sys.executable, str(SCRIPT), "--model", "vae-mr-2d", "--bf16", "--steps", "100", "--print-config"],
                         capture_output=True, text=True, check=True).stdout
    model, train, resolved = recipes.recipe_configs("vae-mr-2d", train_changes={"cpu_bf16": True}, steps=100)
    printed = json.loads(out)
    assert printed["model"] == json.loads(json.dumps(to_dict(model)))
    assert printed["train"] == json.loads(json.dumps(to_dict(train), default=str))
    assert printed["files"] == resolved["files"] and printed["train"]["steps_per_epoch"] == 100 // recipes.EPOCHS


def _script_error(tmp_path, name: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--model", name, "--steps", "1", "--data", str(tmp_path)],
                          capture_output=True, text=True)


def test_an_experiment_recipe_never_ships(tmp_path):
    for name in [n for n, r in recipes.RECIPES.items() if r.get("experiment")]:
        done = _script_error(tmp_path, name)
        assert done.returncode == 2 and "--no-ship" in done.stderr


def test_a_grown_recipe_refuses_to_ship_without_its_starting_weights(tmp_path):
    grown = sorted(n for n, r in recipes.RECIPES.items() if r.get("grown_from"))
    assert {"mr-3d", "ct-2d"} <= set(grown)
    # one of them through the script (the check reads only the recipe's grown_from, so one stands for all;
    # an empty --data: were the check missing, reading the scans fails instead)
    done = _script_error(tmp_path, grown[0])
    assert done.returncode == 2 and "--init" in done.stderr and grown[0] in done.stderr


def test_unknown_recipe_names_the_known_ones():
    with pytest.raises(ValueError, match="mr-2d"):
        recipes.recipe_configs("mr-9d")
