"""The output folder of a batch run: kept apart from the input, taken by one run at a time.

`check_separate` and `check_destinations` refuse, before anything is written, every layout in
which an output could land on an input file or inside the input tree (the same folder, one inside
the other, symlinks, ``.``/``..``, a single-file input beside its output). `OutputLock` is the
exclusive lock a run holds on its output folder: a lock file with pid and host, held with
``flock`` (the kernel releases it when the process dies, so a killed run's lock is stale and the
next run takes it over), and removed on exit.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import stat
import time
from collections.abc import Iterable
from pathlib import Path

__all__ = ["UsageError", "OutputLocked", "OutputLock", "check_separate", "check_destinations", "lock_name",
           "real_path", "identity"]

log = logging.getLogger(__name__)


class UsageError(ValueError):
    """Bad arguments (CLI exit code 2): nothing has been written."""


class OutputLocked(UsageError):
    """Another live run holds the output folder."""


def real_path(path: str | Path) -> Path:
    """``path`` made absolute with every existing symlink followed (also for paths not yet there)."""
    return Path(os.path.realpath(os.path.abspath(path)))


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def identity(path: str | Path) -> tuple[int, int] | None:
    """(device, inode) of an existing path, symlinks followed; None when it does not exist. Two paths
    with one identity are one file or folder, whatever their names (hard links, bind mounts)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _chain(path: Path) -> set[tuple[int, int]]:
    """Identities of ``path`` (or, if it does not exist yet, of its nearest existing ancestor) and of
    every folder above it."""
    out = set()
    for p in [path, *path.parents]:
        ident = identity(p)
        if ident is not None:
            out.add(ident)
    return out


def check_separate(src: Path, out: Path) -> None:
    """Refuse an output folder that is, contains, or lies inside the input (after following symlinks).

    ``src`` may be a single file: then the output folder may not hold it either (its outputs mirror
    the file's name into the folder).
    """
    src_r, out_r = real_path(src), real_path(out)
    if out_r.exists() and not out_r.is_dir():
        raise UsageError(f"output {out} exists and is not a folder")
    src_id, out_id = identity(src_r), identity(out_r)
    if src_r.is_file():
        if _inside(src_r, out_r) or (out_id is not None and out_id in _chain(src_r.parent)):
            raise UsageError(f"output folder {out} holds the input file {src.name}; outputs would overwrite it. "
                             "Choose an output folder that does not hold the input")
        return
    # by name (symlinks followed) and by identity (bind mounts: one folder under two names)
    if _inside(out_r, src_r) or (src_id is not None and src_id in _chain(out_r)):
        raise UsageError(f"output {out} is the input folder or inside it; choose a folder outside {src}")
    if _inside(src_r, out_r) or (out_id is not None and out_id in _chain(src_r)):
        raise UsageError(f"input {src} lies inside the output folder {out}; outputs could replace inputs. "
                         "Choose an output folder outside the input")


def check_destinations(src: Path, out: Path, relpaths: Iterable[str], input_files: Iterable[Path]) -> None:
    """Refuse when any output path (``out/rel``, symlinks in ``out`` followed) is an input file or
    lies inside the input tree, e.g. through a symlinked folder inside ``out``."""
    src_r = real_path(src)
    src_id = identity(src_r) if src_r.is_dir() else None
    files = list(input_files)
    inputs = {real_path(p) for p in files}
    input_ids = {i for i in map(identity, files) if i is not None}
    for rel in relpaths:
        dest = real_path(out / rel)
        ident = identity(dest)
        if (dest in inputs or (src_r.is_dir() and _inside(dest, src_r)) or (ident is not None and ident in input_ids)
                or (src_id is not None and src_id in _chain(dest))):
            raise UsageError(f"output {rel} would be written onto the input ({dest.name}) through a symlink "
                             f"inside {out}; remove the link or choose another output folder")


def lock_name(num_parts: int = 1, part_id: int = 0) -> str:
    """The lock file of a whole run, or of one part of a run split with ``--num-parts``."""
    return ".denoise-run.lock" if num_parts == 1 else f".denoise-run.part{part_id}-of-{num_parts}.lock"


def _conflicts(mine: str, other: str) -> bool:
    """Whole runs exclude everything; parts of one split exclude only the same part or another split."""
    if mine == other:
        return True
    whole = lock_name()
    if whole in (mine, other):
        return True
    split_mine, split_other = mine.split("-of-")[-1], other.split("-of-")[-1]
    return split_mine != split_other


class OutputLock:
    """Exclusive lock of a run on its output folder (a context manager).

    The lock file holds ``{"pid", "host", "started"}``. It is live while a process holds an
    ``flock`` on it; a lock file nobody holds is stale (its run was killed) and is taken over.

    Raises:
        OutputLocked: another live run holds the folder (the message names its pid and host).
        UsageError: the folder cannot be written (read-only, permissions).
    """

    def __init__(self, out: Path, num_parts: int = 1, part_id: int = 0, *, label: str | Path | None = None) -> None:
        self.out = Path(out)
        self.label = str(label if label is not None else out)  # OUT in messages: as the user gave it
        self.path = self.out / lock_name(num_parts, part_id)
        self._fd: int | None = None
        self._ident: tuple[int, int] | None = None

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock; the folder itself is flock'ed meanwhile, so two runs starting at the same
        instant (a whole run and a part, say) are ordered and one of them proceeds."""
        try:
            guard = os.open(self.out, os.O_RDONLY | os.O_DIRECTORY)
            fcntl.flock(guard, fcntl.LOCK_EX)
        except OSError as exc:  # a write-only folder, a file system without flock: no ordering, still safe
            log.debug("no start-up guard on %s (%s)", self.out.name, exc.strerror)
            guard = None
        try:
            self._acquire()
        finally:
            if guard is not None:
                os.close(guard)  # drops the guard, never the lock file's flock

    def _acquire(self) -> None:
        for _ in range(5):
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                    raise OutputLocked(self._held_message(self.path)) from None
                raise UsageError(f"cannot lock output folder {self.label}: {exc.strerror}") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the previous holder removed the file while we waited: try again
                os.close(fd)
                continue
            previous = os.pread(fd, 4096, 0)
            if previous and not _is_lock_text(previous):
                os.close(fd)
                raise UsageError(f"{self.path.name} in {self.label} is not a lock file this program wrote; it is left "
                                 "untouched (remove it, or choose another output folder)")
            self._fd = fd
            self._ident = identity(self.path)
            if previous:
                log.info("taking over a stale lock in %s left by a run that ended without releasing it (%s)",
                         self.out.name, previous.decode(errors="replace"))
            info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()})
            os.ftruncate(fd, 0)
            os.pwrite(fd, info.encode(), 0)
            os.fsync(fd)
            self._check_other_parts()
            return
        raise OutputLocked(f"could not take the lock {self.path.name} in {self.label} (it keeps changing hands)")

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            if identity(self.path) == self._ident:  # only the file this lock holds
                self.path.unlink(missing_ok=True)
        except OSError:
            pass
        finally:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def _open(self) -> int:
        """The lock file, never through a link: a symlink, a hard link or anything but a plain file
        under this name (which could be an input) is refused and left untouched."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UsageError(f"{self.path.name} in {self.label} is a symbolic link, not a lock file; it is left "
                                 "untouched (remove it, or choose another output folder)") from None
            if exc.errno in (errno.EISDIR, errno.ENOTDIR):
                raise UsageError(f"{self.path.name} in {self.label} is a folder, not a lock file (remove it)") from None
            raise UsageError(f"cannot write the lock file {self.path.name} in output folder {self.label}: "
                             f"{exc.strerror} (choose a writable folder)") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(fd)
            raise UsageError(f"{self.path.name} in {self.label} is not a plain lock file (a hard link or a special "
                             "file); it is left untouched (remove it, or choose another output folder)")
        return fd

    def _check_other_parts(self) -> None:
        """A whole run and parts of a split (or two different splits) never share a folder."""
        for other in self.out.glob(".denoise-run*.lock"):
            if other == self.path or not _conflicts(self.path.name, other.name):
                continue
            if _is_live(other):
                message = self._held_message(other)
                self.release()
                raise OutputLocked(message)

    def _held_message(self, path: Path) -> str:
        try:
            info = json.loads(path.read_text() or "{}")
        except (OSError, ValueError):
            info = {}
        who = f"pid {info.get('pid', '?')} on {info.get('host', '?')}"
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["started"])) if "started" in info else "?"
        return (f"output folder {self.label} is in use by another denoise run ({who}, started {since}); "
                f"wait for it to finish or choose another output folder (lock file: {path.name})")


def _is_lock_text(data: bytes) -> bool:
    try:
        info = json.loads(data.decode())
    except (UnicodeDecodeError, ValueError):
        return False
    return isinstance(info, dict) and "pid" in info and "host" in info


def _is_live(path: Path) -> bool:
    """Whether some process holds the flock of a lock file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False
