"""The domain-shift set: the engine's scene descriptions rendered by Blender Cycles (bpy).

    .venv-blender/bin/python -m tools.cycles_set --count 32 --out DIR \\
        [--frames 16 --height 128 --width 128 --samples 32 --textures DIR --seed 0 --preview PNG]

Same seeds, same scenes as ``python -m backend synth --split heldout`` (scene descriptions come
from ``backend.data.scene``, plain numpy), but rendered with a path tracer: anti-aliasing,
soft shadows, bounce light, a glossy-ish principled BSDF, tessellated meshes and filtered
image textures. Each clip is written in the same bundle format, with the same ``gt/`` files.
The ground truth comes from Cycles itself (a second, one-sample render per frame at the pixel
centres with an emission override that outputs z-depth and object index), so depth, points and
dynamic mask describe the meshes Cycles drew. This module never imports torch. It runs in Blender's Python, so it lives outside the backend
(which never imports bpy) and reads the backend's numpy-only scene modules and bundle writer.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from backend.bundle import Bundle, CameraFrame, DepthFrame, PointFrame, encode_png, write_bundle
from backend.data.captions import make_caption
from backend.data.materials import list_textures
from backend.data.scene import SceneSpec, sample_scene
from backend.data.splits import heldout_seeds

# Cycles radiometry vs the torch renderer's (pixel = albedo * I * cos / d^2 for points,
# albedo * I * cos for suns, albedo * ambient): Lambertian BSDF = albedo / pi, point power
# P = 4 pi I -> P = 4 pi^2 I; sun strength S -> S = pi I; a uniform world colour C -> albedo * C.
POINT_POWER = 4 * math.pi ** 2
SUN_STRENGTH = math.pi


def _bpy():
    import bpy  # noqa: PLC0415  (only inside Blender's Python)

    return bpy


# ----------------------------------------------------------------------------------------
# Scene construction


def _reset(bpy, spec: SceneSpec, samples: int, device: str = "CPU"):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    if device != "CPU":  # CUDA / OPTIX / HIP / METAL / ONEAPI when Blender finds such a device
        prefs = bpy.context.preferences.addons["cycles"].preferences
        prefs.compute_device_type = device
        prefs.get_devices()
        for d in prefs.devices:
            d.use = d.type == device
        if any(d.use for d in prefs.devices):
            scene.cycles.device = "GPU"
    scene.cycles.samples = samples
    scene.cycles.use_adaptive_sampling = True
    scene.cycles.adaptive_threshold = 0.02
    # No denoiser in the bpy wheel: clamp indirect fireflies and blur glossy bounces instead.
    scene.cycles.sample_clamp_indirect = 2.0
    scene.cycles.blur_glossy = 1.0
    scene.cycles.use_denoising = False
    scene.cycles.max_bounces = 3
    scene.cycles.diffuse_bounces = 1
    scene.cycles.glossy_bounces = 1
    scene.cycles.transparent_max_bounces = 0
    scene.render.resolution_x = spec.width
    scene.render.resolution_y = spec.height
    scene.render.resolution_percentage = 100
    scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
    scene.render.image_settings.file_format = "OPEN_EXR"
    scene.render.image_settings.color_depth = "32"
    scene.render.use_persistent_data = True
    scene.cycles.seed = spec.seed % (1 << 31)
    return scene


def _mesh(bpy, kind: str, size: np.ndarray):
    """A Blender mesh object for a primitive kind in its object frame (z = the kind's axis)."""
    r = float(size[0])
    if kind == "box":
        bpy.ops.mesh.primitive_cube_add(size=2.0)
        obj = bpy.context.active_object
        obj.data.transform(_scale_matrix(size))
        return obj
    if kind == "sphere":
        bpy.ops.mesh.primitive_uv_sphere_add(segments=64, ring_count=32, radius=r)
    elif kind == "cylinder":
        bpy.ops.mesh.primitive_cylinder_add(vertices=64, radius=r, depth=2 * float(size[1]))
    elif kind == "cone":  # radius1 at the bottom (z = -h), apex at the top
        bpy.ops.mesh.primitive_cone_add(vertices=64, radius1=r, radius2=0.0, depth=2 * float(size[1]))
    elif kind == "capsule":  # a UV sphere with an odd ring count, split at the equator and stretched
        bpy.ops.mesh.primitive_uv_sphere_add(segments=48, ring_count=31, radius=r)
        h = float(size[1])
        for v in bpy.context.active_object.data.vertices:
            v.co.z += h if v.co.z > 0 else -h
    elif kind == "torus":
        bpy.ops.mesh.primitive_torus_add(major_radius=r, minor_radius=float(size[1]), major_segments=72,
                                         minor_segments=24)
    obj = bpy.context.active_object
    bpy.ops.object.shade_smooth_by_angle(angle=math.radians(40))
    return obj


def _scale_matrix(s):
    from mathutils import Matrix  # noqa: PLC0415

    return Matrix.Diagonal((float(s[0]), float(s[1]), float(s[2]), 1.0))


def _matrix(R: np.ndarray, t: np.ndarray):
    from mathutils import Matrix  # noqa: PLC0415

    m = np.eye(4)
    m[:3, :3], m[:3, 3] = R, t
    return Matrix(m.tolist())


def _plane(bpy, name: str, corners: list):
    """A quad from 4 world corners, with a UV map in metres (for bricks)."""
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata([tuple(map(float, c)) for c in corners], [], [(0, 1, 2, 3)])
    # UVs in metres along the quad's two edges, so bricks lie flat on every wall
    c = np.asarray(corners, float)
    e1, e2 = c[1] - c[0], c[3] - c[0]
    e1n, e2n = e1 / np.linalg.norm(e1), e2 / np.linalg.norm(e2)
    uv = mesh.uv_layers.new(name="UVMap")
    for loop in mesh.loops:
        q = c[loop.vertex_index] - c[0]
        uv.data[loop.index].uv = (float(q @ e1n), float(q @ e2n))
    mesh.update()
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.collection.objects.link(obj)
    return obj


def _material(bpy, name: str, m, rng: np.random.Generator, uv_scale: float = 1.0):
    """A node material reproducing a materials.Material's pattern (in Blender's own textures)."""
    mat = bpy.data.materials.new(name)
    if bpy.app.version < (5, 0, 0):  # node trees are always on from Blender 5
        mat.use_nodes = True
    nt = mat.node_tree
    nodes, links = nt.nodes, nt.links
    bsdf = nodes.get("Principled BSDF")
    bsdf.inputs["Roughness"].default_value = float(rng.uniform(0.45, 0.9))
    if "Specular IOR Level" in bsdf.inputs:
        bsdf.inputs["Specular IOR Level"].default_value = float(rng.uniform(0.1, 0.5))
    lin = lambda c: (*(np.asarray(c, float) ** 2.2).tolist(), 1.0)  # noqa: E731  display -> linear
    coord = nodes.new("ShaderNodeTexCoord")
    vec = coord.outputs["Object"]
    # surfaces at integer cell coordinates never sit on an edge: the same +0.25 cell offset as torch
    off = nodes.new("ShaderNodeVectorMath")
    off.operation = "ADD"
    links.new(vec, off.inputs[0])
    off.inputs[1].default_value = (0.25 * m.scale,) * 3
    vec = off.outputs[0]

    def mix(fac_socket, a, b):
        node = nodes.new("ShaderNodeMix")
        node.data_type = "RGBA"
        links.new(fac_socket, node.inputs["Factor"])
        node.inputs[6].default_value = a
        node.inputs[7].default_value = b
        return node.outputs[2]

    def math_node(op, a, b=None):
        node = nodes.new("ShaderNodeMath")
        node.operation = op
        if hasattr(a, "is_linked") or hasattr(a, "links"):
            links.new(a, node.inputs[0])
        else:
            node.inputs[0].default_value = a
        if b is not None:
            if hasattr(b, "links"):
                links.new(b, node.inputs[1])
            else:
                node.inputs[1].default_value = b
        return node.outputs[0]

    def along_axis():
        dot = nodes.new("ShaderNodeVectorMath")
        dot.operation = "DOT_PRODUCT"
        links.new(vec, dot.inputs[0])
        dot.inputs[1].default_value = tuple(map(float, m.axis))
        return dot.outputs["Value"]

    a, b = lin(m.color_a), lin(m.color_b)
    if m.pattern == "solid":
        color = None
        bsdf.inputs["Base Color"].default_value = a
    elif m.pattern == "checker":
        tex = nodes.new("ShaderNodeTexChecker")
        links.new(vec, tex.inputs["Vector"])
        tex.inputs["Color1"].default_value = b
        tex.inputs["Color2"].default_value = a
        tex.inputs["Scale"].default_value = 1.0 / m.scale
        color = tex.outputs["Color"]
    elif m.pattern == "stripes":
        fr = math_node("FRACT", math_node("DIVIDE", along_axis(), float(m.scale)))
        color = mix(math_node("LESS_THAN", fr, 0.5), a, b)
    elif m.pattern == "gradient":
        g = math_node("ADD", math_node("MULTIPLY", along_axis(), 0.2 / m.scale), 0.5)
        g = math_node("MINIMUM", math_node("MAXIMUM", g, 0.0), 1.0)
        color = mix(g, a, b)
    elif m.pattern == "noise":
        tex = nodes.new("ShaderNodeTexNoise")
        links.new(vec, tex.inputs["Vector"])
        tex.inputs["Scale"].default_value = 1.0 / m.scale
        color = mix(tex.outputs["Fac"], b, a)
    elif m.pattern == "bricks":
        tex = nodes.new("ShaderNodeTexBrick")
        uv = nodes.new("ShaderNodeTexCoord")
        sc = nodes.new("ShaderNodeVectorMath")
        sc.operation = "SCALE"
        links.new(uv.outputs["UV"], sc.inputs[0])
        sc.inputs["Scale"].default_value = uv_scale
        links.new(sc.outputs[0], tex.inputs["Vector"])
        tex.inputs["Color1"].default_value = a
        tex.inputs["Color2"].default_value = tuple(0.8 * c for c in a[:3]) + (1.0,)
        tex.inputs["Mortar"].default_value = b
        tex.inputs["Scale"].default_value = 1.0 / m.scale
        color = tex.outputs["Color"]
    else:  # photo: box projection of object coordinates, rotated/scaled/offset, real filtering
        img = bpy.data.images.load(m.photo, check_existing=True)
        tex = nodes.new("ShaderNodeTexImage")
        tex.image = img
        tex.projection = "BOX"
        tex.projection_blend = 0.15
        tex.interpolation = "Cubic"
        mp = nodes.new("ShaderNodeMapping")
        links.new(coord.outputs["Object"], mp.inputs["Vector"])
        mp.inputs["Scale"].default_value = (1.0 / m.scale,) * 3
        mp.inputs["Rotation"].default_value = (0.0, 0.0, float(m.rotation))
        mp.inputs["Location"].default_value = (float(m.offset[0]), float(m.offset[1]), 0.0)
        links.new(mp.outputs["Vector"], tex.inputs["Vector"])
        gain = nodes.new("ShaderNodeMix")
        gain.data_type = "RGBA"
        gain.blend_type = "MULTIPLY"
        gain.inputs["Factor"].default_value = 1.0
        links.new(tex.outputs["Color"], gain.inputs[6])
        gain.inputs[7].default_value = (*map(float, m.gain), 1.0)
        color = gain.outputs[2]
    if color is not None:
        links.new(color, bsdf.inputs["Base Color"])
    return mat


def _world(bpy, spec: SceneSpec):
    """Sky gradient for camera rays; the ambient colour lights everything else."""
    world = bpy.data.worlds.new("world")
    bpy.context.scene.world = world
    if bpy.app.version < (5, 0, 0):
        world.use_nodes = True
    nt = world.node_tree
    nodes, links = nt.nodes, nt.links
    bg = nodes.get("Background")
    coord = nodes.new("ShaderNodeTexCoord")
    sep = nodes.new("ShaderNodeSeparateXYZ")
    links.new(coord.outputs["Generated"], sep.inputs[0])
    up = nodes.new("ShaderNodeMath")
    up.operation = "SQRT"
    clamp = nodes.new("ShaderNodeClamp")
    links.new(sep.outputs["Z"], clamp.inputs["Value"])
    links.new(clamp.outputs[0], up.inputs[0])
    sky = nodes.new("ShaderNodeMix")
    sky.data_type = "RGBA"
    links.new(up.outputs[0], sky.inputs["Factor"])
    sky.inputs[6].default_value = (*(np.asarray(spec.sky_horizon) ** 2.2).tolist(), 1.0)
    sky.inputs[7].default_value = (*(np.asarray(spec.sky_top) ** 2.2).tolist(), 1.0)
    paths = nodes.new("ShaderNodeLightPath")
    pick = nodes.new("ShaderNodeMix")
    pick.data_type = "RGBA"
    links.new(paths.outputs["Is Camera Ray"], pick.inputs["Factor"])
    pick.inputs[6].default_value = (*map(float, spec.ambient), 1.0)
    links.new(sky.outputs[2], pick.inputs[7])
    links.new(pick.outputs[2], bg.inputs["Color"])
    bg.inputs["Strength"].default_value = 1.0


def build_scene(bpy, spec: SceneSpec, samples: int = 32, device: str = "CPU"):
    """Create the Blender scene for ``spec``; returns (scene, camera, list of primitive objects)."""
    scene = _reset(bpy, spec, samples, device)
    rng = np.random.default_rng([spec.seed, 0xB1E])
    _world(bpy, spec)
    objs = []
    for i, p in enumerate(spec.prims):
        obj = _mesh(bpy, p.kind, p.size)
        obj.name = f"prim{i:02d}_{p.kind}"
        obj.data.materials.append(_material(bpy, f"m{i}", p.material, rng, uv_scale=2 * p.radius))
        obj.pass_index = i + 1
        objs.append(obj)
    if spec.setting == "room":
        w, d, h = float(spec.room_size[0]) / 2, float(spec.room_size[1]) / 2, float(spec.room_size[2])
        floor = _plane(bpy, "floor", [(-w, -d, 0), (w, -d, 0), (w, d, 0), (-w, d, 0)])
        walls = [_plane(bpy, f"wall{k}", c) for k, c in enumerate([
            [(-w, -d, 0), (w, -d, 0), (w, -d, h), (-w, -d, h)], [(w, -d, 0), (w, d, 0), (w, d, h), (w, -d, h)],
            [(w, d, 0), (-w, d, 0), (-w, d, h), (w, d, h)], [(-w, d, 0), (-w, -d, 0), (-w, -d, h), (-w, d, h)]])]
        wall_mat = _material(bpy, "walls", spec.walls, rng)
        for obj in walls:
            obj.data.materials.append(wall_mat)
        if spec.ceiling:
            ceil = _plane(bpy, "ceiling", [(-w, -d, h), (-w, d, h), (w, d, h), (w, -d, h)])
            ceil.data.materials.append(_material(bpy, "ceiling", spec.ceiling_material, rng))
    else:
        bpy.ops.mesh.primitive_circle_add(vertices=128, radius=float(spec.room_size[0]), fill_type="NGON")
        floor = bpy.context.active_object
    floor.data.materials.append(_material(bpy, "floor", spec.floor, rng))
    for k, light in enumerate(spec.lights):
        if light.kind == "point":
            ld = bpy.data.lights.new(f"light{k}", "POINT")
            ld.energy = float(np.mean(light.color)) * POINT_POWER
            ld.shadow_soft_size = 0.08
            lo = bpy.data.objects.new(f"light{k}", ld)
            lo.location = tuple(map(float, light.vector))
        else:
            ld = bpy.data.lights.new(f"light{k}", "SUN")
            ld.energy = float(np.mean(light.color)) * SUN_STRENGTH
            ld.angle = math.radians(1.5)
            lo = bpy.data.objects.new(f"light{k}", ld)
            # a sun shines down its local -z: rotate -z onto the light's travel direction
            from mathutils import Vector  # noqa: PLC0415

            lo.rotation_euler = Vector(tuple(-light.vector)).to_track_quat("Z", "Y").to_euler()
        ld.color = tuple(map(float, np.asarray(light.color) / max(np.mean(light.color), 1e-9)))
        bpy.context.collection.objects.link(lo)
    cam_data = bpy.data.cameras.new("camera")
    cam = bpy.data.objects.new("camera", cam_data)
    bpy.context.collection.objects.link(cam)
    scene.camera = cam
    set_intrinsics(cam_data, spec.K, spec.width, spec.height)
    cam_data.clip_start, cam_data.clip_end = 0.01, 1000.0
    return scene, cam, objs


def set_intrinsics(cam_data, K: np.ndarray, width: int, height: int) -> None:
    """OpenCV K (pixel centres at integers) -> Blender lens, sensor and shift (square pixels)."""
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if abs(fx - fy) > 1e-6 * fx:
        raise ValueError("the Cycles set renders square pixels only (fx == fy)")
    size = max(width, height)
    cam_data.sensor_fit = "AUTO"
    cam_data.sensor_width = 36.0
    cam_data.lens = float(fx * 36.0 / size)
    cam_data.shift_x = float(((width - 1) / 2 - cx) / size)
    cam_data.shift_y = float((cy - (height - 1) / 2) / size)


def _gt_material(bpy):
    """Emission override: R = camera z-depth, G = object pass index (0 for the room)."""
    mat = bpy.data.materials.new("gt_override")
    if bpy.app.version < (5, 0, 0):
        mat.use_nodes = True
    nt = mat.node_tree
    nt.nodes.clear()
    cam = nt.nodes.new("ShaderNodeCameraData")
    info = nt.nodes.new("ShaderNodeObjectInfo")
    comb = nt.nodes.new("ShaderNodeCombineXYZ")
    nt.links.new(cam.outputs["View Z Depth"], comb.inputs["X"])
    nt.links.new(info.outputs["Object Index"], comb.inputs["Y"])
    em = nt.nodes.new("ShaderNodeEmission")
    nt.links.new(comb.outputs[0], em.inputs["Color"])
    em.inputs["Strength"].default_value = 1.0
    out = nt.nodes.new("ShaderNodeOutputMaterial")
    nt.links.new(em.outputs[0], out.inputs["Surface"])
    return mat


def _read_exr(bpy, path: str, h: int, w: int) -> np.ndarray:
    img = bpy.data.images.load(path)
    img.colorspace_settings.name = "Non-Color"
    px = np.empty(h * w * 4, np.float32)
    img.pixels.foreach_get(px)
    bpy.data.images.remove(img)
    return px.reshape(h, w, 4)[::-1]  # Blender rows go bottom-up


def render_spec(spec: SceneSpec, samples: int = 32, workdir: str | None = None, device: str = "CPU") -> dict:
    """Render one scene with Cycles: rgb (F,H,W,3) uint8, depth (F,H,W), object_ids (F,H,W)."""
    bpy = _bpy()
    scene, cam, objs = build_scene(bpy, spec, samples, device)
    flip = np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV camera axes -> Blender's
    F, H, W = spec.frames, spec.height, spec.width
    rgb = np.zeros((F, H, W, 3), np.uint8)
    depth = np.full((F, H, W), np.inf, np.float32)
    ids = np.full((F, H, W), -2, np.int16)
    gt_mat = _gt_material(bpy)
    layer = scene.view_layers[0]
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for f in range(F):
            cam.matrix_world = _matrix(*_split(spec.c2w[f] @ flip))
            for obj, p in zip(objs, spec.prims):
                obj.matrix_world = _matrix(p.rot[f], p.pos[f])
            # beauty: anti-aliased path tracing
            layer.material_override = None
            scene.cycles.samples = samples
            scene.render.filter_size = 1.5
            scene.render.film_transparent = False
            scene.render.filepath = os.path.join(tmp, f"rgb{f}.exr")
            bpy.ops.render.render(write_still=True)
            lin = _read_exr(bpy, scene.render.filepath, H, W)[..., :3]
            rgb[f] = np.round(np.clip(lin, 0, 1) ** (1 / 2.2) * 255).astype(np.uint8)
            # ground truth: one sample at each pixel centre, emission override
            layer.material_override = gt_mat
            scene.cycles.samples = 1
            scene.render.filter_size = 0.01
            scene.render.film_transparent = True
            scene.render.filepath = os.path.join(tmp, f"gt{f}.exr")
            bpy.ops.render.render(write_still=True)
            gt = _read_exr(bpy, scene.render.filepath, H, W)
            surf = gt[..., 3] > 0.5
            depth[f][surf] = gt[..., 0][surf]
            idx = np.round(gt[..., 1]).astype(np.int16) - 1  # pass index i+1 -> primitive i; room 0 -> -1
            ids[f][surf] = idx[surf]
    return {"rgb": rgb, "depth": depth, "object_ids": ids}


def _split(m: np.ndarray):
    return m[:3, :3], m[:3, 3]


# ----------------------------------------------------------------------------------------
# Ground truth arrays and bundles (numpy only)


def ground_truth(spec: SceneSpec, depth: np.ndarray, ids: np.ndarray) -> dict:
    """Points, rays, c2w, K and dynamic mask in the frame-0 camera from Cycles' z-depth."""
    F, H, W = depth.shape
    c2w = np.linalg.inv(spec.c2w[0]) @ spec.c2w
    K = np.repeat(spec.K[None], F, 0)
    v, u = np.meshgrid(np.arange(H, dtype=np.float64), np.arange(W, dtype=np.float64), indexing="ij")
    pix = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(spec.K).T  # (H, W, 3), z = 1
    d_cam = pix / np.linalg.norm(pix, axis=-1, keepdims=True)
    points = np.full((F, H, W, 3), np.nan, np.float32)
    rays = np.zeros((F, H, W, 6), np.float32)
    for f in range(F):
        R, c = c2w[f, :3, :3], c2w[f, :3, 3]
        ok = np.isfinite(depth[f])
        points[f][ok] = (pix[ok] * depth[f][ok, None]) @ R.T + c
        d = d_cam @ R.T
        rays[f, ..., :3], rays[f, ..., 3:] = d, np.cross(np.broadcast_to(c, d.shape), d)
    moving = np.array([p.moving for p in spec.prims] + [False], bool)  # index -1 -> room
    dyn = (ids >= 0) & moving[np.where(ids >= 0, ids, -1)]
    return {"depth": depth, "points": points, "rays": rays, "c2w": c2w.astype(np.float32),
            "K": K.astype(np.float32), "dynamic_mask": dyn, "object_ids": ids}


def to_bundle(spec: SceneSpec, rgb: np.ndarray, gt: dict, caption: str, fps: float = 24.0) -> Bundle:
    F, H, W = gt["depth"].shape
    c2w = np.linalg.inv(spec.c2w[0]) @ spec.c2w
    K = spec.K
    cams = [CameraFrame(index=f, c2w=c2w[f], fx=float(K[0, 0]), fy=float(K[1, 1]), cx=float(K[0, 2]),
                        cy=float(K[1, 2])) for f in range(F)]
    points, depths = [], []
    for f in range(F):
        ok = np.isfinite(gt["depth"][f])
        points.append(PointFrame(gt["points"][f][ok], rgb[f][ok], np.ones(int(ok.sum()), np.float16)))
        depths.append(DepthFrame(gt["depth"][f], ok.astype(np.float16)))
    return Bundle(task="ground_truth", width=W, height=H, frame_count=F, fps=fps, engine="synthetic-cycles",
                  model_id="parallax-synth-cycles", frames=list(rgb), cameras=cams, points=points, depth=depths,
                  source={"seed": spec.seed, "caption": caption, "motion": spec.motion, "renderer": "cycles"})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m backend.data.cycles_set", description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=32)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--height", type=int, default=128)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--samples", type=int, default=32, help="Cycles samples per pixel (adaptive)")
    p.add_argument("--device", default="CPU", help="CPU, or a Cycles GPU backend: CUDA, OPTIX, HIP, METAL, ONEAPI")
    p.add_argument("--textures", type=Path, help="photo texture folder (none: procedural patterns only)")
    p.add_argument("--seed", type=int, default=0, help="first held-out seed offset (as synth --split heldout)")
    p.add_argument("--fps", type=float, default=24.0)
    p.add_argument("--preview", type=Path, help="write a contact sheet PNG here")
    p.add_argument("--preview-count", type=int, default=8, help="clips (rows) on the contact sheet")
    a = p.parse_args(argv)
    from backend.data.cli import contact_sheet  # noqa: PLC0415  (numpy only)

    tex = list_textures(a.textures) if a.textures else []
    rows = []
    t0 = time.perf_counter()
    for seed in heldout_seeds(a.count, start=a.seed):
        spec = sample_scene(seed, a.frames, a.height, a.width, tex)
        out = render_spec(spec, a.samples, device=a.device)
        counts = np.bincount(out["object_ids"].ravel().astype(np.int64) + 2, minlength=len(spec.prims) + 2)[2:]
        caption = make_caption(spec, counts)
        gt = ground_truth(spec, out["depth"], out["object_ids"])
        d = write_bundle(to_bundle(spec, out["rgb"], gt, caption, a.fps), a.out / f"clip_{seed}")
        (d / "gt").mkdir(exist_ok=True)
        np.savez_compressed(d / "gt" / "ground_truth.npz", **gt)
        (d / "gt" / "scene.json").write_text(json.dumps({"seed": seed, "caption": caption, "motion": spec.motion,
                                                         "split": "heldout", "renderer": "cycles"}, indent=1))
        print(f"{seed}: [{spec.motion}] {caption}  ({time.perf_counter() - t0:.0f} s)", flush=True)
        if len(rows) < a.preview_count:
            rows.append(out["rgb"])
            if a.preview and (len(rows) == a.preview_count or seed == heldout_seeds(a.count, start=a.seed)[-1]):
                a.preview.parent.mkdir(parents=True, exist_ok=True)
                a.preview.write_bytes(encode_png(contact_sheet(np.stack(rows))))
                print(f"contact sheet: {a.preview}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
