"""A Hugging Face Hub on loopback, for download tests: no test ever reaches the real hub.

It serves model repos in the hub's URL layout, with the headers huggingface_hub 2.x reads
(``HF_ENDPOINT=http://127.0.0.1:<port>``):

- ``GET /api/models/{repo}/revision/{rev}``: the repo info (``sha`` = the commit);
- ``GET /api/models/{repo}/tree/{rev}?recursive=True``: the file list, with ``oid`` (git blob
  sha1) and, for LFS files, ``lfs: {oid: sha256, size, pointerSize}``;
- ``HEAD|GET /{repo}/resolve/{rev}/{path}``: ``X-Repo-Commit``, ``ETag`` (the blob oid; for LFS
  files ``X-Linked-Etag`` = sha256 and ``X-Linked-Size``), ``Content-Length``, and HTTP
  ``Range`` requests answered 206 with ``Content-Range``;
- errors as the hub sends them: 404 ``X-Error-Code: RevisionNotFound``, 401
  ``X-Error-Code: GatedRepo`` for a gated repo's files.

It counts the body bytes it sent per file (``sent``), so a test can prove that a resumed
download did not fetch again what it already had, and it can be slowed down (``throttle``) or
made to drop a connection mid-file.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

LFS_MIN = 1024  # files this large are served as LFS files (the hub's rule is by type; size is enough here)


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubRepo:
    """One repo at one commit: ``files`` maps repo paths to their bytes."""

    def __init__(self, repo_id: str, files: dict, commit: str = None, refs=("main",), gated: bool = False):
        self.repo_id, self.files, self.gated = repo_id, dict(files), gated
        self.commit = commit or hashlib.sha1(repo_id.encode()).hexdigest()
        self.refs = set(refs) | {self.commit}

    @classmethod
    def from_folder(cls, repo_id: str, folder: Path, **kw) -> "HubRepo":
        folder = Path(folder)
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        return cls(repo_id, files, **kw)

    def tree(self) -> list:
        out = []
        for path, data in sorted(self.files.items()):
            item = {"type": "file", "path": path, "size": len(data), "oid": git_oid(data)}
            if len(data) >= LFS_MIN:
                item["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            out.append(item)
        return out


class HubServer:
    """``with HubServer([repo, ...]) as hub: hub.url``; ``hub.sent[(repo_id, path)]`` bytes sent."""

    def __init__(self, repos=(), throttle: tuple = None):
        self.repos = {r.repo_id: r for r in repos}
        self.throttle = throttle  # (bytes per write, seconds between writes)
        self.drop_after: dict = {}  # (repo_id, path) -> close the connection after this many body bytes, once
        self.sent: dict = defaultdict(int)
        self.requests: list = []
        self.lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def add(self, repo: HubRepo) -> None:
        self.repos[repo.repo_id] = repo

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._httpd.shutdown()
        self._httpd.server_close()

    def bytes_sent(self, repo_id: str) -> int:
        return sum(n for (r, _), n in self.sent.items() if r == repo_id)

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._route(body=False)

            def do_GET(self):
                self._route(body=True)

            # -- routing --------------------------------------------------------------------
            def _route(self, body: bool):
                path = unquote(urlsplit(self.path).path)
                with hub.lock:
                    hub.requests.append((self.command, path, self.headers.get("Range")))
                m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(revision|tree)/([^/]+)(?:/.*)?", path)
                if m:
                    return self._api(m.group(1), m.group(2), m.group(3), body)
                m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
                if m:
                    return self._resolve(m.group(1), m.group(2), m.group(3), body)
                self._error(404, "EntryNotFound", "no such route")

            def _repo(self, repo_id, rev):
                repo = hub.repos.get(repo_id)
                if repo is None:
                    self._error(401, "RepoNotFound", "Repository not found")
                    return None
                if rev not in repo.refs:
                    self._error(404, "RevisionNotFound", "Invalid rev id: " + rev, commit=None)
                    return None
                return repo

            def _api(self, repo_id, kind, rev, body):
                repo = self._repo(repo_id, rev)
                if repo is None:
                    return
                if kind == "revision":
                    data = {"id": repo_id, "modelId": repo_id, "sha": repo.commit, "private": False,
                            "gated": "manual" if repo.gated else False,
                            "siblings": [{"rfilename": p} for p in sorted(repo.files)]}
                else:
                    data = repo.tree()
                raw = json.dumps(data).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                if body:
                    self.wfile.write(raw)

            def _resolve(self, repo_id, rev, file, body):
                repo = self._repo(repo_id, rev)
                if repo is None:
                    return
                if repo.gated:
                    return self._error(401, "GatedRepo", "Access to model is restricted. You must be authenticated "
                                                          "to access it.", commit=repo.commit)
                data = repo.files.get(file)
                if data is None:
                    return self._error(404, "EntryNotFound", "Entry not found", commit=repo.commit)
                start = 0
                rng = self.headers.get("Range")
                if rng:
                    m = re.fullmatch(r"bytes=(\d+)-", rng.strip())
                    start = int(m.group(1)) if m else 0
                if start >= len(data) and len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206 if start else 200)
                self.send_header("X-Repo-Commit", repo.commit)
                oid = git_oid(data)
                self.send_header("ETag", f'"{oid}"')
                if len(data) >= LFS_MIN:
                    self.send_header("X-Linked-Etag", f'"{hashlib.sha256(data).hexdigest()}"')
                    self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("Accept-Ranges", "bytes")
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if body:
                    self._send_body(repo_id, file, data[start:])

            def _send_body(self, repo_id, file, data):
                key = (repo_id, file)
                step, pause = hub.throttle or (len(data) or 1, 0.0)
                drop = hub.drop_after.pop(key, None)
                pos = 0
                while pos < len(data):
                    piece = data[pos:pos + step]
                    if drop is not None and pos + len(piece) > drop:
                        piece = piece[:max(drop - pos, 0)]
                    try:
                        self.wfile.write(piece)
                        self.wfile.flush()
                    except OSError:  # the client went away (killed, cancelled)
                        return
                    with hub.lock:
                        hub.sent[key] += len(piece)
                    pos += len(piece)
                    if drop is not None and pos >= drop:
                        self.close_connection = True
                        self.connection.shutdown(2)  # mid-file: the client sees the connection drop
                        return
                    if pause:
                        time.sleep(pause)

            def _error(self, status, code, message, commit=None):
                raw = json.dumps({"error": message}).encode()
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", message)
                if commit:
                    self.send_header("X-Repo-Commit", commit)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(raw)

        return Handler


def tiny_model_folder(root: Path, weights_bytes: int = 40_000, seed: int = 0) -> Path:
    """A small diffusers-layout folder (model_index.json, scheduler and transformer configs and
    a safetensors file of about ``weights_bytes``), as a hub repo holds one."""
    import numpy as np
    from safetensors.numpy import save_file

    root = Path(root)
    (root / "scheduler").mkdir(parents=True, exist_ok=True)
    (root / "transformer").mkdir(parents=True, exist_ok=True)
    (root / "model_index.json").write_text(json.dumps({
        "_class_name": "WanPipeline", "_diffusers_version": "0.42.1",
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "transformer": ["diffusers", "WanTransformer3DModel"]}, indent=2))
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps({
        "_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0}))
    (root / "transformer" / "config.json").write_text(json.dumps({
        "_class_name": "WanTransformer3DModel", "num_layers": 1, "num_attention_heads": 2,
        "attention_head_dim": 4, "in_channels": 4, "out_channels": 4, "text_dim": 8}))
    rng = np.random.default_rng(seed)
    n = max(weights_bytes // 4, 1)
    save_file({"weight": rng.standard_normal(n).astype(np.float32)},
              str(root / "transformer" / "diffusion_pytorch_model.safetensors"))
    return root


def catalogue_file(path: Path, entries: list) -> Path:
    """A ``$PARALLAX_CATALOGUE`` JSON file with ``entries`` (dicts of ModelEntry fields)."""
    Path(path).write_text(json.dumps({"models": entries}, indent=2))
    return Path(path)


def entry_json(model_id: str, repo: HubRepo, **overrides) -> dict:
    """A catalogue entry (as JSON) for a repo of this server."""
    entry = {"id": model_id, "role": "generator", "loader": "wan-t2v", "title": f"test model {model_id}",
             "repo": repo.repo_id, "revision": repo.commit, "licence": "Apache-2.0",
             "licence_url": "https://www.apache.org/licenses/LICENSE-2.0", "gated": repo.gated,
             "commercial_use": True, "download_bytes": sum(len(d) for d in repo.files.values()),
             "vram_gb": 0.1, "tasks": ["t2v"]}
    entry.update(overrides)
    return entry
