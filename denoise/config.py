"""Validated configuration: frozen dataclasses; unknown keys are errors; YAML in, JSON in checkpoints."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from denoise.noise import check_training_options, parse_noise
from denoise.normalize import Normalization
from denoise.registry import MODEL_KINDS

__all__ = ["ModelConfig", "TrainConfig", "load_config", "config_from_dict"]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture. ``kind`` picks the class in `denoise.models.MODELS`.

    Attributes:
        kind: "dae", "vae", "sparse", "linear" or "cae" (contractive).
        spatial_dims: 2 or 3.
        channels: feature channels per resolution level (each level after the first halves the size).
        skip: U-Net-style skip connections (dae only; vae/sparse/linear/cae keep a true bottleneck).
        residual: predict the noise and subtract it from the input.
        latent_channels: channels of the bottleneck code (vae, sparse, plain AE without skips).
        patch_size: linear AE patch edge (its conv kernel and stride), also the VAE's sampling size.
        n_components: linear AE code size (the PCA rank).
        context: neighbouring slices on each side seen by the first layer. 2D models get them as
            extra input channels (2.5D; the output is the centre slice); 3D ``slab`` models as the
            first convolution's depth. 0 = a plain 2D model; not for other 3D models.
        noise_channel: feed a noise-level map as an extra input channel (FFDNet-style): the
            wavelet-MAD noise estimate of the input, so one blind model adapts to the noise level.
        shuffle: pixel-unshuffle factor (FFDNet-style): the input is rearranged into
            ``shuffle ** spatial_dims`` sub-images at 1/shuffle resolution before the first
            convolution and shuffled back at the end, cutting FLOPs per voxel by about that factor
            at the same width. 1 = off.
        slab: 3D dae only: a slice-preserving 3D network. Pixel-unshuffle and strides act in-plane
            only, so the slice axis (the scan's first axis) keeps full resolution at every level,
            as thick-slice clinical series need; the first convolution spans ``context`` slices
            on each side. It is the 3D form of a 2.5D model: `denoise.models.grow.grow_state`
            turns a trained 2.5D DAE into one with the same output.
        depth_levels: slab only: the number of deepest levels whose convolutions span 3 slices
            (the others span 1): through-plane context at coarse scale, for +2x FLOPs per level.
        tail: dae only: channels of a small full-resolution refinement after the shuffle back (two
            3x3 convolutions with PReLU and a 3x3 output convolution, in-plane for slab models)
            that sees the network's output, the noisy centre slice and the noise-level map and
            adds a correction. A pixel-unshuffle network treats the four (2D) sub-pixel phases
            differently, which leaves a faint 2-pixel pattern; the tail works at full resolution,
            shift-equivariant, and can learn to remove it (0 = off). Its output convolution starts
            at zero, so a grown model starts with the same output (`denoise.models.grow`).
    """

    kind: str = "dae"
    spatial_dims: int = 2
    channels: tuple[int, ...] = (16, 32, 64)
    skip: bool = True
    residual: bool = True
    latent_channels: int = 16
    patch_size: int = 64
    n_components: int = 16
    context: int = 0
    noise_channel: bool = False
    shuffle: int = 1
    slab: bool = False
    depth_levels: int = 0
    tail: int = 0

    @property
    def input_channels(self) -> int:
        """Channels of the network input: the image, its neighbouring slices as channels (2.5D;
        a slab model takes them along its depth axis instead) and the noise-level map."""
        return 1 + (0 if self.slab else 2 * self.context) + int(self.noise_channel)

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"model kind {self.kind!r} unknown; choose from {', '.join(MODEL_KINDS)}")
        if self.spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {self.spatial_dims}")
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if self.slab and (self.spatial_dims != 3 or self.kind != "dae"):
            raise ValueError("slab (slice-preserving 3D) is only for 3D dae models")
        if self.context < 0 or (self.context and self.spatial_dims != 2 and not self.slab):
            raise ValueError("context (neighbouring slices) must be >= 0 and is only for 2D or 3D slab models")
        if not 0 <= self.depth_levels <= (len(self.channels) if self.slab else 0):
            raise ValueError("depth_levels must be between 0 and the number of levels, and needs slab")
        if self.shuffle not in (1, 2, 4):
            raise ValueError(f"shuffle must be 1, 2 or 4, got {self.shuffle}")
        if self.shuffle > 1 and self.kind != "dae":
            raise ValueError("shuffle (pixel-unshuffle) is only for the dae")
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"channels must be positive integers, got {self.channels}")
        if self.tail < 0 or (self.tail and self.kind != "dae"):
            raise ValueError(f"tail (full-resolution refinement channels) must be >= 0 and is only for the dae, got {self.tail}")


@dataclass(frozen=True)
class TrainConfig:
    """Training. Noise is a spec (``rician:0.01-0.09`` trains a blind model).

    ``patch_depth`` (3D): slices per training patch; 0 = ``patch_size`` (cubes). Shallower patches
    suit slab models; patches that are not cubes are rotated in-plane only.
    ``reference_noise`` (``lowdose`` only): the target keeps full-dose noise with a std drawn in
    [0, reference_noise] on the normalised scale, and the dose's noise goes on top (low-dose ->
    full-dose restoration; see `denoise.data.PatchSampler`).
    ``val_scans``: indices (into the scans given to `denoise.train.fit`) of the validation scans;
    empty = a seeded random ``val_fraction`` of them. Either way the split is by scan.
    ``num_workers``: processes drawing training batches (a torch DataLoader; `denoise.data.patch_batches`).
    0 draws them in the training process; a GPU needs several to be kept busy. The patch stream
    is reproducible for a given seed and number of workers.
    ``amp``: mixed precision (float16 autocast with loss scaling) on CUDA. ``cpu_bf16``: bfloat16
    autocast on the CPU (weights, optimiser and loss stay float32): ~1.5x the steps per second on
    CPUs with AVX512-BF16 or AMX, slower elsewhere; off by default so CPU runs repeat earlier ones
    (and not free: the sparse AE trained with it scored 0.4-0.8 dB below float32; the VAE was level).
    ``ema``: decay of an exponential moving average of the weights, updated every step (0 = off;
    e.g. 0.999). When on, validation, ``best.pt`` and ``last.pt`` carry the averaged weights (the
    raw ones travel in ``last.pt`` for ``resume``). Off in the shipped recipes: with their cosine
    schedule, which anneals to zero, 0.999 gave nothing (quick mr-2d 31.19/28.57 dB at Rician 5/9%
    against 31.22/28.64 without; docs/design.md).
    ``lesion_augment``: probability that a clean training patch gets one to three small faint
    blobs (radius 1-4 pixels, contrast 2-12% of the normalised scale, either sign; in 0-2
    neighbouring slices too) before the noise, in input and target alike: small low-contrast
    structures are signal, which smooth training anatomy rarely shows (`denoise.fidelity.add_blobs`).
    ``lesion_weight``: with ``lesion_augment``, the reconstruction loss weighs the pixels where blobs
    were added to the target 1 + ``lesion_weight`` times (a weighted mean; 0 = off): erasing a
    faint blob costs more than the little MSE it is worth against the noise it sits in.
    ``coarse_max``: with ``coarse_augment``, coarse patches are block-averaged f x f with f drawn
    from 2..``coarse_max`` (2, the default: always 2x): real EPI/DWI pixels are 2-3.5x the training
    volumes' (docs/design.md, issue #28: mr-2d loses 1.3-1.5 dB at Rician 1% on 3x coarser anatomy).
    ``coarse_kspace``: the probability that a coarse patch is cut from k-space instead
    (`denoise.noise_mr.acquired_coarser`: the sinc blur and Gibbs ringing of a low-resolution
    acquisition, which real EPI shows and block averaging does not).
    ``blur_augment``: the probability that a clean patch is blurred as a reconstruction that
    zero-fills (by 1-2x) and apodises (none, Hamming or Fermi, drawn) blurs it, in input and target
    alike (`denoise.noise_mr.reconstructed`): smooth anatomy at the pixel scale is signal (a network
    that only saw sharp anatomy sharpens interpolated EPI: docs/design.md, session 42).
    ``noise_weighting``: exponent p of a per-patch loss weight (0.05 / max(sigma, 0.005))^p, sigma
    the patch's added noise (RMS of input - target in its tissue; `denoise.data.noise_weights`): with
    p = 2 each patch's error counts relative to its own noise power, so a 1% patch weighs as much in
    the loss as a 9% one does in dB (plain MSE, p = 0, lets the high levels of a wide training range
    dominate and leaves low noise, where real scans live, barely trained).
    ``grad_clip``: largest global gradient norm per step (clipped above it; 0 = off, as in the
    shipped recipes): a guard against the rare loss spike of a high learning rate."""

    noise: str = "rician:0.01-0.09"
    patch_size: int = 64
    patch_depth: int = 0
    batch_size: int = 16
    steps_per_epoch: int = 100
    epochs: int = 20
    lr: float = 1e-3
    weight_decay: float = 0.0
    loss: str = "mse"
    beta: float = 1e-3
    beta_warmup_epochs: int = 5
    sparsity_weight: float = 1e-3
    contractive_weight: float = 1e-4
    val_fraction: float = 0.2
    val_scans: tuple[int, ...] = ()
    val_patches: int = 32
    foreground_fraction: float = 1.0
    all_axes: bool = False
    contrast_augment: float = 0.0
    coarse_augment: float = 0.0
    coarse_max: int = 2
    coarse_kspace: float = 0.0
    blur_augment: float = 0.0
    fine_augment: float = 0.0
    thick_augment: float = 0.0
    reference_noise: float = 0.0
    lesion_augment: float = 0.0
    lesion_weight: float = 0.0
    noise_weighting: float = 0.0
    shift_consistency: float = 0.0
    early_stop_patience: int = 8
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    cpu_bf16: bool = False
    ema: float = 0.0
    grad_clip: float = 0.0
    num_workers: int = 0
    normalization: Normalization = field(default_factory=Normalization)

    def __post_init__(self) -> None:
        parse_noise(self.noise)
        if self.loss not in ("mse", "l1"):
            raise ValueError(f"loss must be 'mse' or 'l1', got {self.loss!r}")
        if not 0 <= self.foreground_fraction <= 1:
            raise ValueError("foreground_fraction must be in [0, 1]")
        for name in ("contrast_augment", "coarse_augment", "blur_augment", "fine_augment", "thick_augment", "lesion_augment"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} is a probability, in [0, 1]")
        if self.reference_noise < 0:
            raise ValueError("reference_noise is a noise std on the normalised scale, >= 0")
        check_training_options(self.noise, reference_noise=self.reference_noise,
                               contrast_augment=self.contrast_augment, coarse_augment=self.coarse_augment, coarse_max=self.coarse_max,
                               coarse_kspace=self.coarse_kspace, blur_augment=self.blur_augment,
                               fine_augment=self.fine_augment, lesion_augment=self.lesion_augment,
                               lesion_weight=self.lesion_weight)
        if self.shift_consistency < 0:
            raise ValueError("shift_consistency is a loss weight, >= 0")
        if not 0 <= self.noise_weighting <= 4:
            raise ValueError(f"noise_weighting is an exponent in [0, 4], got {self.noise_weighting!r}")
        if not 0 < self.val_fraction < 1:
            raise ValueError("val_fraction must be in (0, 1)")
        object.__setattr__(self, "val_scans", tuple(int(i) for i in self.val_scans))
        if any(i < 0 for i in self.val_scans) or len(set(self.val_scans)) != len(self.val_scans):
            raise ValueError(f"val_scans must be distinct scan indices >= 0, got {list(self.val_scans)}")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip is a gradient norm, >= 0 (0 = off), got {self.grad_clip}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema is a decay per step, in [0, 1), got {self.ema}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.patch_depth < 0:
            raise ValueError("patch_depth must be >= 0 (0: cubic 3D patches)")
        for name in ("patch_size", "batch_size", "steps_per_epoch", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if isinstance(self.normalization, dict):
            object.__setattr__(self, "normalization", Normalization(**self.normalization))


def config_from_dict(cls: type, data: dict[str, Any]):
    """Build a config dataclass from a dict; unknown keys raise a ValueError naming them."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {', '.join(unknown)} (valid: {', '.join(sorted(known))})")
    return cls(**data)


def load_config(path: str | Path) -> tuple[ModelConfig, TrainConfig]:
    """Read a YAML file with optional ``model:`` and ``train:`` sections (nothing else allowed)."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict) or set(data) - {"model", "train"}:
        raise ValueError(f"{path}: top-level keys must be 'model' and/or 'train'")
    return (config_from_dict(ModelConfig, data.get("model") or {}),
            config_from_dict(TrainConfig, data.get("train") or {}))


def to_dict(cfg: Any) -> dict[str, Any]:
    """JSON-friendly dict of a config dataclass (tuples become lists)."""
    return asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
