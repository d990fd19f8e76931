"""Downloads users can trust, into the huggingface_hub cache: byte progress, resume after an
interruption, free disk space checked before the first byte, cancel, and a plain message for
each way it can fail.

Why not ``snapshot_download`` alone: since huggingface_hub 1.x each download writes to a
process-unique ``<etag>.<uuid>.incomplete`` file that is deleted when the download fails, so a
download killed (or cancelled) halfway through a 10 GB shard restarts that shard from zero.
Here each blob is first fetched by huggingface_hub's own ``http_get`` into
``blobs/<etag>.parallax-partial``, appending with an HTTP Range from the bytes already on disk,
checked against the hub's checksum (the LFS sha256, or the git blob sha1 for small files) and
renamed to ``blobs/<etag>``, the name huggingface_hub gives it. ``snapshot_download`` then only
links the snapshot (it finds every blob present) and writes the refs and the tree listing, so
the cache is exactly the one huggingface_hub would have made, and loads offline afterwards.

The cache is ``$HF_HUB_CACHE`` (default ``$HF_HOME/hub``); ``HF_HUB_OFFLINE=1`` makes every
function here work from the cache only; ``HF_ENDPOINT`` (or ``endpoint=``) picks a mirror.
``remove_model`` deletes one model's revision through ``scan_cache_dir().delete_revisions``
and never touches anything else in the cache.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlsplit

from ..runtime import Cancelled
from .catalogue import GB, ModelEntry

PARTIAL_SUFFIX = ".parallax-partial"  # our resumable partial blobs (huggingface_hub ignores them)
DISK_HEADROOM = 64 * 2**20  # bytes kept free beyond the download itself
_HASH_CHUNK = 8 * 2**20


class DownloadError(RuntimeError):
    """A download that cannot proceed; the message says why and what to do. ``kind``: offline,
    network, gated, not_found, revision, disk, licence, integrity, server."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class DownloadProgress:
    """Bytes on disk of the whole model (``done`` of ``total``) and the file being fetched."""

    done: int
    total: int
    file: str = ""
    files_done: int = 0
    files_total: int = 0
    stage: str = "downloading"

    @property
    def fraction(self) -> float:
        return min(self.done / self.total, 1.0) if self.total else 0.0

    def label(self) -> str:
        size = f"{self.done / GB:.2f} / {self.total / GB:.2f} GB" if self.total >= 0.1 * GB else \
            f"{self.done / 1e6:.1f} / {self.total / 1e6:.1f} MB"
        where = f" ({self.file})" if self.file else ""
        return f"{self.stage} {size}, file {min(self.files_done + 1, self.files_total)}/{self.files_total}{where}"


ProgressFn = Callable[[DownloadProgress], None]


# -- the cache ------------------------------------------------------------------------------

def cache_root(cache_dir: Optional[os.PathLike] = None) -> Path:
    from huggingface_hub import constants

    return Path(cache_dir or constants.HF_HUB_CACHE).expanduser()


def storage_folder(entry: ModelEntry, cache_dir: Optional[os.PathLike] = None) -> Path:
    from huggingface_hub.file_download import repo_folder_name

    return cache_root(cache_dir) / repo_folder_name(repo_id=entry.repo, repo_type="model")


def offline() -> bool:
    from huggingface_hub import constants

    return constants.is_offline_mode()


def local_snapshot(entry: ModelEntry, cache_dir: Optional[os.PathLike] = None) -> Optional[Path]:
    """The complete cached snapshot of ``entry`` (no network request), or None."""
    if entry.is_local:
        path = Path(entry.local_path)
        return path if path.is_dir() else None
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(entry.repo, revision=entry.revision, cache_dir=str(cache_root(cache_dir)),
                                      local_files_only=True, allow_patterns=_patterns(entry)))
    except (LocalEntryNotFoundError, OSError):  # missing or incomplete (IncompleteSnapshotError)
        return None


def model_state(entry: ModelEntry, cache_dir: Optional[os.PathLike] = None) -> dict:
    """What the cache holds of ``entry``: installed (complete), its folder and size on disk, and
    the bytes of an interrupted download that the next one resumes from."""
    path = local_snapshot(entry, cache_dir)
    state = {"installed": path is not None, "path": str(path) if path else None, "size_on_disk": 0,
             "partial_bytes": 0}
    if path is not None:
        blobs = {p.resolve() for p in path.rglob("*") if p.is_file()}
        state["size_on_disk"] = sum(b.stat().st_size for b in blobs)
    if not entry.is_local:
        blobs_dir = storage_folder(entry, cache_dir) / "blobs"
        if blobs_dir.is_dir():
            state["partial_bytes"] = sum(p.stat().st_size for p in blobs_dir.glob("*" + PARTIAL_SUFFIX))
    return state


# -- download -------------------------------------------------------------------------------

@dataclass
class _RemoteFile:
    path: str
    size: int
    etag: str
    url: str
    sha256: Optional[str]  # LFS files
    git_oid: Optional[str]  # small files: git's blob sha1


class _Bytes:
    """What a download has on disk, reported through ``progress`` and checked for cancel.

    huggingface_hub's ``http_get`` creates its ``tqdm_class`` per file and calls ``update(n)``
    per chunk; an instance of :meth:`bar` is that class."""

    def __init__(self, total: int, done: int, files_total: int, progress: Optional[ProgressFn],
                 is_cancelled: Optional[Callable[[], bool]]):
        self.total, self.done, self.files_total, self.files_done = total, done, files_total, 0
        self.file, self.stage = "", "downloading"
        self.progress, self.is_cancelled = progress, is_cancelled
        self.lock = threading.Lock()

    def add(self, n: int) -> None:
        with self.lock:
            self.done += int(n or 0)
        self.report()

    def report(self) -> None:
        if self.is_cancelled is not None and self.is_cancelled():
            raise Cancelled("cancelled during the model download")
        if self.progress is not None:
            self.progress(DownloadProgress(self.done, self.total, self.file, self.files_done, self.files_total,
                                           self.stage))

    def bar(self):
        counter = self

        class Bar(_Quiet):  # a silent tqdm that counts the bytes huggingface_hub reports
            def update(self, n=1):
                counter.add(n)

        return Bar


class _Quiet:
    """A progress bar that shows nothing: the linking step after our byte-counted fetch.
    snapshot_download calls several tqdm methods on it; all of them do nothing."""

    total = 0
    n = 0

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def download_model(entry: ModelEntry, *, progress: Optional[ProgressFn] = None, accept_licence: bool = False,
                   cache_dir: Optional[os.PathLike] = None, endpoint: Optional[str] = None,
                   token: Optional[str] = None, is_cancelled: Optional[Callable[[], bool]] = None) -> Path:
    """Download ``entry``'s pinned revision into the cache and return its snapshot folder.

    Args:
        progress: called with a :class:`DownloadProgress` at the start, per chunk (huggingface_hub
            reads 10 MB at a time) and per file; it may raise :class:`backend.runtime.Cancelled`.
        accept_licence: required for a gated or non-commercial entry.
        cache_dir, endpoint, token: huggingface_hub's (defaults: ``HF_HUB_CACHE``,
            ``HF_ENDPOINT``, the token of ``hf auth login`` or ``HF_TOKEN``).
        is_cancelled: polled per chunk; True raises Cancelled, keeping the partial file for a
            later resume.

    Raises:
        DownloadError: offline mode, no network, gated/unauthorised, missing repo or revision,
            not enough disk space (checked before the first byte), a checksum mismatch.
        Cancelled: when asked to stop.
    """
    if entry.is_local:
        return Path(entry.local_path)
    if entry.needs_acceptance and not accept_licence:
        raise DownloadError("licence", f"{entry.id} is under {entry.licence} ({', '.join(entry.licence_flags())}): "
                                       f"read {entry.licence_url} and accept it explicitly (--accept-licence, or "
                                       "the licence checkbox in the add-on's model manager)")
    done = local_snapshot(entry, cache_dir)
    if done is not None:
        return done
    if offline():
        raise DownloadError("offline", f"{entry.id} is not in the cache and HF_HUB_OFFLINE is set, so nothing is "
                                       "downloaded: unset HF_HUB_OFFLINE (or set it to 0) to download it")
    root = cache_root(cache_dir)
    storage = storage_folder(entry, cache_dir)
    # Up front, before any request: the catalogue's size, less what an earlier attempt left.
    check_disk(root, max(entry.download_bytes - _bytes_in(storage / "blobs"), 0), entry)
    try:
        return _download(entry, root, storage, progress, endpoint, token, is_cancelled)
    except (Cancelled, DownloadError):
        raise
    except Exception as e:
        raise explain(e, entry, endpoint) from e


def _download(entry, root, storage, progress, endpoint, token, is_cancelled) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import WeakFileLock

    commit, files = _remote_files(entry, endpoint, token)
    blobs = storage / "blobs"
    have = {f.etag: (blobs / f.etag).stat().st_size if (blobs / f.etag).is_file() else
            _size(blobs / (f.etag + PARTIAL_SUFFIX)) for f in files}
    total = sum(f.size for f in files)
    counter = _Bytes(total, sum(have.values()), len(files), progress, is_cancelled)
    # The exact check, now that the files are known: what is not on disk yet must fit.
    check_disk(root, total - counter.done, entry)
    counter.report()
    blobs.mkdir(parents=True, exist_ok=True)
    locks = root / ".locks" / storage.name
    locks.mkdir(parents=True, exist_ok=True)
    for f in files:
        counter.file = f.path
        blob = blobs / f.etag
        with WeakFileLock(str(locks / f"{f.etag}.lock")):
            if not blob.is_file():
                _fetch_blob(f, blob, counter, endpoint, token, entry)
        counter.files_done, counter.file = counter.files_done + 1, ""
        counter.report()
    counter.stage, counter.file = "linking", ""
    counter.report()
    # Every blob is present: this writes the snapshot links, refs and tree listing, and fetches
    # nothing (a file that changed under us would be fetched, unreported, rather than missed).
    path = snapshot_download(entry.repo, revision=entry.revision, cache_dir=str(root), endpoint=endpoint,
                             token=token, allow_patterns=_patterns(entry), tqdm_class=_Quiet)
    return Path(path)


def _remote_files(entry: ModelEntry, endpoint, token) -> tuple[str, list[_RemoteFile]]:
    """The pinned commit and the files to fetch, with their sizes, blob names and checksums."""
    from huggingface_hub import HfApi
    from huggingface_hub.file_download import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.hf_api import RepoFile
    from huggingface_hub.utils import filter_repo_objects

    api = HfApi(endpoint=endpoint, token=token)
    revision = entry.revision
    commit = revision if len(revision) == 40 and all(c in "0123456789abcdef" for c in revision) else \
        api.repo_info(entry.repo, revision=revision).sha
    tree = [f for f in api.list_repo_tree(entry.repo, revision=commit, recursive=True) if isinstance(f, RepoFile)]
    wanted = set(filter_repo_objects([f.path for f in tree], allow_patterns=_patterns(entry)))
    files = []
    for f in tree:
        if f.path not in wanted:
            continue
        meta = get_hf_file_metadata(hf_hub_url(entry.repo, f.path, revision=commit, endpoint=endpoint), token=token,
                                    endpoint=endpoint)
        if not meta.etag:
            raise DownloadError("server", f"the hub sent no ETag for {f.path} of {entry.repo}: is HF_ENDPOINT a hub?")
        size = meta.size if meta.size is not None else (f.lfs.size if f.lfs else f.size)
        files.append(_RemoteFile(f.path, int(size), meta.etag, meta.location, f.lfs.sha256 if f.lfs else None,
                                 None if f.lfs else f.blob_id))
    if not files:
        raise DownloadError("not_found", f"{entry.repo}@{entry.revision} has no files matching "
                                         f"{list(entry.allow_patterns or ['*'])}")
    return commit, files


def _fetch_blob(f: _RemoteFile, blob: Path, counter: _Bytes, endpoint, token, entry) -> None:
    """Append the missing bytes of ``f`` to its partial file (HTTP Range), check them, rename."""
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    partial = blob.with_name(blob.name + PARTIAL_SUFFIX)
    have = _size(partial)
    if have > f.size:  # not a prefix of this file: start again
        partial.unlink()
        counter.add(-have)
        have = 0
    headers = build_hf_headers(token=token)
    if urlsplit(f.url).netloc != urlsplit(endpoint or _endpoint()).netloc:
        headers.pop("authorization", None)  # a CDN's signed URL: the token stays with the hub
    if have < f.size:
        with open(partial, "ab") as out:
            http_get(f.url, out, resume_size=have, headers=headers, expected_size=f.size,
                     displayed_filename=f.path, tqdm_class=counter.bar())
    counter.stage = "verifying"
    counter.report()
    if not _checksum_ok(partial, f):
        partial.unlink()
        raise DownloadError("integrity", f"{f.path} of {entry.repo} does not match the hub's checksum (the partial "
                                         "file was removed): download it again")
    os.replace(partial, blob)
    counter.stage = "downloading"


def _checksum_ok(path: Path, f: _RemoteFile) -> bool:
    if f.sha256:
        h = hashlib.sha256()
    elif f.git_oid:
        h = hashlib.sha1()
        h.update(b"blob %d\0" % path.stat().st_size)
    else:
        return path.stat().st_size == f.size
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_HASH_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest() == (f.sha256 or f.git_oid)


def check_disk(root: Path, needed: int, entry: ModelEntry) -> None:
    """DownloadError('disk') unless the disk of ``root`` has ``needed`` bytes free (and headroom)."""
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed > 0 and free < needed + DISK_HEADROOM:
        raise DownloadError("disk", f"not enough disk space for {entry.id}: it needs {needed / GB:.2f} GB more and "
                                    f"{probe} has {free / GB:.2f} GB free; free some space or move the cache "
                                    "(set HF_HOME or HF_HUB_CACHE to a larger disk)")


def explain(e: BaseException, entry: ModelEntry, endpoint: Optional[str] = None) -> DownloadError:
    """The DownloadError a person reads for what huggingface_hub (or the network) raised."""
    import httpx2
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError,
                                        OfflineModeIsEnabled, RemoteEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    hub = endpoint or _endpoint()
    login = ("log in with `hf auth login` (or set HF_TOKEN to a token with read access) after accepting the model's "
             f"conditions while logged in at {hub}/{entry.repo}")
    if isinstance(e, GatedRepoError):
        return DownloadError("gated", f"{entry.repo} is a gated model: {login}")
    if isinstance(e, RevisionNotFoundError):
        return DownloadError("revision", f"revision {entry.revision!r} of {entry.repo} does not exist on {hub}; the "
                                         "catalogue pins it, so the catalogue needs updating (report it), or pin "
                                         "another revision in $PARALLAX_CATALOGUE")
    if isinstance(e, RemoteEntryNotFoundError):
        return DownloadError("not_found", f"a file of {entry.repo}@{entry.revision} is missing on {hub}: {e}")
    if isinstance(e, RepositoryNotFoundError):
        return DownloadError("not_found", f"{entry.repo} was not found on {hub}, or it is private or gated: {login}")
    if isinstance(e, HfHubHTTPError):
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status in (401, 403):
            return DownloadError("gated", f"{hub} refused access to {entry.repo} (HTTP {status}): {login}")
        return DownloadError("server", f"{hub} answered HTTP {status} for {entry.repo}; try again later")
    if isinstance(e, OfflineModeIsEnabled):
        return DownloadError("offline", "HF_HUB_OFFLINE is set: unset it to download")
    if isinstance(e, (httpx2.ConnectError, httpx2.TimeoutException, httpx2.NetworkError, LocalEntryNotFoundError,
                      ConnectionError)):
        return DownloadError("network", f"cannot reach {hub} to download {entry.id} ({type(e).__name__}): check the "
                                        "network connection (or HF_ENDPOINT); a later download resumes where this "
                                        "one stopped")
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return DownloadError("disk", f"the disk of the model cache ({cache_root()}) is full: free some space and "
                                     "download again (it resumes)")
    return DownloadError("server", f"downloading {entry.id} failed: {type(e).__name__}: {e}")


# -- remove ---------------------------------------------------------------------------------

def remove_model(entry: ModelEntry, cache_dir: Optional[os.PathLike] = None) -> int:
    """Delete ``entry``'s revision from the cache (and our partial files of its repo); returns
    the bytes freed. Other revisions of the repo, other repos and anything else stay."""
    if entry.is_local:
        raise DownloadError("licence", f"{entry.id} is bundled with Parallax and cannot be removed")
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    storage = storage_folder(entry, cache_dir)
    freed = 0
    blobs = storage / "blobs"
    if blobs.is_dir():
        for partial in blobs.glob("*" + PARTIAL_SUFFIX):  # ours: nobody else writes this name
            freed += _size(partial)
            partial.unlink()
    commit = _cached_commit(entry, storage)
    if commit is None:
        return freed
    try:
        info = scan_cache_dir(cache_root(cache_dir))
    except CacheNotFound:
        return freed
    repo = next((r for r in info.repos if r.repo_id == entry.repo and r.repo_type == "model"), None)
    if repo is None or commit not in {rev.commit_hash for rev in repo.revisions}:
        return freed
    strategy = info.delete_revisions(commit)
    strategy.execute()
    return freed + int(strategy.expected_freed_size)


def _cached_commit(entry: ModelEntry, storage: Path) -> Optional[str]:
    rev = entry.revision
    if len(rev) == 40 and all(c in "0123456789abcdef" for c in rev):
        return rev
    ref = storage / "refs" / rev
    try:
        return ref.read_text().strip() or None
    except OSError:
        return None


# -- helpers --------------------------------------------------------------------------------

def _patterns(entry: ModelEntry):
    return list(entry.allow_patterns) if entry.allow_patterns else None


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _bytes_in(folder: Path) -> int:
    """Bytes of the regular files directly in ``folder`` (a repo's blobs, partial ones too)."""
    try:
        return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    except OSError:
        return 0
