"""``python -m backend COMMAND ...``: the backend's command line.

Each command lives in its own module, imported only when run, so ``--help`` is fast and a
command's heavy dependencies (torch, pycolmap, uvicorn) load only for that command. A command
module provides ``add_arguments(parser)`` and ``main(args) -> int``. A command is listed only
when its pipeline exists in this build.
"""

from __future__ import annotations

import argparse
import sys


def _synth():
    from .data import cli
    return cli


def _solve():
    from .engines import cli
    return cli


def _generate():
    from .pipelines import cli_generate
    return cli_generate


def _pair_pose():
    from .pipelines import cli_pair_pose
    return cli_pair_pose


def _reconstruct():
    from .pipelines import cli_reconstruct
    return cli_reconstruct


def _export():
    from . import export_cli
    return export_cli


def _serve():
    from .server import cli
    return cli


def _train():
    from .train import cli
    return cli


def _eval():
    from .eval import cli
    return cli


def _models():
    from .hub import cli
    return cli


# name -> (loader of the command's module, one-line help)
COMMANDS = {
    "synth": (_synth, "render synthetic ground-truth clips as result bundles"),
    "solve": (_solve, "solve cameras (and sparse points) from a clip or frame folder"),
    "generate": (_generate, "generate a shot (and its camera) from a prompt"),
    "pair-pose": (_pair_pose, "relative pose of two images with little overlap (InterPose)"),
    "reconstruct": (_reconstruct, "reconstruct a dynamic scene (cameras, depth, points with a dynamic flag) "
                                  "from a clip (Geo4D)"),
    "export": (_export, "export a result bundle to COLMAP, nerfstudio, TUM or PLY"),
    "serve": (_serve, "run the HTTP service the Blender add-on talks to"),
    "train": (_train, "train the unified model"),
    "eval": (_eval, "evaluate engines on held-out data"),
    "models": (_models, "hub models: list, info, download (resumable), remove"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m backend", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser.print_help()
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nunknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    name = argv[0]
    load, help_text = COMMANDS[name]
    module = load()
    cmd_parser = argparse.ArgumentParser(prog=f"python -m backend {name}", description=help_text)
    module.add_arguments(cmd_parser)
    return int(module.main(cmd_parser.parse_args(argv[1:])) or 0)


if __name__ == "__main__":
    sys.exit(main())
