"""Physically meaningful synthetic noise: Gaussian, Rician, Poisson, low-dose CT, speckle.

A noise *spec* is ``"kind:level"`` or ``"kind:low-high"`` (a level drawn uniformly per call, for
blind training). Levels:

- ``gaussian:s``, ``rician:s``: sigma = ``s`` x the reference intensity (the 99.5th foreground
  percentile, `reference_intensity`; BrainWeb uses a percentage of the brightest tissue, which this
  robust maximum approximates). Rician is the magnitude of complex Gaussian noise:
  ``|x + n_r + i n_i|`` (magnitude MRI).
- ``poisson:s``: photon-count noise whose relative std at the reference intensity is ``s``
  (counts ~ Poisson(x / ref / s^2)).
- ``lowdose:d`` (CT, input in HU): sinogram-domain noise insertion at dose fraction ``d``: HU ->
  linear attenuation (mu_water = 0.0192 / mm) -> Radon transform (skimage) -> Poisson counts at
  ``I0 * d`` incident photons plus Gaussian electronic noise -> log -> filtered back projection
  of the noise, added back in HU. The input is treated as noise-free. I0 = 1e7 effective photons
  per ray at full dose for our parallel-beam geometry (max(180, N/2) views, pixel-sized bins),
  calibrated so full dose gives ~20 HU in a 35-cm abdomen (the GE colonography slice); sigma_e = 10.
- ``speckle:s``: multiplicative, ``x (1 + n)`` with n ~ N(0, s^2) (skimage's speckle mode).

Same spec and seed give the same output; arrays are never modified in place.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from denoise.normalize import reference_intensity
from denoise.scan import Scan

__all__ = ["NoiseSpec", "parse_noise", "add_noise", "check_training_options", "NOISE_KINDS"]

NOISE_KINDS = ("gaussian", "rician", "poisson", "lowdose", "speckle")
MU_WATER = 0.0192  # 1/mm at ~70 keV
FULL_DOSE_PHOTONS = 1e7
ELECTRONIC_SIGMA = 10.0


@dataclass(frozen=True)
class NoiseSpec:
    """A parsed noise spec: ``kind`` and a level range ``(low, high)`` (equal for a fixed level)."""

    kind: str
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.kind}:{self.low:g}" if self.low == self.high else f"{self.kind}:{self.low:g}-{self.high:g}"

    def draw(self, rng: np.random.Generator) -> float:
        """The level for one call: fixed, or uniform in [low, high]; log-uniform for ``lowdose``
        (dose ranges span decades and noise sigma goes as 1/sqrt(dose), so every noise level
        in the range gets its share)."""
        if self.low == self.high:
            return self.low
        if self.kind == "lowdose":
            return float(np.exp(rng.uniform(np.log(self.low), np.log(self.high))))
        return float(rng.uniform(self.low, self.high))


def parse_noise(spec: str | NoiseSpec) -> NoiseSpec:
    """Parse ``"kind:level"`` or ``"kind:low-high"``; raise ValueError listing the valid kinds."""
    if isinstance(spec, NoiseSpec):
        return spec
    valid = ", ".join(f"{k}:LEVEL" for k in NOISE_KINDS)
    kind, sep, level = str(spec).strip().partition(":")
    kind = kind.strip().lower()
    if kind not in NOISE_KINDS or not sep:
        raise ValueError(f"bad noise spec {spec!r}: expected one of {valid} (e.g. rician:0.05 or rician:0.01-0.09)")
    try:
        parts = [float(p) for p in level.split("-")] if "-" in level.strip("-") else [float(level)]
    except ValueError:
        raise ValueError(f"bad noise level in {spec!r}: expected a number or a range like 0.01-0.09") from None
    low, high = (parts[0], parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    if len(parts) > 2 or low < 0 or high < low:
        raise ValueError(f"bad noise level in {spec!r}: need 0 <= low <= high")
    if kind == "lowdose" and not (0 < low and high <= 1):
        raise ValueError(f"lowdose level is a dose fraction in (0, 1], got {spec!r}")
    return NoiseSpec(kind, low, high)


def check_training_options(spec: str | NoiseSpec, *, reference_noise: float = 0.0, contrast_augment: float = 0.0,
                           coarse_augment: float = 0.0, fine_augment: float = 0.0) -> None:
    """Refuse training options the noise kind cannot honour (one rule for `denoise.config.TrainConfig`
    and `denoise.data.PatchSampler`). ``lowdose`` noise comes from sinogram noise fields precomputed
    on the unaltered volumes: the kept full-dose noise (``reference_noise``) needs them, and
    contrast/coarse/fine augmentation would change the attenuation they were computed from."""
    kind = parse_noise(spec).kind
    if reference_noise and kind != "lowdose":
        raise ValueError("reference_noise needs lowdose noise (its precomputed fields give the kept noise)")
    augments = [n for n, p in (("contrast_augment", contrast_augment), ("coarse_augment", coarse_augment),
                               ("fine_augment", fine_augment)) if p]
    if augments and kind == "lowdose":
        raise ValueError(f"{', '.join(augments)} cannot be used with lowdose noise (its precomputed sinogram "
                         "noise fields belong to the unaltered volumes)")


def add_noise(
    data: Scan | np.ndarray,
    spec: str | NoiseSpec,
    *,
    seed: int | np.random.Generator | None = None,
    reference: float | None = None,
    pixel_mm: float | None = None,
) -> Scan | np.ndarray:
    """Return a noisy copy of a Scan or array.

    Args:
        data: a Scan or an array ``(y, x)``, ``(z, y, x)`` or ``(t, z, y, x)``; CT in HU for lowdose.
        spec: ``"kind:level"`` or ``"kind:low-high"`` (see the module docstring).
        seed: an int or a numpy Generator; the same seed gives the same noise.
        reference: intensity that levels are fractions of; default `reference_intensity(data)`.
        pixel_mm: in-plane pixel size for lowdose; default the Scan's spacing, else 1 mm.

    Returns:
        The same type as ``data``, float32.
    """
    ns = parse_noise(spec)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    array = data.array if isinstance(data, Scan) else np.asarray(data, dtype=np.float32)
    if isinstance(data, Scan) and pixel_mm is None:
        pixel_mm = float(data.spacing[-1])
    level = ns.draw(rng)
    ref = reference if reference is not None else (reference_intensity(array) if ns.kind != "lowdose" else 1.0)
    noisy = _APPLY[ns.kind](array.astype(np.float64), level, ref, rng, pixel_mm or 1.0).astype(np.float32)
    if isinstance(data, Scan):
        return data.with_array(noisy, noise=f"{ns.kind}:{level:.4g}")
    return noisy


def _gaussian(x, level, ref, rng, _px):
    return x + rng.normal(0.0, level * ref, x.shape)


def _rician(x, level, ref, rng, _px):
    s = level * ref
    return np.sqrt((x + rng.normal(0.0, s, x.shape)) ** 2 + rng.normal(0.0, s, x.shape) ** 2)


def _poisson(x, level, ref, rng, _px):
    if level == 0:
        return x.copy()
    scale = 1.0 / (level**2 * ref)  # counts per intensity unit
    return rng.poisson(np.clip(x, 0, None) * scale) / scale


def _speckle(x, level, ref, rng, _px):
    return x * (1.0 + rng.normal(0.0, level, x.shape))


def _lowdose(x, level, ref, rng, pixel_mm):
    """Slice by slice; the projections and reconstructions of a volume's slices run on threads
    (skimage's warps release the GIL), the random draws in slice order, so the output is the
    same as one slice after another."""
    flat = x.reshape(-1, *x.shape[-2:])
    out = np.empty(flat.shape, dtype=np.float64)
    with ThreadPoolExecutor(max_workers=_lowdose_workers()) as pool:
        for lo in range(0, len(flat), _LOWDOSE_CHUNK):  # bounded memory: sinograms of a chunk at a time
            chunk = flat[lo:lo + _LOWDOSE_CHUNK]
            lines = list(pool.map(lambda hu: _line_integrals(hu, pixel_mm), chunk))
            deltas = [_count_noise(line, level, rng) for line in lines]
            out[lo:lo + len(chunk)] = list(pool.map(lambda a: a[0] + _back_project(a[1], a[0].shape, pixel_mm),
                                                    zip(chunk, deltas)))
    return out.reshape(x.shape)


_LOWDOSE_CHUNK = 32


def _lowdose_workers() -> int:
    """As many threads as torch may use (`--threads` of train and run set it), at most 8: the noise
    never takes more cores than the job it serves was given."""
    import torch

    return max(1, min(torch.get_num_threads(), 8))


def _geometry(shape: tuple[int, int]) -> tuple[int, int, np.ndarray]:
    size = max(shape)
    return size, int(np.ceil(size / 256)), np.linspace(0.0, 180.0, max(180, size // 2), endpoint=False)


def _line_integrals(hu: np.ndarray, pixel_mm: float) -> np.ndarray:
    """Attenuation line integrals (detector bins x views) of a HU slice."""
    from skimage.transform import radon

    mu = np.clip(MU_WATER * (1.0 + hu / 1000.0), 0.0, None)
    size, factor, theta = _geometry(hu.shape)
    # The line integrals only set the noise variance per ray: compute them on a grid of <= 256 px
    # (radon is the slow step) and interpolate along the detector to the full-resolution bins.
    small = mu if factor == 1 else _block_mean(mu, factor)
    line_small = radon(small, theta=theta, circle=False) * pixel_mm * factor
    n_det = int(np.ceil(np.sqrt(2) * size)) + 2
    pos_small = (np.arange(line_small.shape[0]) - (line_small.shape[0] - 1) / 2) * factor
    pos_full = np.arange(n_det) - (n_det - 1) / 2
    return np.stack([np.interp(pos_full, pos_small, col, left=0, right=0) for col in line_small.T], axis=1)


def _count_noise(line: np.ndarray, dose: float, rng: np.random.Generator) -> np.ndarray:
    """Noisy minus noise-free line integrals at a dose: Poisson counts plus electronic noise."""
    photons = FULL_DOSE_PHOTONS * dose
    counts = rng.poisson(photons * np.exp(-line)) + rng.normal(0.0, ELECTRONIC_SIGMA, line.shape)
    return -np.log(np.clip(counts, 1.0, None) / photons) - line


def _back_project(delta: np.ndarray, shape: tuple[int, int], pixel_mm: float) -> np.ndarray:
    """Filtered back projection of line-integral noise, in HU, cropped to the slice."""
    from skimage.transform import iradon

    size, _, theta = _geometry(shape)
    noise_mu = iradon(delta, theta=theta, circle=False, filter_name="ramp", output_size=size) / pixel_mm
    return 1000.0 * _crop_center(noise_mu, shape) / MU_WATER


def _block_mean(img: np.ndarray, f: int) -> np.ndarray:
    pad = np.zeros(((img.shape[0] + f - 1) // f * f, (img.shape[1] + f - 1) // f * f))
    pad[: img.shape[0], : img.shape[1]] = img
    return pad.reshape(pad.shape[0] // f, f, pad.shape[1] // f, f).mean(axis=(1, 3))


def _crop_center(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    dy = (img.shape[0] - shape[0]) // 2
    dx = (img.shape[1] - shape[1]) // 2
    return img[dy : dy + shape[0], dx : dx + shape[1]]


_APPLY = {"gaussian": _gaussian, "rician": _rician, "poisson": _poisson, "lowdose": _lowdose, "speckle": _speckle}
