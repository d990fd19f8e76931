"""``python -m backend solve CLIP_OR_FOLDER --engine colmap --out DIR``: cameras and sparse points.

Prints progress, writes a result bundle (atomically), and on failure prints one line
``error: ...`` and exits non-zero (1 for bad input or no result, 130 when interrupted).
"""

from __future__ import annotations

from pydantic import ValidationError

from ..cli_bundle import run_to_bundle
from . import ENGINES, get_spec


def add_arguments(parser) -> None:
    parser.add_argument("source", help="a video file, a folder of images, or one image file")
    parser.add_argument("--engine", default="colmap", choices=sorted(ENGINES), help="default: colmap")
    parser.add_argument("--out", required=True, help="the result bundle directory to write")
    parser.add_argument("--max-frames", type=int, default=None, help="use at most this many frames")
    parser.add_argument("--stride", type=int, default=1, help="use every STRIDE-th frame")
    parser.add_argument("--start", type=int, default=0, help="first frame to use")
    parser.add_argument("--mapper", choices=("auto", "global", "incremental"), default="auto",
                        help="colmap: GLOMAP (global), incremental, or auto (default): GLOMAP, plus incremental "
                             "when --intrinsics is given or GLOMAP left frames out; the better model is kept")
    parser.add_argument("--intrinsics", metavar="FX,FY,CX,CY", default=None,
                        help="known intrinsics in pixels (pixel centres at integers); held fixed")
    parser.add_argument("--features", choices=("sift", "disk", "aliked"), default=None,
                        help="colmap: SIFT (default) or learned keypoints matched by LightGlue")
    parser.add_argument("--candidates", default=None, metavar="A,B",
                        help="auto: feature variants to try, in order of preference (default aliked,sift)")
    parser.add_argument("--focal-px", type=float, default=None, help="colmap/auto: known focal length in pixels")
    parser.add_argument("--focal-mm", type=float, default=None, help="colmap/auto: known focal length in mm "
                                                                     "(with --sensor-mm)")
    parser.add_argument("--sensor-mm", type=float, default=None, help="colmap/auto: sensor width in mm")
    parser.add_argument("--camera-model", default=None,
                        choices=("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV"),
                        help="colmap/auto: COLMAP camera model; the RADIAL/OPENCV ones estimate lens distortion")
    parser.add_argument("--lens", choices=("auto", "pinhole", "distorted"), default=None,
                        help="colmap/auto: lens distortion. auto (default): solve a pinhole and a radially distorted "
                             "camera on the same matches and keep the distortion only when the footage needs it "
                             "(it moves the image by more than 0.5 px, lowers the reprojection error by 5%% and is a "
                             "plausible lens); pinhole: never estimate it; distorted: always keep it. A kept "
                             "distortion goes into cameras.json (dist) with undistorted frames for the pinhole camera")
    parser.add_argument("--refine-intrinsics", action="store_true",
                        help="colmap/auto: use the known focal / intrinsics as a prior, refined by bundle adjustment")
    parser.add_argument("--fps", type=float, default=None, help="frame rate to record (default: the video's)")
    parser.add_argument("--no-align", action="store_true", help="unified: skip the global alignment (faster)")
    parser.add_argument("--no-photometric", action="store_true",
                        help="unified: skip the photometric refinement of the cameras")
    parser.add_argument("--model", default=None, metavar="ID_OR_PATH",
                        help="geometry: catalogue id or model folder (default: the shipped parallax-tiny)")
    parser.add_argument("--resolution", type=int, default=None,
                        help="geometry: longer side a hub model processes frames at (Depth Anything 3: 504)")
    parser.add_argument("--zip", action="store_true", help="also write DIR.zip")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def main(args) -> int:
    def work(progress):
        spec = get_spec(args.engine)
        selection, options = _options(args, spec.options)
        return spec.build().solve(args.source, progress=progress, **selection, **options)

    return run_to_bundle(args, work, summary)


def summary(bundle, seconds: float) -> str:
    """The bundle's own summary (the counts bundle.json holds), with the wall time."""
    lines = bundle.summary()
    return "\n".join([f"{lines[0]} ({bundle.model_id}) in {seconds:.1f} s", *lines[1:]])


def _options(args, options_model) -> tuple[dict, dict]:
    """(frame selection, engine options) from the flags; the options checked by the engine's
    typed model, as the service checks them."""
    selection = {"start": args.start, "stride": args.stride, "max_frames": args.max_frames}
    options = {"fps": args.fps}
    if args.engine in ("colmap", "auto"):
        options.update(mapper=args.mapper, focal_px=args.focal_px, focal_mm=args.focal_mm, sensor_mm=args.sensor_mm,
                       camera_model=args.camera_model, refine_intrinsics=args.refine_intrinsics or None,
                       lens=getattr(args, "lens", None))
    if args.engine == "colmap":
        options["features"] = args.features
    if args.engine == "auto" and args.candidates:
        options["candidates"] = [c.strip() for c in args.candidates.split(",") if c.strip()]
    if args.engine == "geometry":
        options.update(model=args.model, resolution=args.resolution)
    elif args.model or args.resolution:
        raise ValueError("--model and --resolution are for --engine geometry")
    if args.engine == "unified":
        options.update(align=not args.no_align, photometric=not args.no_photometric)
    if args.intrinsics:
        try:
            fx, fy, cx, cy = (float(v) for v in args.intrinsics.split(","))
        except ValueError:
            raise ValueError(f"--intrinsics must be four numbers FX,FY,CX,CY, got {args.intrinsics!r}") from None
        options["K"] = [[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]
    try:
        typed = options_model.model_validate({k: v for k, v in options.items() if v is not None})
    except ValidationError as e:
        raise ValueError("; ".join(f"{'.'.join(map(str, err['loc'])) or 'options'}: "
                                   f"{str(err['msg']).removeprefix('Value error, ')}" for err in e.errors())) from None
    return selection, typed.model_dump(exclude_unset=True)
