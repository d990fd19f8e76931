"""The model catalogue: every model Parallax can load beside a local folder, with what a user
must know before downloading it.

Each :class:`ModelEntry` names its role (generator or geometry), the loader that reads it, its
hub repo pinned to a revision, its licence (gated and non-commercial licences are accepted
explicitly before a download), its download size and the VRAM it needs. Sizes and VRAM are
planning figures, not measurements: each entry says where its figures come from.

Revisions: a 40-hex commit sha where one could be verified from a public source (the hub page
that shows the commit); otherwise the most specific ref that could be verified (``main``),
with ``revision_verified=False`` and the reason in ``notes``. A hash is never invented.

Users add their own entries (a fine-tune, a mirror) in a JSON file named by the environment
variable ``PARALLAX_CATALOGUE``: ``{"models": [{"id": ..., "role": ..., ...}]}`` with the
fields of :class:`ModelEntry`; see :func:`load_user_entries`.

Example::

    >>> from backend.hub.catalogue import resolve_model
    >>> resolved = resolve_model("wan2.1-t2v-1.3b")        # the cached snapshot, offline
    >>> resolved.path, resolved.entry.loader
    (PosixPath('~/.cache/huggingface/hub/models--Wan-AI--.../snapshots/...'), 'wan-t2v')
    >>> resolve_model("/models/my-wan-finetune")            # a folder in the hub's layout
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

ROLES = ("generator", "geometry")
LOADERS = ("wan-t2v", "wan-flf2v", "ltx-condition", "cogvideox", "parallax", "depth-anything-3")
TASKS = ("t2v", "flf2v", "i2v", "keyframes", "t2v+c", "v2c", "geometry")
USER_CATALOGUE_ENV = "PARALLAX_CATALOGUE"
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"  # backend/weights: bundled checkpoints

_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_SHA = re.compile(r"[0-9a-f]{40}")
GB = 1e9


class ModelNotAvailable(RuntimeError):
    """The model cannot be used here yet; the message says how to get it."""


@dataclass(frozen=True)
class ModelEntry:
    """One model of the catalogue.

    Args:
        id: the name users type (``--model ID``), lower case.
        role: ``"generator"`` or ``"geometry"`` (backend/roles.py).
        loader: which loader reads the folder (one of ``LOADERS``).
        repo: the hub repo (``owner/name``); None for a checkpoint bundled with Parallax.
        revision: the pinned commit sha, or the most specific verified ref (see module doc).
        licence, licence_url: the licence's name and where to read it.
        gated: the hub asks users to accept conditions (and log in) before downloading.
        commercial_use: the licence allows commercial use without further conditions.
        download_bytes: approximate download size (``size_source`` says where from).
        vram_gb: GPU memory needed to run it as Parallax loads it (bf16, model CPU offload).
        tasks: what it can do, from ``TASKS``.
        allow_patterns: the files of the repo the loader needs (None: all of them); a repo
            that also holds single-file checkpoints downloads only its diffusers folders.
        local_path: for a bundled checkpoint, its folder.
        sources: public pages the licence, revision and figures were checked against.
    """

    id: str
    role: str
    loader: str
    title: str
    repo: Optional[str]
    revision: Optional[str]
    licence: str
    licence_url: str
    gated: bool
    commercial_use: bool
    download_bytes: int
    vram_gb: float
    tasks: tuple
    revision_verified: bool = False
    allow_patterns: Optional[tuple] = None
    local_path: Optional[str] = None
    size_source: str = ""
    sources: tuple = ()
    notes: str = ""

    @property
    def is_local(self) -> bool:
        """Bundled with Parallax: nothing to download."""
        return self.repo is None

    @property
    def needs_acceptance(self) -> bool:
        """A gated or non-commercial licence must be accepted explicitly before a download."""
        return self.gated or not self.commercial_use

    def fits(self, gpu_memory: Optional[int]) -> Optional[bool]:
        """Whether the model runs on a GPU with ``gpu_memory`` bytes; None when there is no GPU
        (or its size is unknown)."""
        if not gpu_memory:
            return None
        return self.vram_gb * GB <= gpu_memory

    def licence_flags(self) -> list[str]:
        """What a user must notice about the licence, for lists: gated, non-commercial."""
        flags = []
        if self.gated:
            flags.append("gated")
        if not self.commercial_use:
            flags.append("non-commercial or restricted")
        return flags

    def to_json(self) -> dict:
        data = asdict(self)
        data.update(tasks=list(self.tasks), sources=list(self.sources),
                    allow_patterns=list(self.allow_patterns) if self.allow_patterns else None,
                    needs_acceptance=self.needs_acceptance, licence_flags=self.licence_flags())
        return data


_DIFFUSERS_FOLDERS = ("model_index.json", "scheduler/*", "text_encoder/*", "tokenizer/*", "transformer/*", "vae/*")

BUILTIN: tuple = (
    ModelEntry(
        id="parallax-tiny", role="generator", loader="parallax", title="Parallax tiny (bundled)",
        repo=None, revision=None, revision_verified=True, local_path=str(WEIGHTS_DIR / "parallax-tiny"),
        licence="Parallax's own checkpoint, bundled with the add-on", licence_url="",
        gated=False, commercial_use=True, download_bytes=0, vram_gb=0.5,
        tasks=("t2v", "t2v+c", "keyframes", "v2c", "geometry"),
        size_source="25 MB on disk, shipped in backend/weights/parallax-tiny",
        notes="Fills both the generator and the geometry role; the only model with T2V+C in one pass."),
    ModelEntry(
        id="wan2.1-t2v-1.3b", role="generator", loader="wan-t2v", title="Wan 2.1 text-to-video 1.3B",
        repo="Wan-AI/Wan2.1-T2V-1.3B-Diffusers", revision="main", revision_verified=False,
        licence="Apache-2.0", licence_url="https://huggingface.co/Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
        gated=False, commercial_use=True, download_bytes=int(17.6 * GB), vram_gb=8.2, tasks=("t2v",),
        size_source="hub file listing: transformer 5.68 GB (2 shards); the UMT5-XXL text encoder of the Wan "
                    "diffusers repos 11.4 GB (3 shards); VAE about 0.5 GB",
        sources=("https://huggingface.co/Wan-AI/Wan2.1-T2V-1.3B-Diffusers/tree/main/transformer",
                 "https://huggingface.co/Wan-AI/Wan2.1-FLF2V-14B-720P-Diffusers (Wan model card: T2V-1.3B "
                 "needs 8.19 GB VRAM)",
                 "https://localmodel-run.pages.dev/model/wan-2-1-t2v-1-3b (licence Apache-2.0)"),
        notes="Revision: only the short sha 5af5c01 of the transformer folder's commit was visible in public "
              "sources, so the entry follows 'main' until a full sha is pinned."),
    ModelEntry(
        id="wan2.1-flf2v-14b-720p", role="generator", loader="wan-flf2v",
        title="Wan 2.1 first-last-frame to video 14B 720p",
        repo="Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers", revision="main", revision_verified=False,
        licence="Apache-2.0", licence_url="https://huggingface.co/Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers",
        gated=False, commercial_use=True, download_bytes=int(70 * GB), vram_gb=40.0, tasks=("flf2v", "i2v"),
        size_source="estimate: 14B parameters x 4 bytes (the Wan diffusers repos store fp32 transformer "
                    "shards: the 1.3B one is 5.68 GB) + text encoder 11.4 GB + image encoder 1.26 GB + VAE",
        sources=("https://huggingface.co/Wan-AI/Wan2.1-FLF2V-14B-720P-diffusers/tree/main/image_encoder "
                 "(License: apache-2.0; WanImageToVideoPipeline)",
                 "https://deepwiki.com/Wan-Video/Wan2.1/1-overview (FLF2V-14B: about 40 GB GPU memory)"),
        notes="Loaded with WanImageToVideoPipeline and last_image. Revision: only the short sha 17c3076 "
              "was visible in public sources."),
    ModelEntry(
        id="ltx-video", role="generator", loader="ltx-condition", title="LTX-Video (keyframes at chosen frames)",
        repo="Lightricks/LTX-Video", revision="43b830b97734037270ec51d6d6b0ae3779708118", revision_verified=True,
        licence="LTX-Video licence (License.txt in the repo; hub licence 'other')",
        licence_url="https://huggingface.co/Lightricks/LTX-Video/blob/main/License.txt",
        gated=False, commercial_use=False, download_bytes=int(28.5 * GB), vram_gb=16.0,
        tasks=("t2v", "i2v", "keyframes"), allow_patterns=_DIFFUSERS_FOLDERS,
        size_source="estimate: the 2B transformer with its VAE is 9.37 GB as a single file; the T5-XXL text "
                    "encoder (4 fp32 shards) about 19 GB; only the diffusers folders are downloaded",
        sources=("https://huggingface.co/Lightricks/LTX-Video/tree/43b830b97734037270ec51d6d6b0ae3779708118 "
                 "(commit 'Update model names in config (#38)': model_index.json, scheduler, text_encoder, "
                 "tokenizer, transformer, vae; License: other)",),
        notes="The repo root also holds several single-file checkpoints of 6 to 26 GB: allow_patterns keeps "
              "the download to the diffusers folders. The licence is Lightricks' own with use "
              "restrictions (secondary sources describe it as revenue-gated): read it before commercial use. "
              "diffusers' LTXConditionPipeline example uses Lightricks/LTX-Video-0.9.5; a later release can "
              "be added as another entry."),
    ModelEntry(
        id="cogvideox-2b", role="generator", loader="cogvideox", title="CogVideoX 2B",
        repo="THUDM/CogVideoX-2b", revision="2844d07b93dbb09686423ed045f6f8a6ad04d451", revision_verified=True,
        licence="Apache-2.0", licence_url="https://huggingface.co/THUDM/CogVideoX-2b/blob/main/LICENSE",
        gated=False, commercial_use=True, download_bytes=int(13.4 * GB), vram_gb=18.0, tasks=("t2v",),
        size_source="estimate: T5-XXL text encoder fp16 (2 shards) about 9.5 GB, 2B transformer fp16 about "
                    "3.4 GB, VAE about 0.4 GB",
        sources=("https://huggingface.co/THUDM/CogVideoX-2b/commit/2844d07b93dbb09686423ed045f6f8a6ad04d451 "
                 "('Fix license (#8)': license apache-2.0)",
                 "https://huggingface.co/THUDM/CogVideoX-2b/commit/91597cf865135b2e110206c05be3f198b312c43e "
                 "(the diffusers folders)"),
        notes="CogVideoX-5B's transformer is under the CogVideoX licence (not Apache), so the 2B is the "
              "catalogue's CogVideoX. VRAM: the model card's fp16 figure with diffusers' memory savings."),
    ModelEntry(
        id="da3-base", role="geometry", loader="depth-anything-3", title="Depth Anything 3 Base",
        repo="depth-anything/DA3-BASE", revision="main", revision_verified=False,
        licence="Apache-2.0", licence_url="https://huggingface.co/depth-anything/DA3-BASE",
        gated=False, commercial_use=True, download_bytes=int(0.6 * GB), vram_gb=4.0, tasks=("geometry",),
        size_source="estimate: a ViT-B backbone; ComfyUI's repackaged DA3-Base is 0.54 GB",
        sources=("https://huggingface.co/beycanai/Depth-Anything (Apache-2.0: DA3-Small, DA3-Base, DA3Mono-Large "
                 "and DA3Metric-Large; DA3-Large, DA3-Giant and DA3Nested are CC-BY-NC-4.0)",
                 "https://github.com/ByteDance-Seed/Depth-Anything-3"),
        notes="Apache-2.0 only for Small and Base of the any-view series; Large and Giant are CC-BY-NC-4.0 and "
              "are deliberately not in the catalogue. No full commit sha was visible in public sources."),
    ModelEntry(
        id="da3-small", role="geometry", loader="depth-anything-3", title="Depth Anything 3 Small",
        repo="depth-anything/DA3-SMALL", revision="main", revision_verified=False,
        licence="Apache-2.0", licence_url="https://huggingface.co/depth-anything/DA3-SMALL",
        gated=False, commercial_use=True, download_bytes=int(0.35 * GB), vram_gb=2.0, tasks=("geometry",),
        size_source="estimate: 0.08B parameters (fp32); ComfyUI's repackaged DA3-Small is 0.14 GB",
        sources=("https://gr.tbb.rip/models/depth-anything/DA3-SMALL (0.08B parameters, license apache-2.0)",
                 "https://huggingface.co/beycanai/Depth-Anything"),
        notes="No full commit sha was visible in public sources."),
)

CATALOGUE: dict[str, ModelEntry] = {e.id: e for e in BUILTIN}


# -- user entries ------------------------------------------------------------------------

_FIELDS = {f for f in ModelEntry.__dataclass_fields__}
_REQUIRED = ("id", "role", "loader", "repo", "revision", "licence", "download_bytes", "vram_gb", "tasks")


def entry_from_json(data: dict, where: str = "the entry") -> ModelEntry:
    """A validated ModelEntry from a JSON object (a user catalogue's entry); ValueError names the
    bad field."""
    if not isinstance(data, dict):
        raise ValueError(f"{where} is not a JSON object")
    unknown = sorted(set(data) - _FIELDS - {"needs_acceptance", "licence_flags"})
    if unknown:
        raise ValueError(f"{where} has unknown field(s): {', '.join(unknown)}")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise ValueError(f"{where} misses: {', '.join(missing)}")
    d = {k: v for k, v in data.items() if k in _FIELDS}
    if not isinstance(d["id"], str) or not _ID.fullmatch(d["id"]):
        raise ValueError(f"{where}: id must be 1-64 lower-case letters, digits, '.', '_' or '-'")
    if d["role"] not in ROLES:
        raise ValueError(f"{where}: role must be one of {', '.join(ROLES)}")
    if d["loader"] not in LOADERS:
        raise ValueError(f"{where}: loader must be one of {', '.join(LOADERS)}")
    if not isinstance(d["repo"], str) or not _REPO.fullmatch(d["repo"]):
        raise ValueError(f"{where}: repo must be 'owner/name'")
    if not isinstance(d["revision"], str) or not d["revision"].strip():
        raise ValueError(f"{where}: revision must be pinned (a commit sha, or a tag)")
    tasks = d["tasks"]
    if not isinstance(tasks, list) or not tasks or any(t not in TASKS for t in tasks):
        raise ValueError(f"{where}: tasks must be a list of {', '.join(TASKS)}")
    for key in ("download_bytes", "vram_gb"):
        if not isinstance(d[key], (int, float)) or isinstance(d[key], bool) or d[key] < 0:
            raise ValueError(f"{where}: {key} must be a number >= 0")
    patterns = d.get("allow_patterns")
    if patterns is not None and (not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns)):
        raise ValueError(f"{where}: allow_patterns must be a list of glob patterns")
    d.update(tasks=tuple(tasks), sources=tuple(d.get("sources") or ()), download_bytes=int(d["download_bytes"]),
             vram_gb=float(d["vram_gb"]), allow_patterns=tuple(patterns) if patterns else None,
             revision_verified=bool(d.get("revision_verified", _SHA.fullmatch(d["revision"]) is not None)),
             gated=bool(d.get("gated", False)), commercial_use=bool(d.get("commercial_use", False)),
             title=str(d.get("title") or d["id"]), licence_url=str(d.get("licence_url") or ""), local_path=None)
    return ModelEntry(**d)


def load_user_entries(path: Optional[os.PathLike] = None) -> dict[str, ModelEntry]:
    """Entries of the JSON file at ``path`` (default: ``$PARALLAX_CATALOGUE``; none when unset).
    An entry cannot replace a built-in one. ValueError (naming the file) when it is malformed."""
    path = path or os.environ.get(USER_CATALOGUE_ENV)
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ValueError(f"cannot read the model catalogue {str(path)!r} (${USER_CATALOGUE_ENV}): "
                         f"{e.strerror}") from None
    except ValueError as e:
        raise ValueError(f"the model catalogue {str(path)!r} is not valid JSON: {e}") from None
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, list):
        raise ValueError(f"the model catalogue {str(path)!r} must be {{\"models\": [...]}}")
    found: dict[str, ModelEntry] = {}
    for i, item in enumerate(models):
        entry = entry_from_json(item, f"{str(path)!r}, models[{i}]")
        if entry.id in CATALOGUE or entry.id in found:
            raise ValueError(f"{str(path)!r}: the model id {entry.id!r} is already in the catalogue")
        found[entry.id] = entry
    return found


def catalogue() -> dict[str, ModelEntry]:
    """The built-in entries and the user's (``$PARALLAX_CATALOGUE``)."""
    return {**CATALOGUE, **load_user_entries()}


def get_entry(model_id: str) -> ModelEntry:
    """The entry named ``model_id``; ModelNotAvailable (listing the ids) when there is none."""
    entries = catalogue()
    entry = entries.get(model_id)
    if entry is None:
        raise ModelNotAvailable(f"no model {model_id!r} in the catalogue; known: {', '.join(sorted(entries))} "
                                "(python -m backend models list)")
    return entry


# -- resolving ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ResolvedModel:
    """A folder the loaders read (a hub snapshot, a bundled checkpoint or a user's folder) and the
    catalogue entry it came from (None for a user's folder: the loader is detected from it)."""

    path: Path
    entry: Optional[ModelEntry] = None


def resolve_model(id_or_path, *, download: bool = False, progress: Optional[Callable] = None,
                  accept_licence: bool = False, cache_dir: Optional[os.PathLike] = None,
                  endpoint: Optional[str] = None) -> ResolvedModel:
    """A local folder for a catalogue id or a path.

    A catalogue id resolves to its snapshot in the huggingface_hub cache (``HF_HOME`` /
    ``HF_HUB_CACHE``), without any network request unless ``download`` is True (then a missing
    or partial snapshot is downloaded, resuming, with ``progress`` as in
    :func:`backend.hub.download.download_model`). Anything else must be an existing folder in the
    hub's layout (``model_index.json`` or ``config.json`` inside).

    Raises:
        ModelNotAvailable: with a message that says how to get the model.
    """
    entries = catalogue()
    key = str(id_or_path)
    if key in entries:
        entry = entries[key]
        if entry.is_local:
            path = Path(entry.local_path)
            if not path.is_dir():
                raise ModelNotAvailable(f"the bundled model {entry.id!r} is missing from {path}; reinstall Parallax")
            return ResolvedModel(path, entry)
        from . import download as dl

        path = dl.local_snapshot(entry, cache_dir=cache_dir)
        if path is None:
            if not download:
                raise ModelNotAvailable(not_downloaded_message(entry))
            path = dl.download_model(entry, progress=progress, accept_licence=accept_licence,
                                     cache_dir=cache_dir, endpoint=endpoint)
        return ResolvedModel(Path(path), entry)
    path = Path(os.path.expanduser(key))
    if path.is_dir():
        if not any((path / name).is_file() for name in ("model_index.json", "config.json")):
            raise ModelNotAvailable(f"the folder {key!r} holds no model_index.json or config.json: not a model "
                                    "folder in the hub's layout")
        return ResolvedModel(path.resolve(), None)
    if path.exists():
        raise ModelNotAvailable(f"{key!r} is a file; give a model folder (hub layout) or a catalogue id")
    hint = " (a hub repo name: add it to $PARALLAX_CATALOGUE with a pinned revision)" if _REPO.fullmatch(key) else ""
    raise ModelNotAvailable(f"{key!r} is neither a catalogue id nor an existing folder{hint}; catalogue ids: "
                            f"{', '.join(sorted(entries))}")


def not_downloaded_message(entry: ModelEntry) -> str:
    size = f"{entry.download_bytes / GB:.1f} GB"
    accept = " --accept-licence" if entry.needs_acceptance else ""
    licence = (f"; its licence ({entry.licence}, {', '.join(entry.licence_flags())}) must be accepted: read "
               f"{entry.licence_url}" if entry.needs_acceptance else "")
    return (f"model {entry.id!r} is not downloaded yet (about {size}): run `python -m backend models download "
            f"{entry.id}{accept}`, or use the model manager in the add-on's preferences{licence}")
