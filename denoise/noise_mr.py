"""MR noise as scanners make it: complex noise per receive coil, shaped by the reconstruction.

`mr_kspace_noise` corrupts a clean magnitude image ``x`` (treated as real, phase 0) the way a
phased-array acquisition does, but only the noise goes through the reconstruction: the signal
is not blurred, zero-filled or filtered, so a model trained on (clean, noisy) pairs learns to
remove noise and not to deblur. Per 2D slice (axis -2 = phase encode, rows; axis -1 = readout,
columns)::

    noisy = combine_k( S_k x + g_amp * n_k ),   n_k = IFFT( H * W_k ),   k = 1..N coils

- **Coil noise** (thermal, white in k-space; the coils taken as uncorrelated, i.e. a
  noise-decorrelated array): ``W_k`` is complex white Gaussian drawn in k-space (the
  orthonormal FFT of white noise is white noise), filtered by the transfer function ``H`` of
  the reconstruction and brought to the image by the orthonormal inverse FFT (``scipy.fft``,
  3x numpy's speed on stacks of small patches). ``n_k`` is scaled so that its per-pixel std
  per real/imaginary part is ``sigma`` (= LEVEL x reference): ``mrkspace:s`` has the per-pixel
  noise of ``rician:s``, but spatially correlated (Dietrich et al. 2008 measured such effects
  of the reconstruction on scanners).
- **Transfer function** ``H`` (`kspace_filter`): zero-filling by ``zf`` keeps the central
  ``round(rows/zf) x round(cols/zf)`` region of k-space (the acquired matrix interpolated to a
  finer one: neighbouring pixels share noise); partial Fourier ``pf`` keeps the phase-encode
  lines from the lowest up to the fraction ``pf`` of the acquired extent, the rest zero
  (zero-filled partial-Fourier reconstruction: noise correlated along rows only); apodisation
  multiplies the kept region by a window: ``hamming`` / ``hann`` separable,
  ``0.54 + 0.46 cos(pi u)`` / ``0.5 + 0.5 cos(pi u)`` with u = k / (half the acquired extent)
  in [-1, 1); ``fermi`` radial, ``1 / (1 + exp((r - 0.9) / 0.025))`` with r the radius in the
  same units (the 10-90 % transition spans ~0.11, about a tenth of the radius; Bernstein, King
  & Zhou 2004). The noise power spectrum of each coil is ``|H|^2``, its autocorrelation the
  normalised ``IFFT(|H|^2)``.
- **Coil sensitivities** (`draw_coil_array`): N loop coils evenly spaced on a circle of radius
  rho = 1.2-1.5 half fields of view (random rotation per call); ``|S_k| = (1 + (d/r0)^2)^-1.5``,
  the on-axis field of a loop of radius r0 applied to the in-plane distance ``d`` to the coil,
  with ``r0 = min(1, pi rho / N)`` half fields of view (loops that tile the ring, as arrays are
  built; the design brief's fixed r0 of half the field of view made 16-coil profiles so alike
  that the mean g reached ~8 at R = 4; with tiling loops 8 coils give a mean g of ~1.1 at
  R = 2 and ~1.9 at R = 3, 16 coils ~1.5 at R = 3 and ~2.5 at R = 4, close to head arrays; R = N
  saturates at `G_MAX`); a constant random phase and a smooth phase ramp (up to 1 rad per half
  field of view) per coil; then normalised so that ``sum_k |S_k|^2 = 1`` at every pixel (the
  combined signal is ``x``). The ramps run along each coil's direction minus the array's mean
  direction, phases relative to the array: a single coil has a constant phase, so its noise
  projected on the signal is white. The image is a random window (1/4 to all of the virtual
  field of view, random offset) of that field of view: a training patch sees a piece of the
  coil profiles of a whole slice.
- **Parallel imaging** (``accel`` = R, SENSE along the phase-encode axis; Pruessmann et al.
  1999): each pixel aliases with R - 1 partners a field of view / R apart along rows (in the
  virtual field of view); with ``A`` the N x R matrix of the coil sensitivities at the pixel
  and its partners, ``g = sqrt([(A^H A)^-1]_00 [A^H A]_00)`` per pixel (>= 1; 1 for R = 1 or
  orthogonal sensitivities; a 1e-9 relative Tikhonov term keeps singular matrices finite;
  capped at `G_MAX`). Each coil's noise is multiplied by ``sqrt(R) g``, the noise std of the
  unfolded image (R times fewer samples, and the unfolding). The stated LEVEL is the noise std
  at ``g = 1`` and ``R = 1``: with acceleration the noise is that much higher and varies across
  the image (non-stationary noise; Aja-Fernandez & Vegas-Sanchez-Ferrero 2016). Not simulated:
  the correlation SENSE creates between the R aliased pixels, the lower g of sensitivity maps
  masked to the object, GRAPPA's k-space specifics (its noise amplification is modelled by the
  same g). R is clipped to the number of coils drawn.
- **Combination**: ``sos`` = ``sqrt(sum_k |S_k x + n_k|^2)`` (Roemer et al. 1990): in the
  background (x = 0) a chi distribution with 2N degrees of freedom scaled by sigma, at high SNR
  Gaussian with std sigma (Constantinides, Atalar & McVeigh 1997); ``adaptive`` = ``|sum_k
  conj(S_k) (S_k x + n_k)|``, the matched-filter combination with the true sensitivities
  (Roemer 1990; Walsh, Gmitro & Marcellin 2000): Rician with sigma (Gudbjartsson & Patz 1995).
  With N = 1, zf = pf = R = 1 and no filter both reduce to ``|x + n|``: Rician noise with
  sigma, the distribution of ``rician:LEVEL``.

For N > 1 the combined noise is each coil's noise weighted by its smooth sensitivity: its
spectrum is ``|H|^2`` blurred by the sensitivities' (narrow) spectra, and its per-pixel std is
still sigma (times ``sqrt(R) g``). A volume ``(z, y, x)`` or ``(t, z, y, x)`` is a stack of 2D
slices sharing one coil array (a multi-slice acquisition); the noise of each slice is drawn in
slice order. Float64 inside; the input is never modified.

References:
    Gudbjartsson H, Patz S. The Rician distribution of noisy MRI data. MRM 1995;34:910-914.
    Roemer PB, Edelstein WA, Hayes CE, Souza SP, Mueller OM. The NMR phased array. MRM
    1990;16:192-225.
    Constantinides CD, Atalar E, McVeigh ER. Signal-to-noise measurements in magnitude images
    from NMR phased arrays. MRM 1997;38:852-857.
    Pruessmann KP, Weiger M, Scheidegger MB, Boesiger P. SENSE: sensitivity encoding for fast
    MRI. MRM 1999;42:952-962.
    Walsh DO, Gmitro AF, Marcellin MW. Adaptive reconstruction of phased array MR imagery. MRM
    2000;43:682-690.
    Dietrich O, Raya JG, Reeder SB, Ingrisch M, Reiser MF, Schoenberg SO. Influence of
    multichannel combination, parallel imaging and other reconstruction techniques on MRI noise
    characteristics. MRI 2008;26:754-762.
    Bernstein MA, King KF, Zhou XJ. Handbook of MRI Pulse Sequences. Elsevier 2004 (zero
    filling, partial Fourier, k-space filters).
    Aja-Fernandez S, Vegas-Sanchez-Ferrero G. Statistical Analysis of Noise in MRI. Springer
    2016.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["NUMERIC_OPTIONS", "CHOICE_OPTIONS", "OPTION_ORDER", "CoilArray", "mr_kspace_noise", "kspace_filter", "acquired_coarser", "reconstructed",
           "draw_coil_array", "g_factor", "sense_g_factor", "G_MAX"]

# name: (default, smallest, largest, integer). Order = the order options are drawn and printed.
NUMERIC_OPTIONS: dict[str, tuple[float, float, float, bool]] = {
    "coils": (1, 1, 64, True),
    "zf": (1.0, 1.0, 8.0, False),
    "pf": (1.0, 0.5, 1.0, False),
    "accel": (1, 1, 8, True),
}
CHOICE_OPTIONS: dict[str, tuple[str, ...]] = {
    "filter": ("none", "hamming", "hann", "fermi"),
    "combine": ("sos", "adaptive"),
}
OPTION_ORDER = (*NUMERIC_OPTIONS, *CHOICE_OPTIONS)
G_MAX = 10.0
FERMI_RADIUS, FERMI_WIDTH = 0.9, 0.025
_TIKHONOV = 1e-9
_G_BLOCK = 2**16  # coils x pixels per block of the g-factor computation


@dataclass(frozen=True)
class CoilArray:
    """Per-pixel coil sensitivities ``sens`` (N, rows, cols), complex, ``sum |S|^2 = 1``, and the
    noise amplification ``amp`` (rows, cols) = ``sqrt(R) g`` (1 without acceleration)."""

    sens: np.ndarray
    amp: np.ndarray


def mr_kspace_noise(x: np.ndarray, sigma: float, rng: np.random.Generator, *, coils: int = 1, zf: float = 1.0,
                    pf: float = 1.0, accel: int = 1, filter: str = "none", combine: str = "sos",
                    coil_array: CoilArray | None = None) -> np.ndarray:
    """Magnitude image of ``x`` (``(..., rows, cols)``) with reconstructed multi-coil noise.

    ``sigma`` is the per-part noise std per coil (at g = 1, R = 1). ``coil_array`` replaces the
    random one (drawn from ``rng`` first otherwise; ``coils`` and ``accel`` are then ignored).
    Returns float64 of the shape of ``x``."""
    import scipy.fft  # here: importing it costs a third of a second, and most users of denoise.noise never need it

    if combine not in CHOICE_OPTIONS["combine"]:
        raise ValueError(f"combine must be one of {', '.join(CHOICE_OPTIONS['combine'])}, got {combine!r}")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 2:
        raise ValueError(f"mrkspace noise needs an image (..., rows, cols), got shape {x.shape}")
    shape = x.shape[-2:]
    arr = coil_array if coil_array is not None else draw_coil_array(shape, coils, accel, rng)
    h = kspace_filter(shape, zf, pf, filter)
    keep = h > 0
    gain = h[keep] * (sigma / np.sqrt(np.mean(h**2)))  # per-pixel std per part = sigma
    n_coils, n_keep = len(arr.sens), int(keep.sum())
    idx = None if n_keep == keep.size else np.flatnonzero(keep)
    amp = None if np.all(arr.amp == 1.0) else arr.amp
    flat = x.reshape(-1, *shape)
    out = np.empty(flat.shape)
    draws = np.empty((n_coils, n_keep, 2))
    w = draws.view(np.complex128)[..., 0]  # the (real, imaginary) pairs as complex numbers
    spec = w if idx is None else np.zeros((n_coils, keep.size), dtype=np.complex128)
    for i, img in enumerate(flat):  # buffers reused: the slices of a volume allocate little
        rng.standard_normal(out=draws)
        w *= gain
        if idx is not None:
            spec[:, idx] = w
        n = scipy.fft.ifft2(spec.reshape(n_coils, *shape), norm="ortho", overwrite_x=idx is None)
        if amp is not None:
            n *= amp
        power = _sum_abs2(n) if combine == "sos" else None
        np.conjugate(n, out=n)
        n *= arr.sens
        c = np.conj(n.sum(axis=0))  # sum_k conj(S_k) n_k: the matched-filter combination of the noise
        if power is None:  # adaptive: |sum conj(S) (S x + n)| = |x + c|
            out[i] = np.hypot(img + c.real, c.imag)
        else:  # sos: sum |S x + n|^2 = x^2 sum|S|^2 + 2 x Re(c) + sum |n|^2, with sum |S|^2 = 1
            out[i] = np.sqrt(np.maximum(img * img + 2.0 * img * c.real + power, 0.0))
    return out.reshape(x.shape)


def acquired_coarser(x: np.ndarray, f: int) -> np.ndarray:
    """``x`` (``(..., y, x)``, a clean magnitude image, both in-plane sizes multiples of ``f``) as an
    acquisition with an f times coarser in-plane matrix over the same field of view records it:
    the central ``1/f`` of k-space in each in-plane axis (the k-space the coarse matrix samples),
    transformed back on the coarse grid and its magnitude taken (scaled so that a constant image
    keeps its value). The signal gets the sinc point-spread function and Gibbs ringing of a
    low-resolution acquisition (EPI, DWI: 2-3.5 mm pixels), which block averaging does not give."""
    y, x_ = x.shape[-2:]
    if y % f or x_ % f:
        raise ValueError(f"in-plane size {y} x {x_} is not a multiple of {f}")
    from scipy import fft

    k = fft.fftshift(fft.fft2(np.asarray(x, dtype=np.float64)), axes=(-2, -1))
    cy, cx, hy, hx = y // 2, x_ // 2, y // f // 2, x_ // f // 2
    small = k[..., cy - hy:cy - hy + y // f, cx - hx:cx - hx + x_ // f]
    return (np.abs(fft.ifft2(fft.ifftshift(small, axes=(-2, -1)))) / f**2).astype(np.float32)


def reconstructed(x: np.ndarray, zf: float = 1.0, filter: str = "none", margin: int = 16) -> np.ndarray:
    """``x`` (``(..., y, x)``, a clean magnitude image) as a reconstruction that zero-fills by ``zf``
    and apodises with ``filter`` returns it on the same grid: the signal multiplied by
    `kspace_filter` in k-space (the transfer function `mr_kspace_noise` gives the noise) and its
    magnitude taken. Scanners store many series this way (EPI and DWI interpolated to a finer
    matrix, filtered k-space): smooth at the pixel scale, with ringing at edges. The image is
    mirrored by ``margin`` pixels at its borders first, so a patch's edges do not wrap around."""
    a = np.asarray(x, dtype=np.float64)
    m = min(margin, *(n - 1 for n in a.shape[-2:]))
    pad = [(0, 0)] * (a.ndim - 2) + [(m, m), (m, m)]
    big = np.pad(a, pad, mode="reflect") if m > 0 else a
    from scipy import fft

    h = kspace_filter(big.shape[-2:], zf, 1.0, filter)
    out = np.abs(fft.ifft2(fft.fft2(big) * h))
    return out[..., m:m + a.shape[-2], m:m + a.shape[-1]].astype(np.float32)


def kspace_filter(shape: tuple[int, int], zf: float = 1.0, pf: float = 1.0, filter: str = "none") -> np.ndarray:
    """The k-space transfer function ``H`` (rows, cols) in numpy's FFT order (frequency 0 at index
    0): zero-filling, partial Fourier along rows and apodisation (see the module docstring)."""
    if filter not in CHOICE_OPTIONS["filter"]:
        raise ValueError(f"filter must be one of {', '.join(CHOICE_OPTIONS['filter'])}, got {filter!r}")
    if zf < 1 or not 0.5 <= pf <= 1:
        raise ValueError(f"need zf >= 1 and 0.5 <= pf <= 1, got zf={zf}, pf={pf}")
    rows, cols = shape
    m = [max(1, min(n, int(round(n / zf)))) for n in shape]  # acquired matrix
    k = [np.fft.fftfreq(n, 1.0 / n) for n in shape]  # integer frequencies
    inside = [(kk >= -(mm // 2)) & (kk <= mm - mm // 2 - 1) for kk, mm in zip(k, m)]
    n_pf = max(m[0] // 2 + 1, int(np.ceil(pf * m[0] - 1e-9)))  # lines acquired, centre included
    inside[0] &= k[0] < -(m[0] // 2) + n_pf
    u = [kk / max(mm / 2.0, 1.0) for kk, mm in zip(k, m)]  # [-1, 1) over the acquired extent
    if filter == "hamming":
        win = np.outer(0.54 + 0.46 * np.cos(np.pi * u[0]), 0.54 + 0.46 * np.cos(np.pi * u[1]))
    elif filter == "hann":
        win = np.outer(0.5 + 0.5 * np.cos(np.pi * u[0]), 0.5 + 0.5 * np.cos(np.pi * u[1]))
    elif filter == "fermi":
        r = np.hypot(u[0][:, None], u[1][None, :])
        win = 1.0 / (1.0 + np.exp(np.minimum((r - FERMI_RADIUS) / FERMI_WIDTH, 700.0)))
    else:
        win = np.ones((rows, cols))
    return np.where(inside[0][:, None] & inside[1][None, :], win, 0.0)


def draw_coil_array(shape: tuple[int, int], coils: int, accel: int, rng: np.random.Generator) -> CoilArray:
    """A random receive array for a ``shape`` image: loop-coil sensitivities and, for ``accel`` > 1,
    the SENSE noise amplification ``sqrt(R) g`` (R clipped to ``coils``)."""
    coils, accel = int(coils), int(min(accel, coils))
    if coils < 1 or accel < 1:
        raise ValueError(f"need coils >= 1 and accel >= 1, got coils={coils}, accel={accel}")
    rows, cols = shape
    theta = rng.uniform(0.0, 2.0 * np.pi) + 2.0 * np.pi * np.arange(coils) / coils
    ring = rng.uniform(1.2, 1.5)  # coil distance from the centre, in half fields of view
    frac = rng.uniform(0.25, 1.0)  # share of the virtual field of view the image covers
    pixel = 2.0 * frac / max(rows, cols)
    half = np.array([rows, cols]) * pixel / 2.0
    cy, cx = (rng.uniform(-(1.0 - h), 1.0 - h) for h in half)
    phase0 = rng.uniform(0.0, 2.0 * np.pi, coils)
    slope = rng.uniform(-1.0, 1.0, coils)  # radians per half field of view
    direction = np.stack([np.sin(theta), np.cos(theta)], axis=1)
    r0 = min(1.0, np.pi * ring / coils)  # loop radius: N loops tile the ring, at most half the FOV
    geom = (ring * direction, direction - direction.mean(axis=0), phase0, slope, r0)
    y = cy + (np.arange(rows) - (rows - 1) / 2.0) * pixel
    x = cx + (np.arange(cols) - (cols - 1) / 2.0) * pixel
    sens = _loop_sensitivities(y, x, geom)
    sens *= 1.0 / np.sqrt(_sum_abs2(sens))
    amp = np.ones(shape)
    if accel > 1:  # partners FOV/R apart along rows, wrapped into the virtual FOV [-1, 1); g does not
        # depend on a per-pixel scaling of the sensitivities, so the normalised ones serve for the pixel.
        # In blocks of rows: R arrays of N x pixels at once would be large (and slow to allocate).
        step = max(1, _G_BLOCK // (coils * cols))
        scratch = np.empty((coils, min(step, rows), cols))
        for lo in range(0, rows, step):
            yy = y[lo:lo + step]
            partners = [sens[:, lo:lo + step]] + [
                _loop_sensitivities((yy + 1.0 + 2.0 * j / accel) % 2.0 - 1.0, x, geom, scratch[:, :len(yy)])
                for j in range(1, accel)]
            amp[lo:lo + step] = np.sqrt(accel) * g_factor(partners)
    return CoilArray(sens, amp)


def _sum_abs2(a: np.ndarray) -> np.ndarray:
    """``sum_k |a_k|^2`` over the first axis."""
    if not np.iscomplexobj(a):
        return np.einsum("k...,k...->...", a, a)
    v = np.ascontiguousarray(a, dtype=np.complex128).view(np.float64)
    return np.einsum("k...,k...->...", v, v).reshape(*a.shape[1:-1], a.shape[-1], 2).sum(axis=-1)


def _loop_sensitivities(y: np.ndarray, x: np.ndarray, geom, scratch: np.ndarray | None = None) -> np.ndarray:
    """Unnormalised complex sensitivities (N, len(y), len(x)) on the grid of virtual-FOV row
    coordinates ``y`` and column coordinates ``x``; ``scratch`` a real array of that shape to
    reuse (large temporaries are what this costs on small patches)."""
    pos, ramp, phase0, slope, r0 = geom
    dy2 = 1.0 + ((y[None, :] - pos[:, :1]) / r0) ** 2
    dx2 = ((x[None, :] - pos[:, 1:]) / r0) ** 2
    inv = np.add(dy2[:, :, None], dx2[:, None, :], out=scratch)
    np.sqrt(inv, out=inv)
    np.reciprocal(inv, out=inv)  # (1 + (d / r0)^2)^(-1/2)
    rot_y = np.exp(1j * (phase0[:, None] + (slope * ramp[:, 0])[:, None] * y[None, :]))
    rot_x = np.exp(1j * (slope * ramp[:, 1])[:, None] * x[None, :])
    out = np.multiply(rot_y[:, :, None], rot_x[:, None, :])
    for _ in range(3):  # ^(3/2): three multiplications beat a power (10x slower) or a temporary
        out *= inv
    return out


def g_factor(partners) -> np.ndarray:
    """SENSE g-factor (Pruessmann 1999) of the pixel whose sensitivities are ``partners[0]``.

    ``partners`` is (R, N, ...) (or a list of R arrays (N, ...)): the N coil sensitivities at the
    pixel (index 0) and at its R - 1 aliasing partners. Returns ``sqrt([M^-1]_00 M_00)`` per
    pixel, ``M = A^H A + lambda diag(A^H A)`` (A the N x R matrix, lambda = 1e-9), clipped to
    [1, G_MAX] (1 exactly for R = 1): cofactor formulas for R = 2 and 3, a batched solve above."""
    r = len(partners)
    if r == 1:
        return np.ones(np.shape(partners[0])[1:])
    s = [_sum_abs2(p) * (1.0 + _TIKHONOV) for p in partners]  # the diagonal of M
    buf = np.empty(np.shape(partners[0]), dtype=np.complex128)  # one temporary for all the products
    m = {(i, j): _dot_conj(partners[i], partners[j], buf) for i in range(r) for j in range(i + 1, r)}
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if r == 2:
            g2 = s[0] * s[1] / (s[0] * s[1] - _abs2(m[0, 1]))
        elif r == 3:
            a01, a02, a12 = _abs2(m[0, 1]), _abs2(m[0, 2]), _abs2(m[1, 2])
            det = (s[0] * s[1] * s[2] + 2.0 * (m[0, 1] * m[1, 2] * np.conj(m[0, 2])).real
                   - s[0] * a12 - s[1] * a02 - s[2] * a01)
            g2 = s[0] * (s[1] * s[2] - a12) / det
        else:
            mat = np.empty((*s[0].shape, r, r), dtype=np.complex128)
            for i in range(r):
                mat[..., i, i] = s[i]
            for (i, j), v in m.items():
                mat[..., i, j], mat[..., j, i] = v, np.conj(v)
            e0 = np.zeros((*mat.shape[:-1], 1), dtype=mat.dtype)
            e0[..., 0, 0] = 1.0
            g2 = s[0] * np.linalg.solve(mat, e0)[..., 0, 0].real
        g2 = np.where(np.isfinite(g2) & (g2 > 0), g2, G_MAX**2)  # singular: aliased pixels inseparable
    return np.sqrt(np.clip(g2, 1.0, G_MAX**2))


def _dot_conj(a: np.ndarray, b: np.ndarray, buf: np.ndarray) -> np.ndarray:
    """``sum_k conj(a_k) b_k`` over the first axis (``buf`` a complex scratch array of a's shape)."""
    np.conjugate(a, out=buf)
    buf *= b
    return buf.sum(axis=0)


def _abs2(z: np.ndarray) -> np.ndarray:
    return z.real**2 + z.imag**2


def sense_g_factor(sens: np.ndarray, accel: int) -> np.ndarray:
    """g-factor map (rows, cols) of sensitivities ``sens`` (N, rows, cols) covering the whole field
    of view, undersampled ``accel``-fold along rows (partners ``rows / accel`` apart, cyclically)."""
    rows = sens.shape[-2]
    shifts = [int(round(j * rows / accel)) for j in range(int(accel))]
    return g_factor([np.roll(sens, -s, axis=-2) for s in shifts])
