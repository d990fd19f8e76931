"""The server's files: a private data folder, private files in it, and disk errors told plainly.

Private (issue 12, item 6): job and upload directories were created 0755 and their files 0644,
so every local user could read another user's footage and results. Everything the server
creates is now 0700 (folders) / 0600 (files): :func:`private_dir` and :func:`write_private`
say so explicitly, and ``python -m backend serve`` (and the engine worker process) also set
``umask 077`` so files written by code that takes no mode (``backend.bundle``'s writers) are
private too. A data folder that belongs to another user, or is a symlink to one, is refused
rather than used (:func:`prepare_data_dir`): a folder someone else can write is a folder
someone else can plant a symlink in.

Disk errors (issue 12, item 3): a full or read-only disk answered 500 "internal server error:
OSError [Errno 28] ... '/home/.../uploads/.3f2a.partial/input.mp4'" (a server path, and no
hint of what to do). :func:`disk_problem` recognises them anywhere in an exception's chain, so
uploads and job submissions answer 507 and a job fails with "the results disk is full"; and
:func:`scrub` replaces server paths in any message with the names the user knows.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Iterable, Optional

DIR_MODE = 0o700
FILE_MODE = 0o600
UMASK = 0o077
_BINARY = getattr(os, "O_BINARY", 0)  # Windows: without it, os.open's descriptor turns \n into \r\n

# ENOSPC: no space (or no inodes) left; EDQUOT: the user's quota is used up.
_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_READ_ONLY = {errno.EROFS}


class DataDirError(ValueError):
    """The data folder cannot be used; the message is one line for the person starting the server."""


def disk_problem(exc: BaseException) -> Optional[str]:
    """``"full"`` or ``"read-only"`` when ``exc`` (or what caused it) is that disk error, else None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError):
            if exc.errno in _FULL:
                return "full"
            if exc.errno in _READ_ONLY:
                return "read-only"
        exc = exc.__cause__ or exc.__context__
    return None


def disk_message(problem: str, what: str, disk: str = "the server's data disk") -> str:
    """The sentence a person reads when ``what`` could not be written because ``disk`` is
    ``problem`` ("full" or "read-only")."""
    if problem == "read-only":
        return f"{disk} is read-only: {what}; start the server with --data-dir on a writable disk"
    return (f"{disk} is full: {what}; free some space there (or start the server with --data-dir "
            "on a larger disk) and try again")


def private_dir(path: Path) -> Path:
    """``mkdir`` (parents too) with mode 0700; an existing folder is left as it is."""
    path = Path(path)
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    return path


def write_private(path: Path, data: str | bytes) -> None:
    """Write a small file atomically (temporary sibling, then rename) with mode 0600."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _BINARY, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def open_private(path: Path):
    """A new file opened for binary writing with mode 0600 (fails if it exists)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _BINARY, FILE_MODE), "wb")


def _check_own_dir(path: Path, what: str) -> None:
    st = os.stat(path)  # follows a symlink: what counts is the folder it leads to
    if not stat.S_ISDIR(st.st_mode):
        raise DataDirError(f"{what} {path} is not a folder")
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        raise DataDirError(f"{what} {path} belongs to another user (uid {st.st_uid}); the server keeps "
                           "uploads and results only in a folder of its own: pass --data-dir with one")
    if st.st_mode & 0o077:
        os.chmod(path, DIR_MODE)  # ours: closing it to others is always safe


def prepare_data_dir(data_dir: Path, subdirs: Iterable[str] = ("uploads", "jobs")) -> Path:
    """Create (0700) or check the data folder and its sub-folders; returns the resolved path.

    Refused (:class:`DataDirError`): a folder, or symlink target, owned by another user, or a
    sub-folder that is a symlink (only another user could have planted one in a folder that was
    open to them). A folder of ours that others could read is closed (chmod 0700)."""
    data_dir = Path(data_dir).expanduser()
    try:
        private_dir(data_dir)
        _check_own_dir(data_dir, "the data folder")
        resolved = data_dir.resolve()
        for name in subdirs:
            sub = resolved / name
            if sub.is_symlink():
                raise DataDirError(f"{sub} is a symlink; the server does not follow links inside its data "
                                   "folder (remove it, or pass another --data-dir)")
            private_dir(sub)
            _check_own_dir(sub, "the folder")
    except DataDirError:
        raise
    except OSError as e:
        raise DataDirError(f"cannot use the data folder {data_dir}: {e.strerror or e}") from None
    return resolved


def scrub(text: str, paths: dict) -> str:
    """``text`` with each server path in ``paths`` (path -> what to say instead) replaced,
    longest first, so a message never shows the server's folders."""
    for path, name in sorted(((str(p), n) for p, n in paths.items() if p), key=lambda kv: -len(kv[0])):
        text = text.replace(path, name)
    return text
