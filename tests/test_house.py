"""The house's single homes (issue #24): one registry of names, each model kind owning its loss,
the kind read from the checkpoint, and one rule each for data ranges, hashing and atomic writes."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from denoise import registry
from denoise.config import ModelConfig, TrainConfig
from denoise.losses import jacobian_frobenius, kl_divergence, reconstruction, sparsity


def test_every_layer_reads_the_one_registry():
    from denoise import methods
    from denoise.bench import CLASSICAL as BENCH_CLASSICAL
    from denoise.cli import _parser
    from denoise.models import MODELS
    from denoise.models.classical import _FILTERS

    assert tuple(MODELS) == registry.MODEL_KINDS == methods.FAMILIES
    assert tuple(_FILTERS) == registry.CLASSICAL == methods.CLASSICAL
    assert set(BENCH_CLASSICAL) < set(registry.CLASSICAL)
    train = next(a for a in _parser()._subparsers._group_actions[0].choices["train"]._actions if a.dest == "model")
    assert tuple(train.choices) == registry.MODEL_KINDS
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig(kind="gan")


def _batch(channels: int = 1):
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(2, 1, 16, 16, generator=g)
    return clean.repeat(1, channels, 1, 1) + 0.05 * torch.randn(2, channels, 16, 16, generator=g), clean


@pytest.mark.parametrize("kind", registry.MODEL_KINDS)
def test_each_kind_owns_its_loss(kind):
    """fit asks the network for its loss: each kind's is its reconstruction plus its own term."""
    from denoise.models import build_model

    torch.manual_seed(0)
    net = build_model(ModelConfig(kind=kind, spatial_dims=2, channels=(4, 8), latent_channels=4, patch_size=4,
                                  residual=False)).eval()  # eval: the VAE reconstructs from mu, no sampling
    noisy, clean = _batch()
    cfg = TrainConfig(noise="gaussian:0.05", sparsity_weight=0.3, contractive_weight=0.2)
    got = net.training_loss(noisy, clean, cfg, beta=0.7)
    rec = reconstruction(net.predict(noisy), clean)
    if kind == "vae":
        mu, logvar = net.encode(noisy)
        want = rec + 0.7 * kl_divergence(mu, logvar)
    elif kind == "sparse":
        want = rec + 0.3 * sparsity(net.forward_with_latent(noisy)[1])
    elif kind == "cae":
        torch.manual_seed(1)
        got = net.training_loss(noisy, clean, cfg)
        torch.manual_seed(1)
        want = rec + 0.2 * jacobian_frobenius(net.encode, noisy)
    else:
        want = rec
    assert torch.allclose(got, want, rtol=1e-5)
    extra = net.validation_measures(noisy)
    assert set(extra) == {"sparse": {"sparsity"}, "cae": {"latent_sensitivity"}}.get(kind, set())


def test_the_kind_comes_from_the_checkpoint_not_its_name(tmp_path):
    from denoise.checkpoint import save_checkpoint
    from denoise.methods import bench_method, model_kind
    from denoise.models import build_model
    from denoise.outdir import UsageError

    cfg = ModelConfig(kind="sparse", spatial_dims=2, channels=(4, 8), latent_channels=4, residual=False)
    path = save_checkpoint(tmp_path / "dae-looking-name.pt", build_model(cfg), {"model": cfg.__dict__})
    assert model_kind(path) == "sparse"
    assert bench_method(str(path)) == f"sparse:{path}"
    with pytest.raises(UsageError, match="is a sparse model"):
        bench_method(f"dae:{path}")
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(UsageError, match="broken.pt"):
        bench_method(str(broken))


def test_lesion_weight_marks_exactly_the_inserted_blobs():
    from denoise.data import PatchSampler

    flat = np.ones((8, 48, 48), np.float32)  # nothing but the blobs varies in the clean patches
    kw = dict(noise="gaussian:0", spatial_dims=2, patch_size=32, seed=3, context=1, lesion_augment=1.0)
    noisy, clean, weight = PatchSampler([flat], lesion_weight=4.0, **kw).batch(12)
    assert weight.shape == clean.shape
    assert np.array_equal(weight > 1, clean != 1.0) and set(np.unique(weight)) == {1.0, 5.0}
    _, same_clean = PatchSampler([flat], **kw).batch(12)  # the weight takes no random draw
    assert np.array_equal(same_clean, clean)
    for make in (lambda: TrainConfig(lesion_weight=2.0), lambda: PatchSampler([flat], **{**kw, "lesion_augment": 0.0},
                                                                          lesion_weight=2.0)):
        with pytest.raises(ValueError, match="lesion_augment"):
            make()


def test_weighted_reconstruction_is_the_weighted_mean():
    out, tgt = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    w = 1 + 3 * (torch.rand(2, 1, 8, 8) > 0.8).float()
    for kind, err in (("mse", (out - tgt) ** 2), ("l1", (out - tgt).abs())):
        assert torch.allclose(reconstruction(out, tgt, kind=kind, pixel_weight=w), (w * err).sum() / w.sum())
        assert torch.allclose(reconstruction(out, tgt, kind=kind, pixel_weight=torch.ones_like(w)),
                              reconstruction(out, tgt, kind=kind))


def test_one_data_range_rule():
    from denoise.metrics import CT_DATA_RANGE, data_range_for
    from denoise.normalize import reference_intensity

    a = np.random.default_rng(0).random((4, 16, 16)) * 700
    assert data_range_for(a, "CT") == data_range_for(a, "ct") == CT_DATA_RANGE
    assert data_range_for(a, "MR") == reference_intensity(a) != CT_DATA_RANGE


def test_hashes_follow_contents_and_names(tmp_path):
    from denoise.hashing import file_hash, files_hash, text_hash

    a, b = tmp_path / "a.dcm", tmp_path / "b.dcm"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    assert file_hash(a, length=64) == hashlib.sha256(b"one").hexdigest()
    assert text_hash("x", length=64) == hashlib.sha256(b"x").hexdigest()
    before = files_hash([a, b])
    assert files_hash([b, a]) == before  # order of discovery does not matter
    b.rename(tmp_path / "c.dcm")
    assert files_hash([a, tmp_path / "c.dcm"]) != before  # a renamed member does


def test_an_interrupted_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path):
    from denoise.atomic import write_atomic, write_text_atomic

    path = tmp_path / "summary.json"
    write_text_atomic(path, "old")

    def half(tmp):
        tmp.write_text("ne")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, half)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]
    write_text_atomic(path, "new")
    assert path.read_text() == "new" and len(list(tmp_path.iterdir())) == 1


def test_readme_maps_each_command_to_the_module_its_handler_calls():
    """README's Layout table says which module does each command's job; the CLI handler must call
    into that module, and every module the Layout names must exist."""
    import inspect
    import re
    from pathlib import Path

    from denoise.cli import _parser

    root = Path(__file__).resolve().parents[1]
    layout = (root / "README.md").read_text().split("## Layout", 1)[1]
    table = {}
    for line in layout.splitlines():
        m = re.match(r"\| (`denoise [^|]+) \| `denoise/([\w/]+)\.py`", line)
        if m:
            for cmd in re.findall(r"`denoise (\w+)`", m.group(1)):
                table[cmd] = "denoise." + m.group(2).replace("/", ".")
    commands = _parser()._subparsers._group_actions[0].choices
    assert set(table) == set(commands)
    for cmd, module in table.items():
        handler = commands[cmd].get_default("handler")
        assert f"from {module} import" in inspect.getsource(handler), (cmd, module)
    for name in set(re.findall(r"`([\w/]+\.py)`", layout)):
        found = list((root / "denoise").rglob(Path(name).name)) + list(root.glob(name))
        assert found, f"README Layout names {name}, which does not exist"
