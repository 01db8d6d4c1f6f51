"""`denoise run` as a deployment sees it (issue #26 sections 3 and 4): memory bounds and cluster throughput.

    python scripts/deploy_benchmark.py [--data ../shared/data] [--out docs/benchmarks/deploy] [--only memory|cluster]

Memory (`denoise.bench_deploy.memory_rows`): peak RSS of the `denoise run` process tree (default
models) on a 512 x 512 x 300 and a 512 x 512 x 600 CT volume tiled from the Philips CT chest
(`tiled_ct_volume`; int16 NIfTI), on the Siemens BOLD 4D series alone and three copies of it, and
on the 600-slice CT with the 4D series beside it. Cluster (`throughput_rows`): the MS patients'
FLAIR/T2W/T1W, the GE CT and Canon DWI series, serial and on a `dask scheduler` with 1 worker of
2 threads, 1 of 1 and 2 of 1 (`denoise.cluster.process_cluster`). Writes OUT/memory.csv and
OUT/cluster.csv. About 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from denoise.bench_deploy import memory_rows, throughput_rows, tiled_ct_volume


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/deploy"))
    ap.add_argument("--only", choices=["memory", "cluster"])
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    nifti = args.data / "nifti"
    with tempfile.TemporaryDirectory() as tmp:
        if args.only != "cluster":
            chest = nib.load(str(nifti / "ct_chest_philips_fnndsc.nii.gz"))
            zyx = np.asarray(chest.dataobj).T  # (x, y, z) on disk -> (z, y, x)
            cts = {}
            for z in (300, 600):
                vol = tiled_ct_volume(zyx, (z, 512, 512)).astype(np.int16)
                cts[z] = Path(tmp) / f"ct_512x512x{z}.nii"
                nib.save(nib.Nifti1Image(vol.T.copy(), chest.affine), str(cts[z]))
                del vol
            bold = nifti / "mr_bold_4d_siemens_prisma_stc.nii.gz"
            cases = {"ct_512x512x300": [cts[300]], "ct_512x512x600": [cts[600]], "bold_4d": [bold],
                     "bold_4d_x3": [bold] * 3, "ct_600_and_bold_4d": [cts[600], bold]}
            rows = pd.DataFrame(memory_rows(cases))
            rows.to_csv(args.out / "memory.csv", index=False)
            print(rows.to_string(index=False), flush=True)
        if args.only != "memory":
            src = Path(tmp) / "cluster_in"
            for f in sorted(nifti.glob("mr_ms_patient*.nii.gz")):
                (src / "ms").mkdir(parents=True, exist_ok=True)
                shutil.copy(f, src / "ms" / f.name)
            for d in ("ge_ct_colonography_3slices", "canon_mr_dwi_b0"):
                shutil.copytree(args.data / "dicom" / d, src / d)
            rows = pd.DataFrame(throughput_rows(src, [("serial", 0, 2), ("1 worker x 2 threads", 1, 2),
                                                      ("1 worker x 1 thread", 1, 1), ("2 workers x 1 thread", 2, 1)]))
            rows.to_csv(args.out / "cluster.csv", index=False)
            print(rows.to_string(index=False), flush=True)


if __name__ == "__main__":
    main()
