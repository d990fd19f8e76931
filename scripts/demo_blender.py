"""Import a result bundle into a fresh Blender scene (headless) and save a .blend and a render.

    .venv-blender/bin/python scripts/demo_blender.py BUNDLE OUT_DIR [--frame N] [--name STEM] [--color MODE]

The points are drawn as green markers (a subsample of each frame) so that their alignment
with the footage plate behind them can be judged in the PNG; ``--color DYNAMIC`` draws a 4D
result's moving points magenta instead.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import bpy  # first: it puts Blender's own modules (addon_utils) on the path
import addon_utils

ROOT = Path(__file__).resolve().parents[1]


def enable_addon() -> None:
    addons = Path(tempfile.mkdtemp(prefix="parallax_addons_"))
    (addons / "parallax").symlink_to(ROOT, target_is_directory=True)
    sys.path.insert(0, str(addons))
    if addon_utils.enable("parallax", default_set=True, handle_error=None) is None:
        raise SystemExit("could not enable the Parallax add-on")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("out_dir")
    parser.add_argument("--frame", type=int, default=0, help="bundle frame to render (default: the middle one)")
    parser.add_argument("--name", default="parallax_demo", help="file stem of the .blend and .png")
    parser.add_argument("--color", default="MARKER", help="point colour mode (MARKER, IMAGE, DYNAMIC, ...)")
    args = parser.parse_args()
    out = Path(args.out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)

    bpy.ops.wm.read_factory_settings(use_empty=True)
    enable_addon()
    result = bpy.ops.parallax.import_bundle(filepath=str(Path(args.bundle).resolve()), point_color=args.color, point_size=4.0,
                                            max_points_per_frame=600)
    if result != {"FINISHED"}:
        return 1
    scene = bpy.context.scene
    frame = args.frame or (scene.frame_start + scene.frame_end) // 2
    scene.frame_set(frame)
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 8
    scene.cycles.use_denoising = False
    scene.render.image_settings.file_format = "PNG"
    scene.render.filepath = str(out / f"{args.name}.png")
    bpy.ops.render.render(write_still=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(out / f"{args.name}.blend"))
    print(f"saved {out / (args.name + '.blend')} and {out / (args.name + '.png')} (frame {frame})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
