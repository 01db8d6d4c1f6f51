"""A Dask cluster of separate processes on this machine: ``dask scheduler`` and ``dask worker``
started as their own programs (what a cluster's nodes run), not a `LocalCluster` inside the
caller. The tests and `scripts/cluster_benchmark.py` run ``denoise run --scheduler`` against it;
on a real cluster the same command takes the scheduler's address (README, "Deployment").
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["process_cluster"]


@contextmanager
def process_cluster(workers: int = 2, *, memory_limit: str = "2GiB", threads: int = 1,
                    log_dir: str | Path | None = None, timeout: float = 90.0) -> Iterator[tuple[str, dict[str, subprocess.Popen]]]:
    """Start a scheduler on loopback and ``workers`` worker processes (``threads`` threads and
    ``memory_limit`` each, no nanny: a killed worker stays dead); yield (scheduler address,
    {worker name: process}); kill them all on exit. Logs go to ``log_dir`` (default: a temporary
    folder). Raises TimeoutError if the cluster is not up within ``timeout`` seconds."""
    from dask.distributed import Client

    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(log_dir or tmp)
        logs.mkdir(parents=True, exist_ok=True)
        sched_file = Path(tmp) / "scheduler.json"
        procs = [_spawn(["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                         "--scheduler-file", str(sched_file)], logs / "scheduler.log")]
        try:
            deadline = time.time() + timeout
            while not sched_file.exists():
                if time.time() > deadline or procs[0].poll() is not None:
                    raise TimeoutError(f"the Dask scheduler did not start (log: {logs / 'scheduler.log'})")
                time.sleep(0.2)
            address = None
            while address is None:  # the file may be caught half-written
                try:
                    address = json.loads(sched_file.read_text())["address"]
                except (json.JSONDecodeError, KeyError):
                    if time.time() > deadline:
                        raise TimeoutError(f"the Dask scheduler file {sched_file} stayed unreadable") from None
                    time.sleep(0.2)
            named = {}
            for i in range(workers):
                name = f"w{i + 1}"
                named[name] = _spawn(["distributed.cli.dask_worker", address, "--name", name, "--nworkers", "1",
                                      "--nthreads", str(threads), "--memory-limit", memory_limit, "--no-dashboard",
                                      "--no-nanny"], logs / f"{name}.log")
                procs.append(named[name])
            with Client(address, timeout=timeout) as client:
                client.wait_for_workers(workers, timeout=timeout)
            yield address, named
        finally:
            for p in procs:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:  # already gone (a killed worker)
                    pass
                p.wait(timeout=30)


def _spawn(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "w") as fh:  # the child keeps its own handle
        return subprocess.Popen([sys.executable, "-m", *args], stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
