"""The comparison harness behind ``denoise bench``: every method measured the same way.

For each clean scan x noise spec x method: a fixed noise realisation (seeded per case), the
method run through `denoise_scan`, and foreground + whole-image PSNR/SSIM per volume with an
explicit data range (MR: the clean scan's `reference_intensity`; CT: 2000 HU), the correlation of
the residual (noisy - denoised) with the clean image (should be ~0: no anatomy removed), runtime,
voxels/s and peak Python/numpy memory (tracemalloc; torch's own allocations are not counted).
Writes ``results.csv``, ``results.md`` (mean +- SD, paired differences to BM3D or NLM with a
bootstrap 95% CI) and PNG plots. BM3D and BM4D (`SLOW_FAMILIES`) run only when named.
"""

from __future__ import annotations

import csv
import time
import tracemalloc
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from denoise import fidelity
from denoise.infer import PRETRAINED_DIR, LearnedDenoiser, denoise_scan, load_model
from denoise.io import discover_scans
from denoise.methods import bench_methods, model_kind, model_options
from denoise.metrics import data_range_for, foreground_mask, psnr, ssim
from denoise.models import CLASSICAL_METHODS, ClassicalDenoiser, bm3d_available
from denoise.noise import add_noise, parse_noise
from denoise.noise_level import noise_level
from denoise.normalize import normalization_for
from denoise.outdir import UsageError
from denoise.registry import CLASSICAL as REGISTRY_CLASSICAL
from denoise.registry import MODEL_KINDS, SLOW
from denoise.scan import Scan

__all__ = ["run_benchmark", "method_options", "method_strength", "default_methods", "is_slow", "slow_methods_note", "summarize", "paired_difference",
           "FIELDS", "SLOW_FAMILIES"]

FIELDS = ["scan", "noise", "method", "psnr_fg", "ssim_fg", "psnr", "ssim", "seconds", "voxels_per_s", "peak_mb",
          "residual_corr", "lesion_contrast_kept", "edge_rise_mm", "edge_rise_clean_mm", "edge_gradient_ratio",
          "data_range"]
LESION_CONTRAST = 0.05  # fraction of the data range
# the classical rows of a benchmark: every filter of the registry but the median (an impulse-noise
# filter, no baseline for Gaussian, Rician or CT noise)
CLASSICAL = [m for m in REGISTRY_CLASSICAL if m != "median"]
# run only when named in ``methods``: BM3D 1.9 s per 256x256 slice on 2 cores (docs/speed.json; NLM
# 65 ms, mr-2d 26 ms), BM4D 1-2 min per 16-slice slab: with them one 193-slice volume took > 15 min
SLOW_FAMILIES = SLOW


def is_slow(method: str) -> bool:
    """True for the BM3D/BM4D rows (``bm3d``, ``bm3d:oracle``, ``bm4d:oracle``), which run only when named."""
    return method.partition(":")[0] in SLOW_FAMILIES


def default_methods() -> list[str]:
    """noisy, the fast classical filters (estimated and oracle sigma) and every shipped model.

    BM3D and BM4D are left out (`is_slow`; name them: ``bm3d``, ``bm3d:oracle``, ``bm4d:oracle``)."""
    methods = ["noisy"]
    for m in CLASSICAL:
        if not is_slow(m):
            methods += [m, f"{m}:oracle"]
    for pt in sorted(PRETRAINED_DIR.glob("*.pt")):
        kind = model_kind(pt)
        methods.append(f"{kind}:{pt.stem}")
        if kind == "dae":  # and with the oracle noise level, like the classical methods' oracle rows
            methods.append(f"{kind}:{pt.stem}:oracle")
    return methods


def slow_methods_note() -> str:
    """One line for the output of a run with the default methods: what was left out and how to add it."""
    how = ("name them in --methods to run them" if bm3d_available()
           else "to run them, pip install 'denoise[bm3d]' (non-commercial licence) and name them in --methods")
    return (f"bm3d, bm3d:oracle and bm4d:oracle are left out by default (BM3D about 2 s per 256x256 slice, "
            f"BM4D 1-2 min per 16 slices: tens of minutes per volume); {how}")


def run_benchmark(data: str | Path, noises: list[str], out: str | Path, *, methods: list[str] | None = None,
                  mask: str = "auto", seed: int = 0, max_slices: int | None = None,
                  progress: bool = True, reuse: str | Path | None = None) -> Path:
    """Run the comparison; returns the path of ``results.md`` (``results.csv`` beside it).

    ``methods``: names as `denoise run -m` takes them or in the bench's forms (`denoise.methods`:
    ``mr-2d`` is ``dae:mr-2d``, ``nlm:oracle``, ``mr-2d:tta`` ...), checked before anything runs
    (`UsageError` naming the valid ones); default: `default_methods`, which leaves out BM3D/BM4D.
    ``progress``: a bar over the runs (scan x noise x method) that names the running method, and
    under it a bar over the slices that method has denoised (its ETA; 2D methods and three-plane
    learned models) or MONAI's bar over 3D tiles.
    ``reuse``: an earlier ``results.csv``. Rows of classical methods (deterministic, independent of
    the shipped models) are copied from it instead of recomputed when the case's noisy input
    scores the same there (its PSNR and data range, a fingerprint of the reference and the noise
    realisation); their ``seconds`` are those measured then. The first four cases, which the
    example figures show, are always recomputed. Learned models are always run."""
    methods = bench_methods(methods) if methods else default_methods()
    specs = [parse_noise(n) for n in noises]
    old_rows = _reusable_rows(reuse) if reuse else {}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sources, _ = discover_scans(data)
    rows: list[dict[str, Any]] = []
    cache: dict[str, Any] = {}
    examples: dict[str, dict[str, np.ndarray]] = {}
    cases = [(s, spec) for s in sources for spec in specs]
    bar = tqdm(total=len(cases) * len(methods), desc="bench", unit="run", disable=not progress)
    for case_no, (source, spec) in enumerate(cases, 1):
        clean = _slab(source.load(), max_slices)
        if (spec.kind == "lowdose") != (clean.modality == "CT"):
            bar.update(len(methods))
            continue
        bar.set_postfix_str(f"case {case_no}/{len(cases)}: {source.relpath} {spec}")
        rng = data_range_for(clean.array, clean.modality)
        original = clean.array
        with_lesion, lesion = fidelity.insert_lesion(clean.array, LESION_CONTRAST * rng)
        clean = clean.with_array(with_lesion)
        case_seed = seed + zlib.crc32(f"{source.relpath}|{spec}".encode()) % 100_000
        noisy = add_noise(clean, spec, seed=case_seed)
        m = foreground_mask(clean.array) if mask == "auto" else None
        _, scale = (normalization_for(clean.modality)).params(noisy.array)
        oracle = float(np.std((noisy.array - clean.array)[m if m is not None else slice(None)])) / scale
        ref_a, noisy_a, orig_a = clean.array, noisy.array, original
        if clean.modality == "CT":  # score inside the declared HU window (reference, input and output)
            ref_a, noisy_a, orig_a = (np.clip(a, -1000.0, 1000.0) for a in (ref_a, noisy_a, orig_a))
        edges = _EdgeProbe(ref_a, float(np.mean(clean.spacing[-2:])))
        reusable = bool(old_rows) and len(examples) >= 4  # the example figures show the first four cases
        fingerprint = (f"{psnr(ref_a, noisy_a, data_range=rng, mask=m):.3f}", f"{rng:.4g}") if reusable else None
        for method in methods:
            bar.set_description(method)
            old = old_rows.get((source.relpath, str(spec), method))
            if old is not None and reusable and (old["noisy_psnr_fg"], old["data_range"]) == fingerprint:
                rows.append({k: old[k] for k in FIELDS})
                bar.update(1)
                continue
            den_fn = _method(method, clean.modality, spec.kind, oracle, cache, noisy, clean)
            if den_fn is None:
                bar.update(1)
                continue
            tracemalloc.start()
            t0 = time.perf_counter()
            result = (noisy.array if den_fn == "noisy"
                      else denoise_scan(noisy, den_fn, progress=progress, strength=method_strength(method)).array)
            secs = time.perf_counter() - t0
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            if clean.modality == "CT":
                result = np.clip(result, -1000.0, 1000.0)
            row = _score(ref_a, noisy_a, result, rng, m)
            row.update(_fidelity(orig_a, ref_a, noisy_a, result, lesion, LESION_CONTRAST * rng, m, edges))
            row.update(scan=source.relpath, noise=str(spec), method=method, seconds=f"{secs:.3f}",
                       voxels_per_s=f"{clean.array.size / max(secs, 1e-9):.4g}", peak_mb=f"{peak:.1f}",
                       data_range=f"{rng:.4g}")
            rows.append(row)
            case = examples.setdefault(f"{source.relpath}|{spec}", {"clean": clean.array, "noisy": noisy.array})
            case[method] = result
            bar.update(1)
    bar.close()
    _write_csv(out / "results.csv", rows)
    md = summarize(rows)
    (out / "results.md").write_text(md)
    _plots(rows, examples, out)
    return out / "results.md"


def summarize(rows: list[dict[str, Any]]) -> str:
    """Markdown: mean +- SD per noise x method; paired difference to BM3D (or NLM) with a 95% CI."""
    by = defaultdict(list)
    for r in rows:
        by[(r["noise"], r["method"])].append(r)
    lines = ["| noise | method | n | PSNR fg (dB) | SSIM fg | PSNR whole | SSIM whole | s/scan | vs baseline PSNR fg [95% CI] |",
             "|---|---|---|---|---|---|---|---|---|"]
    noises = sorted({r["noise"] for r in rows}, key=_noise_order)
    for noise in noises:
        methods = [m for (n, m) in by if n == noise]
        base = next((b for b in ("bm3d:oracle", "bm3d", "nlm:oracle", "nlm") if b in methods), None)
        for method in methods:
            rs = by[(noise, method)]
            cols = [_mean_sd([float(r[k]) for r in rs]) for k in ("psnr_fg", "ssim_fg", "psnr", "ssim")]
            diff = ""
            if base and method != base:
                paired = paired_difference(rs, by[(noise, base)])
                if paired is not None:
                    d, lo, hi = paired
                    diff = f"{d:+.2f} [{lo:+.2f}, {hi:+.2f}] vs {base}"
            secs = np.mean([float(r["seconds"]) for r in rs])
            lines.append(f"| {noise} | {method} | {len(rs)} | " + " | ".join(cols) + f" | {secs:.2f} | {diff} |")
    lines += ["", "Clinical fidelity (means over scans): residual correlation with the clean image (~0 = no anatomy "
              "removed), inserted-lesion contrast kept (1 = all), 10-90% edge rise distance (clean image's own in "
              "brackets; larger = blurrier).", "",
              "| noise | method | residual corr | lesion contrast kept | edge rise mm (clean) |", "|---|---|---|---|---|"]
    for noise in noises:
        for method in [m for (n, m) in by if n == noise]:
            rs = by[(noise, method)]
            mean = {k: np.nanmean([float(r[k]) for r in rs]) for k in
                    ("residual_corr", "lesion_contrast_kept", "edge_rise_mm", "edge_rise_clean_mm")}
            lines.append(f"| {noise} | {method} | {mean['residual_corr']:+.3f} | {mean['lesion_contrast_kept']:.2f} | "
                         f"{mean['edge_rise_mm']:.2f} ({mean['edge_rise_clean_mm']:.2f}) |")
    return "\n".join(lines) + "\n"


# --- helpers ---------------------------------------------------------------------------------


def model_oracle(model: LearnedDenoiser, noisy: Scan, clean: Scan) -> float:
    """The noise level a model's estimator would read if the reference carried no noise of its
    own: `noise_level` on the tiles it would pick, read from the true added noise (noisy - clean),
    on the model's scale; 2D models average over slices. The learned counterpart of the classical
    methods' oracle sigma (the std of the added noise)."""
    norm = model.normalization or normalization_for(clean.modality)
    x, _, _, scale = norm.to_model(noisy.array)  # what the model's estimator sees
    n = (noisy.array - clean.array) / scale
    if model.spatial_dims == 3:
        vols = zip(x.reshape(-1, *x.shape[-3:]), n.reshape(-1, *n.shape[-3:]))
    else:
        vols = zip(x.reshape(-1, *x.shape[-2:]), n.reshape(-1, *n.shape[-2:]))
    return float(np.mean([noise_level(a, model.noise_patch, noise=b) for a, b in vols]))


def method_options(method: str) -> dict:
    """`model_options` of a bench method name (``dae:mr-3d:strength0.25+series`` -> its options);
    every option unset for a classical method or a model named without options."""
    family, _, arg = method.partition(":")
    return model_options(arg.partition(":")[2] if family in MODEL_KINDS else "")


def method_strength(method: str) -> float:
    """The blend with the input a bench method asks for (``dae:mr-3d:strength0.25`` -> 0.25, as
    ``run --strength``); 1 (full denoising) for every other name."""
    strength = method_options(method)["strength"]
    return 1.0 if strength is None else strength


def _method(method: str, modality: str, noise_kind: str, oracle: float, cache: dict, noisy: Scan, clean: Scan):
    if method == "noisy":
        return "noisy"
    family, _, arg = method.partition(":")
    if family in CLASSICAL_METHODS or family == "bm4d":
        if family in ("bm3d", "bm4d") and not bm3d_available():
            return None
        three_d = family == "bm4d"
        return ClassicalDenoiser("bm3d" if three_d else family, sigma=oracle if arg == "oracle" else None,
                                 rician=noise_kind == "rician", spatial_dims=3 if three_d else 2)
    if family in MODEL_KINDS:
        name, _, option = arg.partition(":")
        if name not in cache:
            cache[name] = load_model(name, device="cpu")
        model = cache[name]
        norm = model.normalization
        model_ct = norm is not None and norm.kind == "window"
        if model_ct != (modality == "CT"):
            return None
        if not option:
            return model
        try:
            opts = model_options(option)
        except UsageError as exc:
            raise ValueError(f"{method!r}: {exc}") from None
        if opts["oracle"] and not model.noise_channel:
            return None
        # oracle: the noise-level channel reads the true added noise; tta: 4-flip self-ensemble;
        # 1plane / 3planes: `LearnedDenoiser.plan` (three-plane inference off / on); noisescaleF:
        # the estimated level told F times (`run --noise-scale`)
        if opts["noise_scale"] is not None and not model.noise_channel:
            raise ValueError(f"{method!r}: the model has no noise-level channel to scale")
        return model.variant(sigma=model_oracle(model, noisy, clean) if opts["oracle"] else None,
                             tta=opts["tta"], planes=opts["planes"], noise_scale=opts["noise_scale"])
    raise ValueError(f"unknown method {method!r}; examples: noisy, nlm, nlm:oracle, bm3d, bm4d:oracle, dae:mr-2d, "
                     "dae:mr-2d:oracle, dae:mr-2d:tta, dae:mr-2d:oracle+tta, dae:mr-2d:3planes, dae:mr-3d:1plane, "
                     "dae:mr-2d:noisescale0.9")


def _score(clean, noisy, den, rng, mask) -> dict[str, str]:
    return {
        "psnr_fg": f"{psnr(clean, den, data_range=rng, mask=mask):.3f}",
        "ssim_fg": f"{ssim(clean, den, data_range=rng, mask=mask):.4f}",
        "psnr": f"{psnr(clean, den, data_range=rng):.3f}",
        "ssim": f"{ssim(clean, den, data_range=rng):.4f}",
    }


class _EdgeProbe:
    """The clean middle slice's strongest edge points and its own 10-90% rise, found once per case
    so every method is measured at the same places."""

    def __init__(self, clean: np.ndarray, pixel_mm: float) -> None:
        self.pixel_mm = pixel_mm
        self.points, self.directions = fidelity.edge_points(self.middle(clean))
        self.clean_rise = self.rise(clean)

    @staticmethod
    def middle(a: np.ndarray) -> np.ndarray:
        return a[a.shape[0] // 2] if a.ndim == 3 else a

    def rise(self, image: np.ndarray) -> float:
        return fidelity.edge_rise_distance(self.middle(image), self.points, self.directions, self.pixel_mm)


def _fidelity(original, clean, noisy, den, lesion, contrast: float, mask, edges: _EdgeProbe) -> dict[str, str]:
    """Residual correlation, lesion contrast kept, 10-90% edge rise (middle slice) and gradient ratio."""
    return {
        "residual_corr": f"{fidelity.residual_correlation(clean, noisy, den, mask):.4f}",
        "lesion_contrast_kept": f"{fidelity.lesion_contrast_kept(original, den, lesion, contrast):.3f}",
        "edge_rise_mm": f"{edges.rise(den):.3f}",
        "edge_rise_clean_mm": f"{edges.clean_rise:.3f}",
        "edge_gradient_ratio": f"{fidelity.edge_gradient_ratio(clean, den):.3f}",
    }


def _slab(scan: Scan, max_slices: int | None) -> Scan:
    if scan.array.ndim == 4:
        scan = Scan(scan.array[0], scan.spacing, scan.affine, scan.modality, scan.meta)
    if not max_slices or scan.array.ndim < 3 or scan.array.shape[0] <= max_slices:
        return scan
    mid = scan.array.shape[0] // 2
    lo = max(0, mid - max_slices // 2)
    return Scan(scan.array[lo : lo + max_slices], scan.spacing, scan.affine, scan.modality, scan.meta)


def _mean_sd(v: list[float]) -> str:
    return f"{np.mean(v):.3f} ± {np.std(v):.3f}" if len(v) > 1 else f"{v[0]:.3f}"


def paired_difference(rows, base_rows, n_boot: int = 2000) -> tuple[float, float, float] | None:
    """Mean fg-PSNR difference of ``rows`` to ``base_rows`` (results.csv rows of one noise, paired by
    scan) and its bootstrap 95% CI: (mean, low, high); None when no scan is in both."""
    b = {r["scan"]: float(r["psnr_fg"]) for r in base_rows}
    d = np.array([float(r["psnr_fg"]) - b[r["scan"]] for r in rows if r["scan"] in b])
    if len(d) == 0:
        return None
    boot = np.random.default_rng(0).choice(d, size=(n_boot, len(d))).mean(axis=1)
    return float(d.mean()), float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))


def _noise_order(n: str) -> tuple[str, float]:
    kind, _, level = n.partition(":")
    try:
        return kind, float(level.split("-")[0])
    except ValueError:
        return kind, 0.0


def _reusable_rows(path: str | Path) -> dict[tuple[str, str, str], dict[str, str]]:
    """Classical-method rows of an earlier results.csv by (scan, noise, method), each with the
    noisy row's foreground PSNR of its case (``noisy_psnr_fg``) for the fingerprint check."""
    path = Path(path)
    if not path.is_file():
        return {}
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    noisy = {(r["scan"], r["noise"]): r["psnr_fg"] for r in rows if r["method"] == "noisy"}
    return {(r["scan"], r["noise"], r["method"]): {**r, "noisy_psnr_fg": noisy[(r["scan"], r["noise"])]}
            for r in rows
            if r["method"].partition(":")[0] in (*CLASSICAL, "bm4d") and (r["scan"], r["noise"]) in noisy}


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def _plots(rows, examples, out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plotting is optional (the app extra)
        return
    by_kind = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by_kind[r["noise"].split(":")[0]][r["method"]].append((_noise_order(r["noise"])[1], float(r["psnr_fg"])))
    for kind, methods in by_kind.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        for method, pts in sorted(methods.items()):
            levels = sorted({p[0] for p in pts})
            ax.plot(levels, [np.mean([v for lv, v in pts if lv == x]) for x in levels], marker="o", label=method)
        ax.set_xlabel(f"{kind} level")
        ax.set_ylabel("foreground PSNR (dB)")
        ax.legend(fontsize=6)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / f"psnr_vs_{kind}.png", dpi=110)
        plt.close(fig)
    for i, (key, imgs) in enumerate(list(examples.items())[:4]):
        names = [k for k in imgs if k not in ("clean",)]
        z = imgs["clean"].shape[0] // 2 if imgs["clean"].ndim == 3 else None
        def pick(a, z=z):
            return a[z] if z is not None else a
        panels = [("clean", pick(imgs["clean"]))] + [(n, pick(imgs[n])) for n in names]
        best = names[-1]
        panels.append((f"residual {best}", pick(imgs["noisy"] - imgs[best])))
        lo, hi = np.percentile(pick(imgs["clean"]), [1, 99.5])
        fig, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 2.6))
        for ax, (name, img) in zip(np.atleast_1d(axes), panels):
            vmin, vmax = (lo, hi) if not name.startswith("residual") else (-(hi - lo) / 4, (hi - lo) / 4)
            ax.imshow(img, cmap="gray", vmin=vmin, vmax=vmax)
            ax.set_title(name, fontsize=7)
            ax.axis("off")
        fig.suptitle(key, fontsize=8)
        fig.tight_layout()
        fig.savefig(out / f"example_{i}.png", dpi=100)
        plt.close(fig)
