"""Why a file found while walking a tree cannot be read at all (before any format is tried).

A symbolic-link loop, a link whose target is gone and a file the user may not read each become
one failed file with a clear reason, instead of an exception that stops the whole walk.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = ["unreadable_reason"]


def unreadable_reason(path: Path) -> str | None:
    """None when ``path`` can be opened for reading; otherwise a short reason without paths."""
    try:
        if path.is_symlink():
            try:
                os.stat(path)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    return "symbolic link loop (the link points back to itself)"
                if exc.errno == errno.ENOENT:
                    return "broken symbolic link (its target does not exist)"
                return f"symbolic link cannot be followed ({exc.strerror})"
        with open(path, "rb") as fh:
            fh.read(1)
    except PermissionError:
        return "permission denied: the file cannot be read by this user"
    except IsADirectoryError:
        return "a folder where a file was expected"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop (the link points back to itself)"
        return f"cannot be read ({exc.strerror or type(exc).__name__})"
    return None
