"""One vocabulary of method names for ``denoise run -m`` and ``denoise bench --methods``.

The names both take:

- a classical filter: gaussian, median, nlm, tv, wavelet, bm3d (`denoise.models.CLASSICAL_METHODS`);
- a shipped model by name (``denoise models``: ct-2d, mr-2d, mr-3d, ...) or a checkpoint file (.pt);
- a model in the bench's FAMILY:NAME form (``dae:mr-2d``, ``vae:vae-mr-2d``): ``run -m dae:mr-2d``
  is ``run -m mr-2d``.

The bench also takes ``noisy`` (the input unchanged), ``bm4d`` (BM3D in 3D), the oracle noise
level (``nlm:oracle``, ``mr-2d:oracle``) and a model's inference options (``mr-2d:tta``,
``:1plane``, ``:3planes``, ``:noisescaleF`` as ``run --noise-scale F``, ``:strengthS`` as ``run --strength S``,
joined by ``+``); its rows carry the FAMILY:NAME form (``bench
--methods mr-2d`` gives rows named ``dae:mr-2d``, as the default list does). `bench_methods` and
`run_model` check names before any work starts (`UsageError`, exit 2, naming the valid ones).

Nothing heavy is imported here (``--help`` lists the names from it).
"""

from __future__ import annotations

from pathlib import Path

from denoise.outdir import UsageError
from denoise.pretrained import PRETRAINED_DIR
from denoise.registry import CLASSICAL, MODEL_KINDS, SLOW, bm3d_available

__all__ = ["CLASSICAL", "FAMILIES", "MODEL_OPTIONS", "PRETRAINED_DIR", "shipped_models", "model_kind", "model_options",
           "valid_names", "run_model", "bench_method", "bench_methods"]

FAMILIES = MODEL_KINDS
MODEL_OPTIONS = ("oracle", "tta", "1plane", "3planes", "series", "noisescaleF", "strengthS")


def shipped_models() -> list[str]:
    """Names of the shipped models (``denoise/pretrained/*.pt``), sorted."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.pt"))


def model_kind(model: str | Path) -> str:
    """The kind (family) of a shipped model (by name) or a checkpoint file, as its config records
    it. Raises `denoise.checkpoint.CheckpointError` for a file that is not a readable checkpoint."""
    from denoise.checkpoint import read_info
    from denoise.models.loading import resolve_checkpoint

    return read_info(resolve_checkpoint(model))["model"]["kind"]


def model_options(opts: str) -> dict:
    """A bench model's options (``oracle``, ``tta``, ``1plane`` or ``3planes``, ``series``,
    ``noisescaleF``, ``strengthS``; joined by ``+``; "" = none) as `LearnedDenoiser` arguments:
    {"oracle": bool, "tta": bool, "planes": 1, 3 or None, "noise_scale": F or None}, "strength": S or
    None (the blend with the input of ``run --strength``, `denoise.infer.denoise_array`), and
    "series": bool (the real-noise bench: the whole 4D series denoised at once, as ``run`` takes it,
    its strength chosen by its repeats, `denoise.repeat_strength`; the synthetic bench's cases are
    3D, where it changes nothing). Raises `UsageError` naming the bad option."""
    options = opts.split("+") if opts else []
    scales = [o for o in options if o.startswith("noisescale")]
    strengths = [o for o in options if o.startswith("strength")]
    flags = set(options) - set(scales) - set(strengths)
    if (not flags <= set(MODEL_OPTIONS[:5]) or {"1plane", "3planes"} <= flags or len(scales) > 1
            or len(strengths) > 1):
        raise UsageError(f"unknown model option in {opts!r}: use oracle, tta, 1plane or 3planes, series, noisescaleF "
                         "(e.g. noisescale0.9), strengthS (e.g. strength0.25), or several joined by + (not both "
                         "1plane and 3planes)")
    scale = strength = None
    if scales:  # the checks import torch: only for names that carry these options
        from denoise.models.learned import check_noise_scale

        scale = _valued(scales[0], "noisescale", check_noise_scale)
    if strengths:
        from denoise.infer import check_strength

        strength = _valued(strengths[0], "strength", check_strength)
    return {"oracle": "oracle" in flags, "tta": "tta" in flags,
            "planes": 1 if "1plane" in flags else 3 if "3planes" in flags else None, "noise_scale": scale,
            "strength": strength, "series": "series" in flags}


def _valued(option: str, prefix: str, check) -> float:
    """The value of a ``PREFIXvalue`` option through ``check``; `UsageError` naming the option."""
    try:
        return check(option.removeprefix(prefix))
    except ValueError as exc:
        raise UsageError(f"{option!r}: {exc}") from None


def valid_names(bench: bool = False) -> str:
    """The valid names in words (for --help and errors)."""
    models = ", ".join(shipped_models()) or "none installed"
    if not bench:
        return (f"classical: {', '.join(CLASSICAL)}; shipped models: {models} (also as dae:NAME); "
                "or a checkpoint file (.pt)")
    return (f"noisy; classical: {', '.join(CLASSICAL)}, bm4d, each also NAME:oracle; shipped models: {models}, "
            "also as FAMILY:NAME (dae:mr-2d), with options NAME:oracle, :tta, :1plane, :3planes, :series, :noisescaleF, "
            ":strengthS (joined by +); "
            "or a checkpoint file (.pt)")


def run_model(name: str | None) -> str | None:
    """``run -m``'s model name as the loader takes it: a FAMILY:NAME prefix dropped
    (``dae:mr-2d`` -> ``mr-2d``). Raises `UsageError` naming the valid names for an unknown bare
    name (a path, existing or not, is left to the loader), a bench-only name or a model option
    (run has --tta and --planes for those)."""
    if name is None:
        return None
    head, sep, rest = name.partition(":")
    if sep and head in FAMILIES and rest:
        model, sep2, opts = rest.partition(":")
        if sep2:
            raise UsageError(f"-m {name}: run takes model options as flags (--tta, --planes 1|3), not :{opts}; "
                             f"use -m {model}")
        return model
    if head in CLASSICAL and sep:
        raise UsageError(f"-m {name}: run estimates the noise itself (no :{rest}); use -m {head}")
    if name in ("noisy", "bm4d") or head == "bm4d":
        raise UsageError(f"-m {name} is a `denoise bench` method only; valid for run: {valid_names()}")
    path = Path(name)
    if name in CLASSICAL or name in shipped_models() or path.suffix or path.exists() or "/" in name:
        return name
    raise UsageError(f"model {name!r} cannot be used: unknown model or method; valid: {valid_names()}")


def bench_method(name: str) -> str:
    """A bench method name in the bench's form (``mr-2d`` -> ``dae:mr-2d``, the family read from the
    checkpoint; the rest unchanged). Raises `UsageError` for an unknown name or option, BM3D/BM4D
    when not installed, a checkpoint that cannot be read, or a FAMILY: prefix that is not the
    checkpoint's kind."""
    text = name.strip()
    if text == "noisy":
        return text
    head, _, rest = text.partition(":")
    if head in CLASSICAL or head == "bm4d":
        if rest not in ("", "oracle"):
            raise UsageError(f"{text!r}: a classical method takes only :oracle (e.g. {head}:oracle)")
        if head in SLOW and not bm3d_available():
            raise UsageError(f"{text!r}: BM3D/BM4D are not installed: pip install 'denoise[bm3d]' "
                             "(non-commercial licence)")
        return text
    family = head if head in FAMILIES else None
    model, _, opts = rest.partition(":") if family else (head, "", rest)
    if not (model in shipped_models() or (model.endswith(".pt") and Path(model).is_file())):
        raise UsageError(f"unknown method {text!r}")
    from denoise.checkpoint import CheckpointError

    try:
        kind = model_kind(model)
    except CheckpointError as exc:
        raise UsageError(f"{text!r}: {exc}") from exc
    if family and family != kind:
        raise UsageError(f"{text!r}: {model} is a {kind} model, not {family} (use {kind}:{model} or just {model})")
    family = kind
    try:
        model_options(opts)
    except UsageError as exc:
        raise UsageError(f"{text!r}: {exc}") from None
    return f"{family}:{model}" + (f":{opts}" if opts else "")


def bench_methods(names: list[str]) -> list[str]:
    """`bench_method` of every name, repeats dropped; one `UsageError` naming every bad name and
    the valid ones."""
    out, bad = [], []
    for name in names:
        try:
            method = bench_method(name)
        except UsageError as exc:
            bad.append(str(exc))
            continue
        if method not in out:
            out.append(method)
    if not out and not bad:
        bad.append("no method named")
    if bad:
        raise UsageError(f"--methods: {'; '.join(bad)}. Valid: {valid_names(bench=True)}")
    return out
