"""Growing a trained DAE without losing what it learnt: function-preserving starts for fine-tuning.

`grow_state` maps the weights of a trained `ConvAutoencoder` (skip connections, the shipped DAE
layout) onto a larger configuration that computes exactly the same output at the start:

- more neighbouring slices for a 2.5D model (``context``): the first convolution gets zero
  weights for the added outer slices;
- a 2.5D model into a 3D ``slab`` model: each 2D convolution becomes a 3D one spanning one
  slice (or the centre of a 3-slice kernel, with zero outer taps), and the first convolution's
  slice channels become its depth taps. The slab model computes the 2.5D model's output at
  every slice at once, and fine-tuning it in 3D can then only add through-plane context;
- a full-resolution ``tail`` (`ModelConfig.tail`): added fresh with its output convolution at
  zero, so it starts as no change;
- wider levels (``channels``): Net2WiderNet (Chen et al., 2016). Each added channel copies an
  existing one (same incoming weights and bias) and the consumers of that feature map split the
  copied channel's outgoing weights between the copies. The split is the original weight divided
  by the number of copies plus a zero-sum random perturbation: the sum over the copies is
  unchanged (so is the output: PReLU here has one shared slope), but the copies receive different
  gradients and so learn different things.

Training then continues from there (`denoise.train.fit(init=...)`), which is far cheaper on a CPU
than training the larger model from scratch.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict

import torch

from denoise.config import ModelConfig

__all__ = ["grow_state"]


def grow_state(state: dict[str, torch.Tensor], old: ModelConfig, new: ModelConfig, *,
               seed: int = 0, jitter: float = 0.1) -> dict[str, torch.Tensor]:
    """Weights of ``old`` rearranged for ``new`` (same output); see the module docstring.

    Only ``context``, ``channels`` and ``tail`` (0 -> N) may differ, each at least as large as in ``old`` (same
    number of levels), and a 2D ``old`` may become a 3D ``slab`` ``new``. ``jitter`` is the
    perturbation's size relative to each consumer weight tensor's standard deviation.
    """
    if new.slab and not old.slab and old.spatial_dims == 2:
        flat = dataclasses.replace(new, spatial_dims=2, slab=False, depth_levels=0)
        return _inflate(grow_state(state, old, flat, seed=seed, jitter=jitter), flat, new)
    a, b = _plain(old), _plain(new)
    if {**a, "context": 0, "channels": 0, "tail": 0} != {**b, "context": 0, "channels": 0, "tail": 0}:
        raise ValueError("grow_state: the architectures differ in more than context, channels and tail")
    if new.tail != old.tail and old.tail:
        raise ValueError(f"grow_state: a tail of {old.tail} channels cannot become {new.tail} (only 0 -> N)")
    if old.kind != "dae" or not old.skip:
        raise ValueError("grow_state: only DAEs with skip connections can be grown")
    if new.context < old.context:
        raise ValueError(f"grow_state: cannot narrow the context from {old.context} to {new.context}")
    if len(new.channels) != len(old.channels) or any(n < o for n, o in zip(new.channels, old.channels)):
        raise ValueError(f"grow_state: channels {tuple(new.channels)} must keep the levels of {tuple(old.channels)} and not shrink")
    state = dict(state)
    if new.context > old.context:
        state = _widen_context(state, old, new)
    if tuple(new.channels) != tuple(old.channels):
        state = _widen_channels(state, tuple(old.channels), tuple(new.channels), seed, jitter)
    if new.tail and not old.tail:  # a fresh tail, its output convolution zero: the same output
        from denoise.models import build_model

        with torch.random.fork_rng():
            torch.manual_seed(seed)
            fresh = build_model(new).state_dict()
        state.update({k: v for k, v in fresh.items() if k.startswith("tail.")})
    return state


def _plain(cfg: ModelConfig) -> dict:
    return json.loads(json.dumps(asdict(cfg)))


def _inflate(state: dict[str, torch.Tensor], flat: ModelConfig, slab: ModelConfig) -> dict[str, torch.Tensor]:
    """2.5D weights (``flat``) as the same-output weights of the 3D ``slab`` model."""
    from denoise.models import build_model

    target = build_model(slab).state_dict()
    out = {}
    for key, t in target.items():
        w = state[key]
        if key == "encoder.0.0.conv.weight":  # [slices -k..k, noise] x sub-pixels -> depth taps
            r, k = flat.shuffle ** 2, flat.context
            blocks = w.reshape(w.shape[0], -1, r, *w.shape[2:])
            new = w.new_zeros(t.shape).reshape(t.shape[0], -1, r, *t.shape[2:])
            new[:, 0] = blocks[:, : 1 + 2 * k].permute(0, 2, 1, 3, 4)
            if flat.noise_channel:
                new[:, 1, :, k] = blocks[:, -1]
            out[key] = new.reshape(t.shape)
        elif w.dim() + 1 == t.dim():  # a 2D kernel: the centre slice of a 1- or 3-deep 3D kernel
            new = w.new_zeros(t.shape)
            new[:, :, t.shape[2] // 2] = w
            out[key] = new
        elif w.shape == t.shape:
            out[key] = w.clone()
        else:
            raise ValueError(f"grow_state: cannot map {key} {tuple(w.shape)} onto {tuple(t.shape)}")
    return out


def _widen_context(state: dict[str, torch.Tensor], old: ModelConfig, new: ModelConfig) -> dict[str, torch.Tensor]:
    """First convolution's input channels are pixel-unshuffled channel-major (each input channel
    gives ``shuffle ** d`` consecutive ones): [slices -k..k, noise level]."""
    key = "encoder.0.0.conv.weight"
    w = state[key]
    r = old.shuffle ** old.spatial_dims
    n_old, n_new = old.input_channels, new.input_channels
    blocks = w.reshape(w.shape[0], n_old, r, *w.shape[2:])
    out = blocks.new_zeros(w.shape[0], n_new, r, *w.shape[2:])
    shift = new.context - old.context
    out[:, shift : shift + 1 + 2 * old.context] = blocks[:, : 1 + 2 * old.context]
    if old.noise_channel:
        out[:, -1] = blocks[:, -1]
    state[key] = out.reshape(w.shape[0], n_new * r, *w.shape[2:])
    return state


def _widen_channels(state: dict[str, torch.Tensor], old: tuple[int, ...], new: tuple[int, ...],
                    seed: int, jitter: float) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    levels = len(old)

    def mapping(i: int) -> torch.Tensor:  # new channel -> the old channel it copies
        extra = torch.randint(0, old[i], (new[i] - old[i],), generator=gen)
        return torch.cat([torch.arange(old[i]), extra])

    # every feature map: (producer layer, transposed?) and its channel mapping
    maps: dict[str, tuple[int, torch.Tensor]] = {}
    for i in range(levels):
        maps[f"encoder.{i}.0"] = (i, mapping(i))
        maps[f"encoder.{i}.1"] = (i, mapping(i))
    for j in range(levels - 1):
        lvl = levels - 2 - j
        maps[f"up.{j}"] = (lvl, mapping(lvl))
        maps[f"merge.{j}"] = (lvl, mapping(lvl))
    # consumers: layer -> the feature maps its input concatenates, in order
    inputs: dict[str, list[str]] = {f"encoder.{i}.1": [f"encoder.{i}.0"] for i in range(levels)}
    inputs.update({f"encoder.{i}.0": [f"encoder.{i - 1}.1"] for i in range(1, levels)})
    for j in range(levels - 1):
        lvl = levels - 2 - j
        inputs[f"up.{j}"] = [f"encoder.{levels - 1}.1" if j == 0 else f"merge.{j - 1}"]
        inputs[f"merge.{j}"] = [f"up.{j}", f"encoder.{lvl}.1"]
    inputs["head"] = [f"merge.{levels - 2}" if levels > 1 else "encoder.0.1"]

    out = dict(state)
    for layer in sorted(set(maps) | set(inputs)):
        w, bias = state[f"{layer}.conv.weight"], state[f"{layer}.conv.bias"]
        transposed = layer.startswith("up.")
        in_dim, out_dim = (0, 1) if transposed else (1, 0)
        if layer in inputs:
            pieces, start = [], 0
            for src in inputs[layer]:
                g = maps[src][1]
                n_old = old[maps[src][0]]
                block = w.narrow(in_dim, start, n_old)
                counts = torch.bincount(g, minlength=n_old).to(w.dtype)
                piece = block.index_select(in_dim, g) / _expand(counts[g], in_dim, w.dim())
                pieces.append(piece + _zero_sum_noise(piece, g, in_dim, jitter * float(w.std()), gen))
                start += n_old
            w = torch.cat(pieces, dim=in_dim)
        if layer in maps:
            g = maps[layer][1]
            w, bias = w.index_select(out_dim, g), bias[g]
        out[f"{layer}.conv.weight"], out[f"{layer}.conv.bias"] = w.contiguous(), bias.contiguous()
    return out


def _expand(v: torch.Tensor, dim: int, ndim: int) -> torch.Tensor:
    shape = [1] * ndim
    shape[dim] = -1
    return v.reshape(shape)


def _zero_sum_noise(piece: torch.Tensor, g: torch.Tensor, dim: int, scale: float,
                    gen: torch.Generator) -> torch.Tensor:
    """Noise along ``dim`` that sums to zero over the copies of each old channel (none where a
    channel has a single copy), so the layer's output is unchanged."""
    noise = torch.randn(piece.shape, generator=gen, dtype=piece.dtype) * scale
    counts = torch.bincount(g).to(piece.dtype)
    sums = torch.zeros_like(noise.movedim(dim, 0)[: len(counts)]).index_add_(0, g, noise.movedim(dim, 0))
    mean = (sums / _expand(counts, 0, noise.dim())).index_select(0, g)
    return (noise.movedim(dim, 0) - mean).movedim(0, dim)
