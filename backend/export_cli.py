"""``python -m backend export BUNDLE --format colmap|nerfstudio|tum|ply|ply-frames|depth [--out PATH]``."""

from __future__ import annotations

import sys
from pathlib import Path

from .bundle import BundleError, read_bundle
from .exports import DEPTH_FORMATS, EXPORTERS, FOLDER_FORMATS


def add_arguments(parser) -> None:
    parser.add_argument("bundle", help="result bundle folder or .zip")
    parser.add_argument("--format", required=True, choices=sorted(EXPORTERS))
    parser.add_argument("--out", help="output path (default: inside the bundle folder); an existing folder "
                                      "gets the format's default file name inside it")


def main(args) -> int:
    try:
        bundle = read_bundle(args.bundle, load_depth=args.format in DEPTH_FORMATS)
    except BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    export, default_name = EXPORTERS[args.format]
    out = Path(args.out) if args.out else bundle.path / default_name
    if args.out and out.is_dir() and args.format not in FOLDER_FORMATS:  # a folder: write the file inside it
        out = out / default_name
    try:
        export(bundle, out)
    except OSError as e:
        print(f"error: cannot write {out}: {e.strerror or e}", file=sys.stderr)
        return 1
    except ValueError as e:  # the bundle lacks what the format needs (depth, points)
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0
