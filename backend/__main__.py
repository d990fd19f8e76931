"""``python -m backend COMMAND ...``: the backend's command line.

Each command lives in its own module and is imported only when run, so ``--help`` is fast
and a command's heavy dependencies (torch, pycolmap, uvicorn) load only for that command.
A command module provides ``add_arguments(parser)`` and ``main(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS = {
    "synth": ("backend.data.cli", "render synthetic ground-truth clips as result bundles"),
    "solve": ("backend.engines.cli", "solve cameras (and sparse points) from a clip or frame folder"),
    "generate": ("backend.pipelines.cli_generate", "generate a shot (and its camera) from a prompt"),
    "reconstruct": ("backend.pipelines.cli_reconstruct", "dynamic 4D reconstruction of a clip"),
    "pair-pose": ("backend.pipelines.cli_pair_pose", "relative pose of two images"),
    "export": ("backend.export_cli", "export a result bundle to COLMAP, nerfstudio, TUM or PLY"),
    "serve": ("backend.server.cli", "run the HTTP service the Blender add-on talks to"),
    "train": ("backend.train.cli", "train the unified model"),
    "eval": ("backend.eval.cli", "evaluate engines on held-out data"),
}


def _load(name: str):
    module_name = COMMANDS[name][0]
    if __package__ and __package__ != "backend":  # imported as part of the add-on package
        module_name = __package__ + module_name[len("backend"):]
    return importlib.import_module(module_name)


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
    try:
        module = _load(name)
    except ModuleNotFoundError as e:
        print(f"'{name}' is not available in this build: {e}", file=sys.stderr)
        return 2
    cmd_parser = argparse.ArgumentParser(prog=f"python -m backend {name}", description=COMMANDS[name][1])
    module.add_arguments(cmd_parser)
    return int(module.main(cmd_parser.parse_args(argv[1:])) or 0)


if __name__ == "__main__":
    sys.exit(main())
