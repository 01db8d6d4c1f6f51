"""`denoise view`: start the Streamlit viewer headless on localhost."""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["launch", "VIEWER"]

VIEWER = Path(__file__).resolve().parent / "app.py"  # inside the package: works from a wheel


def launch(*, data_root: Path | None = None, port: int = 8501, host: str = "127.0.0.1") -> int:
    """Become ``streamlit run denoise/viewer/app.py``: the process is replaced (exec), so signals sent to
    ``denoise view`` (SIGTERM from a service manager or a test) reach streamlit itself instead of
    leaving it running as an orphaned child. Does not return."""
    try:
        import streamlit  # noqa: F401
    except ImportError:
        raise ImportError("the viewer needs the app extra: pip install 'denoise[app]'") from None
    if data_root is not None and not Path(data_root).is_dir():
        raise ValueError(f"--data-root {data_root} is not a folder")
    cmd = [sys.executable, "-m", "streamlit", "run", str(VIEWER), "--server.headless", "true",
           "--server.port", str(port), "--server.address", host, "--browser.gatherUsageStats", "false",
           "--client.toolbarMode", "minimal",  # no "Deploy" button or developer menu for a local research tool
           "--server.maxUploadSize", "200"]
    if data_root is not None:
        cmd += ["--", "--data-root", str(Path(data_root).resolve())]
    env = {**os.environ}
    if data_root is not None:
        env["DENOISE_DATA_ROOT"] = str(Path(data_root).resolve())
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, cmd, env)
    return 1  # not reached
