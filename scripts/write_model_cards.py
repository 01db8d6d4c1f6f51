"""Write denoise/pretrained/<name>.md model cards from each checkpoint and the benchmark results.

    python scripts/write_model_cards.py   # after train_all.sh and benchmark.py (33 s on 2 cores, most of it running the MR models on the GE EPI)
"""

from __future__ import annotations

import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from denoise.bench_cases import clean_cases, clean_change

ROOT = Path(__file__).resolve().parents[1]
CASES = clean_cases(ROOT.parent / "shared" / "data", ROOT / "sample_data")
SHEPP, PHANTOM_3D = CASES["Shepp-Logan (noise-free)"], CASES["3D phantom (noise-free)"]
PRE = ROOT / "denoise" / "pretrained"
BENCH = ROOT / "docs" / "benchmarks"

PURPOSE = {
    "mr-2d": "Blind 2.5D denoising of magnitude MR slices (Rician noise 0.2-9% of the robust maximum, so that nearly "
             "noise-free scans are changed little): each slice is denoised with two neighbouring slices on each side; "
             "a lone 2D image works too (neighbours repeated). Three phases: the first on four brain volumes, the second "
             "(issue #31) grew it a full-resolution tail after the pixel-unshuffle network, trained with a one-pixel "
             "shift-consistency term so that the sub-pixel phases agree (the faint 2-pixel pattern on nearly noise-free "
             "scans fell from up to 1.8x the input's to at most 1.09x), on 15 real volumes (MS patients, tumour, child, "
             "prostate; split by subject) with small faint blobs inserted into half the training patches; the third "
             "weighs those blobs' pixels 101x in the loss and shows anatomy at 2-4x the pixel size, half of it cut from "
             "k-space (the blur and ringing of coarse EPI/DWI matrices). Told 0.9x the noise level it estimates in "
             "tissue, it keeps >= 0.9 of a 5 mm lesion at 5% contrast under Rician 5% with fg PSNR above BM3D's.",
    "ct-2d": "Blind 2.5D denoising of CT slices in HU (low-dose noise; noise-level input channel; each slice with "
             "one neighbouring slice on each side, a lone 2D image works too). It restores the full-dose image from a "
             "low-dose one: training targets keep full-dose noise of their own (0-25 HU, an independent draw of the "
             "same sinogram noise) under the dose's noise, as a real full-dose scan does, so on a scan at routine dose "
             "it removes part of the noise rather than all of it (a smooth, 'plastic' look is what full-dose-trained "
             "CT denoisers avoid). Trained on "
             "sinogram-domain low-dose noise over two real CT volumes and five MR volumes mapped to pseudo-HU (air at "
             "-1000 HU): the real training CTs have no air-tissue boundaries (a smooth 2 mm head template and a CTA "
             "clipped at 0 HU), and without borrowed anatomy the model blurred them on real CT. Input outside "
             "[-1200, 3000] HU (out-of-field padding, metal) passes through unchanged.",
    "mr-3d": "Blind 3D denoising of magnitude MR volumes (Rician noise 1-9% of the robust maximum, trained down "
             "to 0.2%). A slice-preserving ('slab') 3D DAE: the slice axis keeps full resolution at every level "
             "(pixel-unshuffle and strides act in-plane), so thick-slice series are handled as they are; it is "
             "mr-2d grown into 3D with the same output (denoise.models.grow) and fine-tuned on 16-slice patches "
             "with every level's convolutions spanning 3 slices. Inference: sliding windows of 32 slices by whole "
             "slices (up to 320 x 320) with Gaussian blending; a lone 2D image works too (a 1-slice volume). "
             "Near-isotropic volumes (voxel edges within 1.5x of each other, at least 16 voxels along every "
             "axis) go another way: mr-2d runs along the three orthogonal planes, told 0.85x the noise level it "
             "estimates in tissue, and the three results are averaged (denoise.infer.LearnedDenoiser.plan): it "
             "keeps >= 0.9 of a small faint lesion at Rician 5%, at a fg PSNR above BM3D's and mr-2d's on the "
             "held-out T1 (`--noise-scale 1`: ~+0.3 dB more, and less of the lesion); `denoise run --planes 1` / `load_model('mr-3d', planes=1)` keeps the "
             "slab network everywhere.",
    "vae-mr-2d": "Convolutional VAE for MR slices, for comparison with the DAE (latent sampling, interpolation).",
    "sparse-mr-2d": "Sparse autoencoder (L1 on the latent code) for MR slices, for comparison and anomaly maps.",
    "cae-mr-2d": "Contractive autoencoder for MR slices: the sparse AE's bottleneck network trained with a penalty on "
                 "the squared Frobenius norm of its encoder's Jacobian (Hutchinson estimate with one forward-mode "
                 "JVP per step, denoise.losses.jacobian_frobenius), so that its code moves little with the input; "
                 "for the autoencoder lesson and comparison (docs/benchmarks.md, 'Contractive autoencoder'). Not a "
                 "denoiser to use: on the held-out T1 (three slabs, fg PSNR) it scores 23.3 dB at Rician 5%, below "
                 "the noisy input's 26.0, and 23.0 at 9% (input 21.0); its code moves 0.0033 per unit of input "
                 "change, against 0.87 for the same network trained without the penalty.",
}


# The 2-pixel pattern on a coarse real scan (the GE EPI, 64x64): measured by running the models
PATTERN_MODELS = ("mr-2d", "mr-3d")
EPI = CASES["GE EPI"]  # scripts/clean_input_check.py's real high-SNR series


def epi_pattern(name: str) -> tuple[str, str, str]:
    """sigma_before, sigma_after and sigma_after with --tta from the manifests of
    `denoise run -i ../shared/data/dicom/ge_mr_epi_fmri -o OUT -m NAME --full-strength [--tta]` (the first
    series; the network and its guard, without the strength its repeats would choose)."""
    import tempfile

    from denoise.batch import denoise_folder
    from denoise.manifest import read_manifest

    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for tta in (False, True):
            out = Path(tmp) / f"tta{tta}"
            denoise_folder(EPI, out, model=name, device="cpu", tta=tta, calibrate=False, progress=False)
            rows.append(sorted(read_manifest(out / "manifest.csv").items())[0][1])
    return tuple(f"{float(v):.1f}" for v in (rows[0]["sigma_before"], rows[0]["sigma_after"], rows[1]["sigma_after"]))


def _split_line(data: dict) -> str:
    """The validation split, naming the files when the scans are the files one to one."""
    tr, va, files = data.get("train_scans") or [], data.get("val_scans") or [], data.get("files", [])
    if not data.get("pseudo_ct") and sorted(tr + va) == list(range(len(files))):
        name = lambda i: files[i].split("/")[-1]  # noqa: E731
        return f"- validation split by scan: validation {', '.join(map(name, va))}; training the others"
    return f"- validation split by scan: train indices {tr}, validation {va}"


def clean_input_change(name: str) -> tuple[str, float, float]:
    """(phantom, RMS change in % of its robust maximum by the network alone, and by the default
    output with the no-added-structure guard) a model makes to a noise-free sample phantom
    (scripts/clean_input_check.py measures the same on real high-SNR scans)."""
    from denoise.infer import load_model
    from denoise.io import read_scan

    model = load_model(name, device="cpu")
    path = {2: SHEPP, 3: PHANTOM_3D}[model.spatial_dims]
    scan = read_scan(path)
    return path.relative_to(ROOT).as_posix(), clean_change(model, scan, guard=False)[2], clean_change(model, scan)[2]


def _results(sub: str) -> list[dict[str, str]]:
    """Rows of docs/benchmarks/<sub>/results.csv (none when that part was not run)."""
    f = BENCH / sub / "results.csv"
    if not f.exists():
        return []
    with open(f, newline="") as fh:
        return list(csv.DictReader(fh))


def _is(method: str, name: str) -> bool:
    """Whether a results row's method is ``name`` itself or a shipped model ``FAMILY:name``."""
    return method == name or method.endswith(":" + name)


def bench_rows(name: str, column: str = "psnr_fg") -> dict[str, list[float]]:
    """Held-out values of a results column (default: foreground PSNR) per noise level of a shipped
    model (suffix ``:name``) or a method."""
    out = defaultdict(list)
    for r in _results("mr") + _results("ct"):
        if _is(r["method"], name):
            out[r["noise"]].append(float(r[column]))
    return out


def other_scanner_lines(name: str) -> list[str]:
    """Card lines for the real series from other scanners (docs/benchmarks/other): the model's
    foreground PSNR per scan and level beside BM3D with oracle sigma, when both were run."""
    rows = _results("other")
    mine = {(r["scan"], r["noise"]): float(r["psnr_fg"]) for r in rows if _is(r["method"], name)}
    base = {(r["scan"], r["noise"]): float(r["psnr_fg"]) for r in rows if r["method"] == "bm3d:oracle"}
    if not mine:
        return []
    lines = ["", "## Other scanners (real series unlike the training data; foreground PSNR, dB; docs/benchmarks.md)"]
    for scan in sorted({k[0] for k in mine}):
        cells = [f"{noise}: {mine[(scan, noise)]:.2f}" + (f" (BM3D oracle {base[(scan, noise)]:.2f})" if (scan, noise) in base else "")
                 for noise in sorted({k[1] for k in mine if k[0] == scan})]
        lines.append(f"- {scan.split('/')[0]}: {'; '.join(cells)}")
    return lines


def _operating_point(inference: dict) -> list[str]:
    """The card's line on the noise level the network is told (`LearnedDenoiser` ``noise_scale``)."""
    parts = []
    if "noise_scale" in inference:
        parts.append(f"this network is told {inference['noise_scale']:g} x the noise level it estimates")
    if "isotropic_noise_scale" in inference:
        parts.append(f"along the three planes `{inference.get('isotropic_model')}` is told "
                     f"{inference['isotropic_noise_scale']:g} x its estimate")
    if not parts:
        return []
    return [f"- operating point: {'; '.join(parts)} in tissue (air keeps the full level), which keeps small faint "
            "lesions (>= 0.9 of a 5 mm lesion at 5% contrast under Rician 5%; docs/benchmarks.md \"Lesions across sizes "
            "and contrasts\") for 0.25-0.4 dB of PSNR; `denoise run --noise-scale 1` gives the PSNR-best point "
            "(docs/design.md \"An operating point\")"]


def main() -> int:
    for pt in sorted(PRE.glob("*.pt")):
        info = json.loads(torch.load(str(pt), map_location="cpu", weights_only=True)["config"])
        name = pt.stem
        m, t, v = info["model"], info["train"], info.get("validation", {})
        n_params = sum(x.numel() for x in torch.load(str(pt), weights_only=True)["state_dict"].values())
        bench = bench_rows(name)
        lines = [
            f"# Model card: {name}",
            "",
            PURPOSE.get(name, ""),
            "",
            "**Intended use: research only. Not a medical device; not for diagnosis or treatment decisions.**",
            "",
            "## Model",
            f"- family `{m['kind']}`, {m['spatial_dims']}D, channels {m['channels']}, skip connections "
            f"{m['skip'] and m['kind'] == 'dae'}, residual output {m['residual']}, neighbouring-slice context "
            f"{m.get('context', 0)}, noise-level input channel {m.get('noise_channel', False)}, pixel-unshuffle "
            f"{m.get('shuffle', 1)}"
            + (f", slice-preserving 3D (slab; the {m['depth_levels']} deepest levels' convolutions span 3 slices)"
               if m.get("slab") else "") + f", {n_params:,} parameters",
            f"- intensity scaling: {info['normalization']}",
            *([f"- inference: near-isotropic volumes go to `{info['inference']['isotropic_model']}` along the three "
               "orthogonal planes (averaged); other volumes to this network"] if info.get("inference", {}).get("isotropic_model") else []),
            *_operating_point(info.get("inference", {})),
            "",
            "## Training",
            f"- data: {', '.join(info['data'].get('files', []))} (../shared/data; see its SOURCES.md for origin and licences)"
            + (f"; MR anatomy as pseudo-CT (NLM-cleaned, mapped linearly to HU): {', '.join(info['data']['pseudo_ct'])}"
               if info["data"].get("pseudo_ct") else ""),
            _split_line(info["data"]),
            f"- held out from all training (benchmark data): {', '.join(info['data'].get('held_out', []))}",
            f"- noise: `{info['noise']}` added on the fly; patches "
            + (f"{t['patch_depth']} slices x {t['patch_size']}^2" if t.get("patch_depth") else f"{t['patch_size']}")
            + f", batch {t['batch_size']}, "
            f"{t['epochs']} epochs x {t['steps_per_epoch']} steps max, AdamW lr {t['lr']}, cosine schedule, seed {t['seed']}"
            + (", bfloat16 autocast on the CPU" if t.get("cpu_bf16") else "")
            + (", 2D patches sliced along all three volume axes" if t.get("all_axes") else "")
            + (f", contrast augmentation (MONAI RandHistogramShift and darkening 0.5-1, each with p = {t['contrast_augment']:g})"
               if t.get("contrast_augment") else "")
            + (f", coarse-pixel augmentation (2x in-plane block averaging, p = {t['coarse_augment']:g})"
               if t.get("coarse_augment") else "")
            + (f", thick-slice augmentation (slices 2-3 apart, p = {t['thick_augment']:g})" if t.get("thick_augment") else "")
            + (f"; the target keeps full-dose noise of its own (std drawn up to {t['reference_noise']:g} on the normalised "
               "scale, an independent draw of the same sinogram noise) under the dose's noise: low-dose -> full-dose "
               "restoration" if t.get("reference_noise") else ""),
            f"- recipe: `python scripts/train_pretrained.py --model {name}{' --bf16' if t.get('cpu_bf16') else ''}"
            f"{' --init ...' if info.get('init') else ''}`: its recipe (the settings above, "
            f"{t['epochs'] * t['steps_per_epoch']} steps), as scripts/train_all.sh runs it ("
            + (f"DataLoader workers: {t['num_workers']}" if t.get("num_workers") else "CPU, 2 threads, at most ~30 minutes")
            + ")"
            + (f"; grown or fine-tuned from `{info['init']}` (the run before it in that script), shipping the final weights"
               if info.get("init") else "; shipping the final weights"),
            "",
            "## Validation (patches of the validation scan, normalised scale, data range 1)",
            f"- PSNR {v.get('val_psnr', float('nan')):.2f} dB (noisy input {v.get('val_psnr_noisy', float('nan')):.2f} dB), "
            f"SSIM {v.get('val_ssim', float('nan')):.3f}, best epoch {v.get('epoch')}",
        ]
        base = bench_rows("bm3d:oracle")
        if bench:
            lines += ["", "## Held-out benchmark (foreground PSNR, dB, mean over cases; docs/benchmarks.md)"]
            tta, oracle, blind3d = bench_rows(name + ":tta"), bench_rows(name + ":oracle"), bench_rows("bm3d")
            one = bench_rows(name + ":1plane")
            for noise, vals in bench.items():
                extra = [f"the slab network alone (`planes=1`): {np.mean(one[noise]):.2f}"] if one.get(noise) else []
                extra += [f"with `--tta`: {np.mean(tta[noise]):.2f}"] if tta.get(noise) else []
                extra += [f"told the true noise level: {np.mean(oracle[noise]):.2f}"] if oracle.get(noise) else []
                extra += [f"BM3D blind: {np.mean(blind3d[noise]):.2f}"] if blind3d.get(noise) else []
                extra += [f"BM3D with oracle sigma: {np.mean(base[noise]):.2f}"] if base.get(noise) else []
                lines.append(f"- {noise}: {np.mean(vals):.2f}" + (f" ({'; '.join(extra)})" if extra else ""))
        lines += other_scanner_lines(name)
        beats = all(np.mean(v) > np.mean(base[n]) for n, v in bench.items() if base.get(n))
        lines += [
            "",
            "## Known limits",
            "- Trained on few subjects (a handful of volumes); expect lower quality on unseen contrasts, "
            "vendors, field strengths and body parts.",
            "- Synthetic noise only: real noise that is spatially correlated (parallel imaging, CT kernels, "
            "interpolation) is not modelled; residual maps should be inspected.",
            "- Training scans are 8-bit or smoothed templates: fine texture may be under-represented.",
        ]
        if name in ("mr-2d", "mr-3d"):  # docs/benchmarks.md, 'Real noise' (session 42's run and blend)
            lines.append("- Real EPI/fMRI noise (low, spatially correlated): on three real repeated-acquisition EPI series "
                         "(GE / Siemens / nibabel) scored against the mean of their other repeats, mr-2d is below the noisy "
                         "input (-0.04/-1.25/-1.42 dB) and so is mr-3d on two (+0.05/-0.77/-0.70): mr-2d sharpens these "
                         "smooth, interpolated images (docs/design.md). Blended with `--strength 0.25` mr-3d is "
                         "+0.02/+0.16/+0.19 dB, mr-2d -0.01/+0.13/+0.13 (docs/benchmarks.md, 'Real noise'). "
                         "`denoise run` on the whole 4D series lets its still repeats choose the strength "
                         "(`denoise.repeat_strength`, the manifest's repeat_strength): mr-3d +0.05/+0.17/+0.20 dB, "
                         "mr-2d +0.00/+0.13/+0.14, never below the input. For a single EPI volume without its "
                         "repeats use `-m mr-3d --strength 0.25`.")
        if name in PATTERN_MODELS and EPI.is_dir():
            before, after, tta = epi_pattern(name)
            lines.append("- On inputs with little noise or coarse pixels the network alone can leave a faint 2-pixel "
                         "periodic pattern (the pixel-unshuffle's sub-images disagree slightly) and raise the noise "
                         "estimate; the default output never shows either above the input's: such slices are blended "
                         "back towards the input (the no-added-structure guard, `denoise/guard.py`; the manifest's "
                         "guarded_slices; docs/benchmarks.md, 'No added structure'). On the 64x64 GE EPI (../shared/data; `denoise run -i "
                         "../shared/data/dicom/ge_mr_epi_fmri --full-strength`, manifest columns sigma_before/sigma_after) the wavelet "
                         f"noise estimate reads {before} before and {after} after denoising ({tta} with `--tta`)."
                         + " On the noise-free phantom {} the network alone changes the image by {:.2f}% of the robust "
                         "maximum (RMS; sharp synthetic edges, a worst case), the guarded output by {:.2f}%".format(
                             *clean_input_change(name))
                         + ("; on the held-out T1 at 5% noise the pattern is not distinguishable from residual noise."
                            if name == "mr-2d" else "."))
        iso = info.get("inference", {}).get("isotropic_model")
        if iso:
            kept = {m: bench_rows(m, "lesion_contrast_kept").get("rician:0.05") for m in (name, name + ":1plane", iso)}
            if all(kept.values()):
                kept = {m: float(np.mean(v)) for m, v in kept.items()}
                lines.append(f"- On near-isotropic volumes it averages three planes ({iso}), which, like BM4D, keeps less of a "
                             "feature one slice thin: the benchmark's inserted lesion, a disc in a single slice, keeps "
                             f"{kept[name]:.2f} of its contrast at Rician 5% ({kept[name + ':1plane']:.2f} with the slab network "
                             f"alone, {kept[iso]:.2f} with {iso}; docs/benchmarks.md). Use `--planes 1` (`load_model('{name}', planes=1)`) "
                             "where one-slice features matter more than noise.")
        if bench and not beats:
            lines.append("- Short training on little data: on the held-out benchmark it does not reach BM3D with oracle sigma at every "
                         "level (above; docs/benchmarks.md); prefer BM3D where quality matters more than speed.")
        pt.with_suffix(".md").write_text("\n".join(lines) + "\n")
        print("wrote", pt.with_suffix(".md"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
