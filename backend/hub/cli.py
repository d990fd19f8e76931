"""``python -m backend models list|info ID|download ID [--accept-licence]|remove ID``.

``list`` shows each catalogue model: installed or not (and a partial download), size, VRAM and
whether it fits this GPU, and its licence with gated / non-commercial flagged. ``download``
prints byte progress, resumes an interrupted download, and refuses a full disk before starting.
"""

from __future__ import annotations

import argparse
import sys
import time

from .catalogue import GB, ModelNotAvailable, catalogue, get_entry


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="the catalogue: installed, size, VRAM, fits this GPU, licence")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info = sub.add_parser("info", help="everything about one model (licence, revision, sources, cache folder)")
    info.add_argument("model", metavar="ID")
    dl = sub.add_parser("download", help="download a model into the huggingface_hub cache (resumes)")
    dl.add_argument("model", metavar="ID")
    dl.add_argument("--accept-licence", "--accept-license", action="store_true", dest="accept_licence",
                    help="accept a gated or non-commercial licence (read it first: `models info ID`)")
    dl.add_argument("--quiet", action="store_true", help="no progress lines")
    rm = sub.add_parser("remove", help="delete a model's files from the cache (nothing else)")
    rm.add_argument("model", metavar="ID")


def main(args) -> int:
    try:
        return {"list": _list, "info": _info, "download": _download, "remove": _remove}[args.action](args)
    except (ModelNotAvailable, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def gpu_memory() -> int | None:
    """Total memory of this machine's first NVIDIA GPU in bytes, or None (no GPU found).

    Asked of ``nvidia-smi``, not torch: importing torch takes seconds and ``list`` needs one number."""
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10)
        return int(float(out.stdout.split()[0]) * 2**20) if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None


def describe(entry, state: dict, gpu: int | None) -> dict:
    """An entry with its cache state and fit, as the CLI's --json and the service list it."""
    return dict(entry.to_json(), **state, fits=entry.fits(gpu))


def _size(nbytes: int) -> str:
    """What a download costs: 17.6G, 600M below a gigabyte, "-" for nothing (bundled)."""
    if not nbytes:
        return "-"
    return f"{nbytes / GB:.1f}G" if nbytes >= GB else f"{nbytes / 1e6:.0f}M"


def _list(args) -> int:
    from .download import model_state, offline

    gpu = gpu_memory()
    rows = [describe(e, model_state(e), gpu) for e in catalogue().values()]
    if args.json:
        import json

        print(json.dumps({"models": rows, "gpu_memory": gpu, "offline": offline()}, indent=2))
        return 0
    print(f"{'ID':<24}{'ROLE':<10}{'INSTALLED':<16}{'SIZE':>9}{'VRAM':>8}  {'FITS':<5}LICENCE")
    for r in rows:
        installed = "yes" if r["installed"] else (f"partial {r['partial_bytes'] / GB:.1f}G" if r["partial_bytes"]
                                                  else "no")
        if r["repo"] is None:
            installed = "bundled"
        fits = {True: "yes", False: "no", None: "-"}[r["fits"]]
        flags = f" [{', '.join(r['licence_flags'])}]" if r["licence_flags"] else ""
        print(f"{r['id']:<24}{r['role']:<10}{installed:<16}{_size(r['download_bytes']):>9}{r['vram_gb']:>7.1f}G  "
              f"{fits:<5}{r['licence']}{flags}")
    if gpu is None:
        print("\nFITS '-': no CUDA GPU found here.")
    if offline():
        print("HF_HUB_OFFLINE is set: models load from the cache only, nothing is downloaded.")
    return 0


def _info(args) -> int:
    from .download import model_state

    entry = get_entry(args.model)
    state = model_state(entry)
    gpu = gpu_memory()
    lines = [f"{entry.title} ({entry.id})", f"  role: {entry.role}, loader: {entry.loader}, tasks: {', '.join(entry.tasks)}"]
    if entry.is_local:
        lines.append(f"  bundled at {entry.local_path}")
    else:
        pinned = "pinned commit" if entry.revision_verified else "ref, not a verified commit sha"
        lines.append(f"  hub: {entry.repo} @ {entry.revision} ({pinned})")
        if entry.allow_patterns:
            lines.append(f"  files: {', '.join(entry.allow_patterns)}")
    lines += [f"  licence: {entry.licence}" + (f" [{', '.join(entry.licence_flags())}]" if entry.licence_flags() else ""),
              f"  licence text: {entry.licence_url or '-'}",
              f"  download: about {entry.download_bytes / GB:.2f} GB ({entry.size_source})",
              f"  VRAM: {entry.vram_gb:g} GB; fits this GPU: {({True: 'yes', False: 'no', None: 'no GPU here'})[entry.fits(gpu)]}",
              f"  installed: {'yes, ' + state['path'] if state['installed'] else 'no'}"
              + (f" (a partial download of {state['partial_bytes'] / 1e6:.1f} MB resumes)" if state["partial_bytes"] else "")]
    if entry.notes:
        lines.append(f"  notes: {entry.notes}")
    for src in entry.sources:
        lines.append(f"  source: {src}")
    print("\n".join(lines))
    return 0


def _download(args) -> int:
    from ..runtime import Cancelled
    from .download import DownloadError, download_model

    entry = get_entry(args.model)
    printer = _Printer(quiet=args.quiet)
    try:
        path = download_model(entry, progress=printer, accept_licence=args.accept_licence)
    except DownloadError as e:
        printer.end()
        print(f"error: {e}", file=sys.stderr)
        return 3 if e.kind in ("licence", "disk", "offline") else 1
    except (KeyboardInterrupt, Cancelled):
        printer.end()
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    printer.end()
    print(f"{entry.id}: ready at {path}")
    return 0


def _remove(args) -> int:
    from .download import DownloadError, model_state, remove_model

    entry = get_entry(args.model)
    if entry.is_local:
        print(f"error: {entry.id} is bundled with Parallax and cannot be removed", file=sys.stderr)
        return 2
    had = model_state(entry)
    try:
        freed = remove_model(entry)
    except DownloadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if not had["installed"] and not freed:
        print(f"{entry.id} is not in the cache: nothing removed")
    else:
        print(f"removed {entry.id}: {freed / GB:.2f} GB freed")
    return 0


class _Printer:
    """Byte progress on one line (a terminal) or a line per 5 % (a log)."""

    def __init__(self, quiet: bool = False):
        self.quiet, self.tty = quiet, sys.stderr.isatty()
        self.last_pct, self.last_t, self.printed = -5, 0.0, False

    def __call__(self, p) -> None:
        if self.quiet:
            return
        pct = int(p.fraction * 100)
        now = time.monotonic()
        if self.tty and now - self.last_t > 0.2:
            print(f"\r{pct:3d}% {p.label()}"[:160].ljust(100), end="", file=sys.stderr, flush=True)
            self.last_t, self.printed = now, True
        elif not self.tty and pct >= self.last_pct + 5:
            print(f"{pct:3d}% {p.label()}", file=sys.stderr, flush=True)
            self.last_pct = pct

    def end(self) -> None:
        if self.printed:
            print(file=sys.stderr)
            self.printed = False
