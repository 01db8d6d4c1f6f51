"""Physically meaningful synthetic noise: Gaussian, Rician, Poisson, low-dose CT, speckle, MR k-space.

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
- ``mrkspace:s[,coils=N][,zf=F][,pf=P][,accel=R][,filter=none|hamming|hann|fermi][,combine=sos|adaptive]``
  (magnitude MR): complex noise per receive coil shaped by the reconstruction as on a scanner
  (zero-filling by F, partial Fourier P, an apodisation filter, SENSE acceleration R with its
  g-factor map, sum-of-squares or adaptive coil combination); the signal itself is untouched.
  ``s`` is the per-pixel noise std per coil at g = 1, R = 1, as for ``rician:s``; the defaults
  (coils=1, zf=1, pf=1, accel=1, filter=none, combine=sos) give Rician noise. Every numeric
  option also takes a range ``a-b`` drawn per call (coils and accel as integers), e.g.
  ``mrkspace:0.01-0.09,coils=1-16,zf=1-2,pf=0.6-1,accel=1-3``. The physics and the literature
  are in `denoise.noise_mr`.

A *mixture* ``spec|spec|...`` (e.g. ``rician:0.01-0.09|mrkspace:0.01-0.09,coils=1-16``, for
blind training) picks one member uniformly at random per call (its ``kind`` is ``"mix"``).
`str` of a parsed spec parses back to the same spec. Same spec and seed give the same output;
arrays are never modified in place.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from denoise import noise_mr
from denoise.normalize import reference_intensity
from denoise.scan import Scan

__all__ = ["NoiseSpec", "NoiseMix", "parse_noise", "add_noise", "check_training_options", "implausible_level",
           "NOISE_KINDS", "PLAUSIBLE_LEVEL"]

NOISE_KINDS = ("gaussian", "rician", "poisson", "lowdose", "speckle", "mrkspace")
MU_WATER = 0.0192  # 1/mm at ~70 keV
FULL_DOSE_PHOTONS = 1e7
ELECTRONIC_SIGMA = 10.0
# the highest level a scanner plausibly makes, per kind whose level is a relative std (lowdose is a
# dose fraction, already bounded to (0, 1]): 0.5 = a noise std of half the robust maximum
PLAUSIBLE_LEVEL = {"gaussian": 0.5, "rician": 0.5, "mrkspace": 0.5, "poisson": 0.5, "speckle": 1.0}
_SYNTAX = ("expected one of " + ", ".join(f"{k}:LEVEL" for k in NOISE_KINDS[:-1])
           + ", mrkspace:LEVEL[,coils=N][,zf=F][,pf=P][,accel=R][,filter=none|hamming|hann|fermi]"
           "[,combine=sos|adaptive], or such specs joined by '|' (a mixture)")


@dataclass(frozen=True)
class NoiseSpec:
    """A parsed noise spec: ``kind``, a level range ``(low, high)`` (equal for a fixed level) and,
    for ``mrkspace``, the options that differ from their defaults, in `noise_mr.OPTION_ORDER`:
    ``(name, (low, high))`` for numeric ones, ``(name, choice)`` for the others."""

    kind: str
    low: float
    high: float
    options: tuple = ()

    def __str__(self) -> str:
        opts = "".join(f",{n}={_fmt_range(v) if isinstance(v, tuple) else v}" for n, v in self.options)
        return f"{self.kind}:{_fmt_range((self.low, self.high))}{opts}"

    def draw(self, rng: np.random.Generator) -> float:
        """The level for one call: fixed, or uniform in [low, high]; log-uniform for ``lowdose``
        (dose ranges span decades and noise sigma goes as 1/sqrt(dose), so every noise level
        in the range gets its share)."""
        if self.low == self.high:
            return self.low
        if self.kind == "lowdose":
            return float(np.exp(rng.uniform(np.log(self.low), np.log(self.high))))
        return float(rng.uniform(self.low, self.high))

    def draw_options(self, rng: np.random.Generator) -> dict:
        """Every option's value for one call (defaults filled in): ranges drawn uniformly in
        `noise_mr.OPTION_ORDER`, integers for integer options; ``accel`` clipped to ``coils``."""
        given = dict(self.options)
        out: dict = {}
        for name, (default, _, _, integer) in noise_mr.NUMERIC_OPTIONS.items():
            lo, hi = given.get(name, (default, default))
            value = lo if lo == hi else (rng.integers(int(lo), int(hi) + 1) if integer else rng.uniform(lo, hi))
            out[name] = int(value) if integer else float(value)
        for name, choices in noise_mr.CHOICE_OPTIONS.items():
            out[name] = given.get(name, choices[0])
        out["accel"] = min(out["accel"], out["coils"])
        return out


@dataclass(frozen=True)
class NoiseMix:
    """A mixture of specs: each call picks one member uniformly at random."""

    members: tuple[NoiseSpec, ...]

    @property
    def kind(self) -> str:
        return "mix"

    def __str__(self) -> str:
        return "|".join(str(m) for m in self.members)


def _fmt_range(r: tuple[float, float]) -> str:
    return f"{r[0]:g}" if r[0] == r[1] else f"{r[0]:g}-{r[1]:g}"


def _parse_range(text: str) -> tuple[float, float] | None:
    """``"a"`` or ``"a-b"`` as floats (None if not numbers)."""
    try:
        parts = [float(p) for p in text.split("-")] if "-" in text.strip("-") else [float(text)]
    except ValueError:
        return None
    return None if len(parts) > 2 else (parts[0], parts[-1])


def parse_noise(spec: str | NoiseSpec | NoiseMix) -> NoiseSpec | NoiseMix:
    """Parse ``"kind:level[,option=value...]"`` (level ``a`` or ``a-b``) or a mixture of such specs
    joined by ``|``; raise ValueError listing the valid kinds (or options)."""
    if isinstance(spec, (NoiseSpec, NoiseMix)):
        return spec
    text = str(spec).strip()
    if "|" in text:
        return NoiseMix(tuple(_parse_one(part, spec) for part in text.split("|")))
    return _parse_one(text, spec)


def implausible_level(spec: str | NoiseSpec | NoiseMix) -> str | None:
    """A warning when a spec's level is beyond what scanners make (`PLAUSIBLE_LEVEL`), e.g.
    ``rician:5`` (sigma = 500% of the robust maximum, where ``rician:0.05`` was likely meant);
    None when every level is plausible. Such a spec still parses and runs."""
    parsed = parse_noise(spec)
    for m in parsed.members if isinstance(parsed, NoiseMix) else (parsed,):
        limit = PLAUSIBLE_LEVEL.get(m.kind)
        if limit is None or m.high <= limit:
            continue
        hint = f"; levels are fractions: did you mean {m.kind}:{_fmt_range((m.low / 100, m.high / 100))}?" \
            if m.high >= 1 else ""
        of = "the signal" if m.kind == "speckle" else "the robust maximum"
        return (f"level {_fmt_range((m.low, m.high))} of {m.kind} noise is a noise std of {m.high:.0%} of {of}, "
                f"far above what scanners make (up to {limit:g} is plausible){hint}")
    return None


def _parse_one(text: str, spec) -> NoiseSpec:
    kind, sep, rest = text.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in NOISE_KINDS or not sep:
        raise ValueError(f"bad noise spec {spec!r}: {_SYNTAX} (e.g. rician:0.05 or rician:0.01-0.09)")
    level, *opts = rest.split(",")
    parsed = _parse_range(level.strip())
    if parsed is None:
        raise ValueError(f"bad noise level in {spec!r}: expected a number or a range like 0.01-0.09")
    low, high = parsed
    if low < 0 or high < low:
        raise ValueError(f"bad noise level in {spec!r}: need 0 <= low <= high")
    if kind == "lowdose" and not (0 < low and high <= 1):
        raise ValueError(f"lowdose level is a dose fraction in (0, 1], got {spec!r}")
    if opts and kind != "mrkspace":
        raise ValueError(f"{kind} noise takes no options, got {','.join(opts)!r} in {spec!r}")
    return NoiseSpec(kind, low, high, _parse_mr_options(opts, spec))


def _parse_mr_options(opts: list[str], spec) -> tuple:
    valid = ", ".join([f"{n}={lo:g}..{hi:g}" for n, (_, lo, hi, _) in noise_mr.NUMERIC_OPTIONS.items()]
                      + [f"{n}={'|'.join(c)}" for n, c in noise_mr.CHOICE_OPTIONS.items()])
    given: dict = {}
    for opt in opts:
        name, eq, value = (p.strip().lower() for p in opt.partition("="))
        if name not in noise_mr.OPTION_ORDER or not eq or name in given:
            why = "repeated" if name in given else "unknown" if name not in noise_mr.OPTION_ORDER else "needs a value"
            raise ValueError(f"bad mrkspace option {opt.strip()!r} ({why}) in {spec!r}: valid options are {valid}")
        if name in noise_mr.CHOICE_OPTIONS:
            if value not in noise_mr.CHOICE_OPTIONS[name]:
                raise ValueError(f"bad mrkspace option {name}={value!r} in {spec!r}: {name} is one of "
                                 f"{', '.join(noise_mr.CHOICE_OPTIONS[name])}")
            given[name] = value
            continue
        _, lo_ok, hi_ok, integer = noise_mr.NUMERIC_OPTIONS[name]
        r = _parse_range(value)
        kind_word = "an integer" if integer else "a number"
        if (r is None or not lo_ok <= r[0] <= r[1] <= hi_ok
                or (integer and not all(float(v).is_integer() for v in r))):
            raise ValueError(f"bad mrkspace option {name}={value!r} in {spec!r}: {name} is {kind_word} or a range "
                             f"a-b (a <= b) within [{lo_ok:g}, {hi_ok:g}]")
        given[name] = r
    coils, accel = given.get("coils", (1, 1)), given.get("accel", (1, 1))
    if accel[0] > coils[1]:
        raise ValueError(f"bad mrkspace options in {spec!r}: accel={_fmt_range(accel)} needs at least as many "
                         f"coils (coils={_fmt_range(coils)}); a drawn accel above the drawn coils is clipped")
    defaults = {n: (d[0], d[0]) for n, d in noise_mr.NUMERIC_OPTIONS.items()}
    defaults.update({n: c[0] for n, c in noise_mr.CHOICE_OPTIONS.items()})
    return tuple((n, given[n]) for n in noise_mr.OPTION_ORDER if n in given and given[n] != defaults[n])


MAX_COARSE = 4  # largest coarse_augment factor: 4 mm pixels from 1 mm training volumes


def check_training_options(spec: str | NoiseSpec | NoiseMix, *, reference_noise: float = 0.0,
                           contrast_augment: float = 0.0, coarse_augment: float = 0.0, coarse_max: int = 2,
                           coarse_kspace: float = 0.0, blur_augment: float = 0.0, fine_augment: float = 0.0, lesion_augment: float = 0.0, lesion_weight: float = 0.0) -> None:
    """Refuse training options that cannot be honoured together (one rule for
    `denoise.config.TrainConfig` and `denoise.data.PatchSampler`). ``lowdose`` noise comes from
    sinogram noise fields precomputed on the unaltered volumes: the kept full-dose noise
    (``reference_noise``) needs them, and contrast/coarse/fine augmentation would change the
    attenuation they were computed from; for the same reason it cannot be a member of a mixture.
    ``lesion_weight`` weighs the loss on inserted blobs, so it needs ``lesion_augment``; ``coarse_max``
    is a pixel-size factor in 2..`MAX_COARSE`; ``coarse_kspace`` a probability that needs ``coarse_augment``."""
    if not 0 <= coarse_kspace <= 1 or (coarse_kspace and not coarse_augment):
        raise ValueError(f"coarse_kspace is a probability in [0, 1] that needs coarse_augment > 0, got {coarse_kspace!r}")
    if not 2 <= coarse_max <= MAX_COARSE or int(coarse_max) != coarse_max:
        raise ValueError(f"coarse_max is the largest coarse pixel-size factor, in 2..{MAX_COARSE}, got {coarse_max!r}")
    if lesion_weight < 0 or (lesion_weight and not lesion_augment):
        raise ValueError("lesion_weight is a loss weight >= 0 on inserted blobs and needs lesion_augment > 0")
    ns = parse_noise(spec)
    if isinstance(ns, NoiseMix) and any(m.kind == "lowdose" for m in ns.members):
        raise ValueError(f"lowdose noise cannot be part of a mixture ({ns}) in training: its patches use "
                         "sinogram noise fields precomputed per volume; train lowdose on its own")
    kind = ns.kind
    if reference_noise and kind != "lowdose":
        raise ValueError("reference_noise needs lowdose noise (its precomputed fields give the kept noise)")
    if not 0 <= blur_augment <= 1:
        raise ValueError(f"blur_augment is a probability, in [0, 1], got {blur_augment!r}")
    augments = [n for n, p in (("contrast_augment", contrast_augment), ("coarse_augment", coarse_augment),
                               ("blur_augment", blur_augment), ("fine_augment", fine_augment)) if p]
    if augments and kind == "lowdose":
        raise ValueError(f"{', '.join(augments)} cannot be used with lowdose noise (its precomputed sinogram "
                         "noise fields belong to the unaltered volumes)")


def add_noise(
    data: Scan | np.ndarray,
    spec: str | NoiseSpec | NoiseMix,
    *,
    seed: int | np.random.Generator | None = None,
    reference: float | None = None,
    pixel_mm: float | None = None,
) -> Scan | np.ndarray:
    """Return a noisy copy of a Scan or array.

    Args:
        data: a Scan or an array ``(y, x)``, ``(z, y, x)`` or ``(t, z, y, x)``; CT in HU for lowdose.
        spec: ``"kind:level"``, ``"kind:low-high"``, with options for mrkspace, or a mixture
            ``"spec|spec"`` (see the module docstring).
        seed: an int or a numpy Generator; the same seed gives the same noise.
        reference: intensity that levels are fractions of; default `reference_intensity(data)`.
        pixel_mm: in-plane pixel size for lowdose; default the Scan's spacing, else 1 mm.

    Returns:
        The same type as ``data``, float32 (a Scan's ``noise`` metadata names the kind and the
        level and options drawn).
    """
    ns = parse_noise(spec)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if isinstance(ns, NoiseMix):
        ns = ns.members[int(rng.integers(len(ns.members)))]
    array = data.array if isinstance(data, Scan) else np.asarray(data, dtype=np.float32)
    if isinstance(data, Scan) and pixel_mm is None:
        pixel_mm = float(data.spacing[-1])
    level = ns.draw(rng)
    ref = reference if reference is not None else (reference_intensity(array) if ns.kind != "lowdose" else 1.0)
    label = f"{ns.kind}:{level:.4g}"
    if ns.kind == "mrkspace":
        opts = ns.draw_options(rng)
        noisy = noise_mr.mr_kspace_noise(array.astype(np.float64), level * ref, rng, **opts).astype(np.float32)
        label += "".join(f",{k}={v:.4g}" if not isinstance(v, str) else f",{k}={v}" for k, v in opts.items())
    else:
        noisy = _APPLY[ns.kind](array.astype(np.float64), level, ref, rng, pixel_mm or 1.0).astype(np.float32)
    if isinstance(data, Scan):
        return data.with_array(noisy, noise=label)
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
