"""A solved lens distortion in Blender (importers/lens.py): the plate and the camera background
show the undistorted frames, on which the pinhole camera reprojects the points within 0.5 px,
and the Movie Clip's tracking camera distorts exactly as OpenCV's model, which is checked by
running Blender's own compositor (Movie Distortion node) on an image of pixel coordinates.

The footage here is made with numpy: dots at the OpenCV-distorted projections of known 3D
points, and its undistortion by remapping (what ``cv2.undistort`` does)."""

import importlib

import bpy
import numpy as np
import pytest
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Vector

from backend import bundle as B
from blender.images import read_png

WIDTH, HEIGHT = 96, 72
K = dict(fx=80.0, fy=80.0, cx=49.3, cy=34.6)
# Strong enough that a wrong sign or origin is pixels off at the corners.
DIST = (-0.18, 0.05, 0.004, -0.003, 0.01)


def opencv_distort(uv: np.ndarray, fx, fy, cx, cy, dist) -> np.ndarray:
    """Pixels of the pinhole image -> pixels of the image as shot (OpenCV's model)."""
    k1, k2, p1, p2 = dist[:4]
    k3 = dist[4] if len(dist) > 4 else 0.0
    x, y = (uv[..., 0] - cx) / fx, (uv[..., 1] - cy) / fy
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.stack([xd * fx + cx, yd * fy + cy], axis=-1)


def _dots(uv: np.ndarray, sigma: float = 1.1) -> np.ndarray:
    """A grey frame with a white Gaussian dot at each (u, v) (pixel centres at integers)."""
    jj, ii = np.meshgrid(np.arange(WIDTH), np.arange(HEIGHT))
    img = np.zeros((HEIGHT, WIDTH))
    for u, v in uv:
        img = np.maximum(img, np.exp(-((jj - u) ** 2 + (ii - v) ** 2) / (2 * sigma ** 2)))
    return (np.repeat((40 + 215 * img)[..., None], 3, axis=2) + 0.5).astype(np.uint8)


def _undistort(shot: np.ndarray) -> np.ndarray:
    """``cv2.undistort`` in numpy: each pinhole pixel samples the shot frame where the lens put it."""
    jj, ii = np.meshgrid(np.arange(WIDTH, dtype=float), np.arange(HEIGHT, dtype=float))
    src = opencv_distort(np.stack([jj, ii], -1), dist=DIST, **K)
    x0 = np.clip(np.floor(src[..., 0]).astype(int), 0, WIDTH - 2)
    y0 = np.clip(np.floor(src[..., 1]).astype(int), 0, HEIGHT - 2)
    fx_, fy_ = np.clip(src[..., 0] - x0, 0, 1)[..., None], np.clip(src[..., 1] - y0, 0, 1)[..., None]
    img = shot.astype(float)
    out = ((img[y0, x0] * (1 - fx_) + img[y0, x0 + 1] * fx_) * (1 - fy_)
           + (img[y0 + 1, x0] * (1 - fx_) + img[y0 + 1, x0 + 1] * fx_) * fy_)
    return (out + 0.5).astype(np.uint8)


def _rot_y(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def quality_plot(errors) -> np.ndarray:
    """A small bar chart of per-frame errors (what the backend draws with matplotlib)."""
    img = np.full((40, 10 * len(errors), 3), 255, np.uint8)
    for i, e in enumerate(errors):
        h = int(min(e if e is not None else 0, 2.0) / 2.0 * 38)
        img[40 - h:, 10 * i + 2:10 * i + 8] = (200, 60, 60) if e is None else (60, 60, 200)
    return img


def distorted_solve(out_dir, frames: int = 6, unsolved=(), seed: int = 0) -> tuple:
    """Write a solve bundle shot through ``DIST``: frames as shot, undistorted frames, the
    pinhole cameras, each frame's points, per-frame quality scores and a quality plot.
    Returns (path, world points (N, 3), per-frame pinhole pixels of them)."""
    rng = np.random.default_rng(seed)
    # A 4 x 3 grid of dots in the first frame (apart, so each dot's centre can be measured),
    # at random depths (so the camera's motion moves them by different amounts).
    gu, gv = np.meshgrid(np.linspace(14, WIDTH - 22, 4), np.linspace(12, HEIGHT - 16, 3))
    z = rng.uniform(3.5, 6.0, gu.size)
    X = np.stack([(gu.ravel() - K["cx"]) / K["fx"] * z, (gv.ravel() - K["cy"]) / K["fy"] * z, z], 1)
    points = len(X)
    cams, shot, flat, pts, uvs = [], [], [], [], []
    for f in range(frames):
        c2w = np.eye(4)
        c2w[:3, :3] = _rot_y(0.03 * f)
        c2w[:3, 3] = [0.12 * f, 0.02 * f, 0.05 * f]
        w2c = np.linalg.inv(c2w)
        Xc = X @ w2c[:3, :3].T + w2c[:3, 3]
        uv = np.stack([K["fx"] * Xc[:, 0] / Xc[:, 2] + K["cx"], K["fy"] * Xc[:, 1] / Xc[:, 2] + K["cy"]], 1)
        uvs.append(uv)
        frame = _dots(opencv_distort(uv, dist=DIST, **K))
        shot.append(frame)
        flat.append(_undistort(frame))
        cams.append(B.CameraFrame(f, None if f in unsolved else c2w, dist=DIST, **K))
        pts.append(B.PointFrame(X.astype(np.float32), np.full((points, 3), 255, np.uint8),
                                np.ones(points, np.float16)))
    solved = [f not in unsolved for f in range(frames)]
    errors = [round(0.2 + 0.05 * f, 3) if s else None for f, s in enumerate(solved)]
    scores = {"frame_solved": solved, "frame_reprojection_error_px": errors,
              "frame_tracks": [points if s else 0 for s in solved], "registered_fraction": sum(solved) / frames,
              "mean_reprojection_error_px": 0.31, "points": points,
              "auto": {"chosen": "aliked", "consistency": {"aliked": 0.83, "sift": 0.41}, "this": "aliked"}}
    bundle = B.Bundle("solve", WIDTH, HEIGHT, frames, fps=24.0, engine="auto", source={"input": "lens.mp4"},
                      scores=scores, frames=shot, undistorted=flat, cameras=cams, points=pts,
                      plots={"quality": B.encode_png(quality_plot(errors))})
    return B.write_bundle(bundle, out_dir), X, uvs


def _import(path, **kw):
    assert bpy.ops.parallax.import_bundle(filepath=str(path), **kw) == {"FINISHED"}
    return bpy.data.collections[f"Parallax {path.name}"]


def load_rgb(path) -> np.ndarray:
    """(H, W, 3) float top-down, through Blender's own PNG loader."""
    return read_png(path)[:, :, :3]


def _dot_centre(gray: np.ndarray, near: np.ndarray, radius: int = 3) -> np.ndarray:
    """Intensity-weighted centre of the dot near ``near`` (background subtracted)."""
    u0, v0 = int(round(near[0])), int(round(near[1]))
    win = gray[v0 - radius:v0 + radius + 1, u0 - radius:u0 + radius + 1]
    w = np.clip(win - np.median(gray), 0, None)
    jj, ii = np.meshgrid(np.arange(u0 - radius, u0 + radius + 1), np.arange(v0 - radius, v0 + radius + 1))
    return np.array([(w * jj).sum() / w.sum(), (w * ii).sum() / w.sum()])


def test_points_reproject_onto_the_undistorted_plate(empty_scene, tmp_path):
    """The plate shows undistorted/, and Blender's camera puts each imported point on its dot
    in that frame (the dot found in the image, not taken from the bundle) within 0.5 px."""
    path, X, uvs = distorted_solve(tmp_path / "lens")
    bundle = B.read_bundle(path)
    coll = _import(path)
    scene = empty_scene
    cam = scene.camera
    plate = next(o for o in coll.objects if o.type == "MESH" and "Parallax Points" not in o.modifiers)
    points = next(o for o in coll.objects if "Parallax Points" in o.modifiers)
    plate_image = plate.active_material.node_tree.nodes["Image Texture"].image
    assert bpy.path.abspath(plate_image.filepath) == str(bundle.undistorted[0])
    assert bpy.path.abspath(cam.data.background_images[0].image.filepath) == str(bundle.undistorted[0])

    co = np.empty(len(points.data.vertices) * 3, np.float32)
    points.data.vertices.foreach_get("co", co)
    co = co.reshape(-1, 3) @ np.array(points.matrix_world)[:3, :3].T + np.array(points.matrix_world)[:3, 3]
    worst, worst_pinhole, worst_shot = 0.0, 0.0, 0.0
    for f in range(bundle.frame_count):
        scene.frame_set(1 + f)
        gray = load_rgb(bundle.undistorted[f]).mean(axis=2)
        shot_gray = load_rgb(bundle.frames[f]).mean(axis=2)
        for i in range(len(X)):
            Xb = co[f * len(X) + i]  # the points of frame f, in the bundle's order
            ndc = world_to_camera_view(scene, cam, Vector(Xb))
            uv_b = np.array([ndc.x * WIDTH - 0.5, (1.0 - ndc.y) * HEIGHT - 0.5])
            if not (4 <= uv_b[0] <= WIDTH - 5 and 4 <= uv_b[1] <= HEIGHT - 5):
                continue
            worst = max(worst, np.abs(_dot_centre(gray, uv_b) - uv_b).max())
            worst_pinhole = max(worst_pinhole, np.abs(uv_b - uvs[f][i]).max())
            # On the footage as shot the same projection is off: that is what the lens does.
            worst_shot = max(worst_shot, np.abs(_dot_centre(shot_gray, uv_b, radius=2) - uv_b).max())
    print(f"undistorted plate: {worst:.3f} px; as shot: {worst_shot:.2f} px; vs pinhole: {worst_pinhole:.2e} px")
    assert worst_pinhole < 1e-3, worst_pinhole
    assert worst < 0.5, f"points land {worst:.3f} px from their dots on the undistorted plate"
    assert worst_shot > 1.0, "the test footage is not distorted enough to tell plates apart"


def _coordinates_image(name: str) -> bpy.types.Image:
    """A float image whose pixel (u, v) holds (u, v, 0) in OpenCV pixel coordinates."""
    img = bpy.data.images.new(name, WIDTH, HEIGHT, float_buffer=True, alpha=True)
    img.colorspace_settings.name = "Non-Color"
    jj, ii = np.meshgrid(np.arange(WIDTH, dtype=np.float32), np.arange(HEIGHT, dtype=np.float32))
    px = np.stack([jj, ii, np.zeros_like(jj), np.ones_like(jj)], -1)
    img.pixels.foreach_set(px[::-1].ravel())  # Blender's rows go bottom-up
    img.pack()
    return img


def _composite(scene, image, make_node, out_path) -> np.ndarray:
    """Render ``image`` through one compositor node and read the result back, top-down."""
    tree = bpy.data.node_groups.new("Parallax test compositor", "CompositorNodeTree")
    scene.compositing_node_group = tree
    source = tree.nodes.new("CompositorNodeImage")
    source.image = image
    node = make_node(tree)
    tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
    out = tree.nodes.new("NodeGroupOutput")
    tree.links.new(source.outputs["Image"], node.inputs["Image"])
    tree.links.new(node.outputs["Image"], out.inputs["Image"])
    r = scene.render
    # the render settings this changes, put back after: later tests render PNGs with the defaults
    saved = [(obj, name, getattr(obj, name)) for obj, names in (
        (r, ("resolution_x", "resolution_y", "resolution_percentage", "engine", "use_compositing", "filepath")),
        (scene.cycles, ("samples", "device")), (r.image_settings, ("file_format", "color_depth"))) for name in names]
    r.resolution_x, r.resolution_y, r.resolution_percentage = WIDTH, HEIGHT, 100
    r.engine, scene.cycles.samples, scene.cycles.device = "CYCLES", 1, "CPU"
    r.use_compositing = True
    r.image_settings.file_format, r.image_settings.color_depth = "OPEN_EXR", "32"
    r.filepath = str(out_path)
    try:
        bpy.ops.render.render(write_still=True)
    finally:
        scene.compositing_node_group = None
        bpy.data.node_groups.remove(tree)
        for obj, name, value in saved:
            setattr(obj, name, value)
    result = bpy.data.images.load(str(out_path), check_existing=False)
    result.colorspace_settings.name = "Non-Color"
    px = np.empty(WIDTH * HEIGHT * 4, np.float32)
    result.pixels.foreach_get(px)
    bpy.data.images.remove(result)
    return px.reshape(HEIGHT, WIDTH, 4)[::-1, :, :2].astype(np.float64)


def _best_integer_shift(measured: np.ndarray, expected: np.ndarray, margin: int = 14) -> tuple[float, tuple]:
    """Largest difference over the interior after the best whole-pixel shift of the output.

    Blender 5.0.1's compositor writes a Movie Distortion result moved by whole pixels (its
    output's data window grows or shrinks with the lens; 1 px even with no distortion), so the
    lens is compared up to that shift. A wrong sign, origin or normalisation is not a whole-
    pixel shift: it bends the field and shows as a residual of pixels.
    """
    best = (np.inf, (0, 0))
    inner = measured[margin:-margin, margin:-margin]
    for sy in range(-8, 9):
        for sx in range(-8, 9):
            ref = expected[margin + sy:HEIGHT - margin + sy, margin + sx:WIDTH - margin + sx]
            best = min(best, (float(np.abs(inner - ref).max()), (sx, sy)))
    return best


@pytest.mark.parametrize("dist", [DIST, (-0.2, 0.06, 0.0, 0.0, 0.015)], ids=["brown", "polynomial"])
def test_movie_clip_lens_distorts_as_opencv(empty_scene, addon, tmp_path, dist):
    """The clip's lens, run through Blender's compositor both ways, is OpenCV's model.

    Undistort samples the footage where the lens put each pinhole pixel, so on an image of
    coordinates it returns OpenCV's distort(p); the import's redistort node group (Distort)
    returns the pinhole pixel q whose distort(q) is p.
    """
    lens = importlib.import_module(addon.__name__ + ".importers.lens")
    frame = tmp_path / "frames" / "000000.png"
    frame.parent.mkdir()
    frame.write_bytes(B.encode_png(np.zeros((HEIGHT, WIDTH, 3), np.uint8)))
    settings = lens.clip_lens(K["fx"], K["fy"], K["cx"], K["cy"], dist, WIDTH, HEIGHT)
    assert settings["distortion_model"] == ("BROWN" if dist[2] or dist[3] else "POLYNOMIAL")
    clip = lens.load_movie_clip("Parallax test clip", str(frame), settings, 1)
    assert tuple(clip.size) == (WIDTH, HEIGHT)
    assert clip.tracking.camera.focal_length_pixels == pytest.approx(K["fx"], rel=1e-5)
    coords = _coordinates_image("Parallax coordinates")
    jj, ii = np.meshgrid(np.arange(WIDTH, dtype=float), np.arange(HEIGHT, dtype=float))
    pixels = np.stack([jj, ii], -1)

    def undistort_node(tree):
        node = tree.nodes.new("CompositorNodeMovieDistortion")
        node.clip = clip
        node.inputs["Type"].default_value = "Undistort"
        return node

    got = _composite(empty_scene, coords, undistort_node, tmp_path / "undistort.exr")
    err, shift = _best_integer_shift(got, opencv_distort(pixels, dist=dist, **K))
    print(f"undistort: {err:.2e} px after a shift of {shift} px")
    assert err < 0.01, f"Blender's lens differs from OpenCV's by {err:.4f} px (shift {shift})"

    group = lens.redistort_node_group("Parallax test redistort", clip)

    def group_node(tree):
        node = tree.nodes.new("CompositorNodeGroup")
        node.node_tree = group
        return node

    got = _composite(empty_scene, coords, group_node, tmp_path / "distort.exr")
    # Output pixel p holds the pinhole pixel q it came from; OpenCV must send q back to p.
    err, shift = _shifted_inverse_error(got, pixels, dist)
    print(f"redistort group: {err:.2e} px after a shift of {shift} px")
    assert err < 0.02, f"the redistort group is {err:.4f} px from OpenCV's model (shift {shift})"


def _shifted_inverse_error(got: np.ndarray, pixels: np.ndarray, dist, margin: int = 14) -> tuple[float, tuple]:
    """Like :func:`_best_integer_shift` for the Distort direction: output pixel p (after the
    compositor's whole-pixel shift) holds q with OpenCV's distort(q) = p."""
    mapped = opencv_distort(got, dist=dist, **K)[margin:-margin, margin:-margin]
    best = (np.inf, (0, 0))
    for sy in range(-8, 9):
        for sx in range(-8, 9):
            ref = pixels[margin + sy:HEIGHT - margin + sy, margin + sx:WIDTH - margin + sx]
            best = min(best, (float(np.abs(mapped - ref).max()), (sx, sy)))
    return best


def test_import_makes_the_clip_and_the_redistort_group(empty_scene, tmp_path):
    path, _, _ = distorted_solve(tmp_path / "lens")
    bundle = B.read_bundle(path)
    coll = _import(path)
    clip = bpy.data.movieclips[coll["parallax_movie_clip"]]
    assert bpy.path.abspath(clip.filepath) == str(bundle.frames[0])  # the footage as shot
    assert clip.frame_start == 1 and clip.frame_duration == bundle.frame_count
    cam = clip.tracking.camera
    blender_cam = empty_scene.camera.data
    assert cam.sensor_width == pytest.approx(blender_cam.sensor_width)
    empty_scene.frame_set(1)
    assert cam.focal_length == pytest.approx(blender_cam.lens, rel=1e-5)  # mm of the same sensor
    assert cam.distortion_model == "BROWN"
    assert (cam.brown_k1, cam.brown_k2, cam.brown_k3) == pytest.approx(DIST[0:2] + DIST[4:5])
    assert (cam.brown_p1, cam.brown_p2) == pytest.approx((DIST[3], -DIST[2]))
    assert tuple(cam.principal_point_pixels) == pytest.approx((K["cx"] + 0.5, HEIGHT - K["cy"] - 0.5), abs=1e-4)
    assert empty_scene.active_clip == clip
    group = bpy.data.node_groups[coll["parallax_redistort_group"]]
    node = next(n for n in group.nodes if n.bl_idname == "CompositorNodeMovieDistortion")
    assert node.clip == clip and node.inputs["Type"].default_value == "Distort"
    assert group.use_fake_user

    # Importing again replaces the clip and the group, never duplicates them.
    coll = _import(path)
    assert len(bpy.data.movieclips) == 1 and bpy.data.movieclips[0].name == coll["parallax_movie_clip"]
    assert sum(g.bl_idname == "CompositorNodeTree" for g in bpy.data.node_groups) == 1

    # Without the option, the re-import has no clip (the earlier one goes with the earlier import).
    coll = _import(path, movie_clip=False)
    assert "parallax_movie_clip" not in coll and len(bpy.data.movieclips) == 0
