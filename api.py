"""Scripting Parallax from Blender's Python console.

    >>> import parallax.api as px            # an extension: bl_ext.<repo>.parallax.api
    >>> coll = px.solve("/footage/clip.mp4", engine="colmap")   # or a folder of frames
    >>> coll.name
    'Parallax solve-1a2b3c'
    >>> px.tasks()                           # what the backend offers, from /v1/health
    {'solve': True, 'generate': False, ...}
    >>> px.solve("/footage/clip.mp4", wait=False)   # returns at once; progress in the panel
    >>> coll = px.reconstruct("/footage/street.mp4", stride=2)   # a dynamic scene, moving points flagged
    >>> coll = px.pair_pose("/set/a.jpg", "/set/b.jpg", scale=3.2)   # B's camera from A's, 3.2 m apart
    >>> coll["parallax_pair"]["reliability"]   # "high", "medium" or "low"; also d_total, agreement
    >>> px.cancel()

Every call uses the backend set in the add-on's preferences (started on first use). Blocking
calls (``wait=True``, the default) return the imported collection, or raise
``parallax.client.ParallaxError`` (or ValueError for bad input) with a message for the user.
"""

from __future__ import annotations

from typing import Optional

import bpy

from . import backend_link, client
from .operators import jobs
from .operators import pair_pose as pair_operator

__all__ = ["solve", "generate", "reconstruct", "pair_pose", "cancel", "tasks", "release_memory", "stop_backend"]


def _run(task: str, inputs, params: dict, wait: bool) -> Optional[bpy.types.Collection]:
    snap = jobs.start(bpy.context, task, inputs, params, wait=wait)
    if snap is None:
        return None
    if jobs.Job.error:
        raise snap.error if snap.error is not None else client.ParallaxError(jobs.Job.error)
    return bpy.data.collections[jobs.Job.collection]


def solve(source: str, engine: Optional[str] = None, *, stride: int = 1, max_frames: Optional[int] = None,
          options: Optional[dict] = None, wait: bool = True) -> Optional[bpy.types.Collection]:
    """Solve the camera of a clip (video file) or a folder of frames and import the result.

    ``engine``: a name from ``tasks(engines=True)`` (default: the preferences' engine);
    ``options``: engine keyword arguments (e.g. ``{"K": [[fx,0,cx],[0,fy,cy],[0,0,1]]}``).
    """
    params = {"engine": engine or backend_link.prefs().default_engine, "stride": stride}
    if max_frames:
        params["max_frames"] = max_frames
    if options:
        params["options"] = options
    return _run("solve", jobs.clip_inputs(source), params, wait)


def reconstruct(source: str, *, start: int = 0, stride: int = 1, max_frames: Optional[int] = None,
                window_stride: Optional[int] = None, wait: bool = True, **params) -> Optional[bpy.types.Collection]:
    """Reconstruct a dynamic scene from a clip (video file) or a folder of frames and import it:
    the plate, the animated camera and per-frame points whose moving ones are flagged
    ``dynamic`` (the import options on the scene's Parallax settings choose what shows).

    ``start``, ``stride``, ``max_frames`` pick the frames as for ``solve``; ``window_stride``:
    frames between the starts of the overlapping model windows (default: the backend's);
    ``params``: any further parameter of the backend's reconstruct task, passed as given
    (``chunk_frames``, ``iterations``, ``multimodal``: see ``px.tasks()``'s backend or
    backend/server/tasks/reconstruct.py).
    """
    params = jobs.reconstruct_params(start, stride, max_frames, window_stride, **params)
    return _run("reconstruct", jobs.clip_inputs(source, doing="reconstructing"), params, wait)


def pair_pose(image_a: str, image_b: str, *, videos: int = 4, frames: int = 16, steps: int = 25, subsets: int = 10,
              estimator: str = "unified", generator: str = "unified", scale: Optional[float] = None,
              intrinsics=None, wait: bool = True, **params) -> Optional[bpy.types.Collection]:
    """Find where photo ``image_b`` was taken from relative to ``image_a`` (InterPose: generated
    in-between videos, the most self-consistent answer) and import both cameras, their photos
    and the generated fly-through. The collection's ``parallax_pair`` holds the reliability
    grade, ``d_total``, ``agreement``, the rotation and the baseline; ``["notes"]`` what to know
    (identical images: the identity; images of different sizes: answered on centred squares).

    ``videos`` 0..32 (0: the two photos alone), ``frames`` 3..16 per video, ``steps`` 1..100,
    ``subsets`` 1..64 per video; ``estimator``: "unified" or "colmap"; ``generator``: "unified" or
    a first-last-frame model's catalogue id or folder (as the backend offers); ``scale``: the known
    distance between the two cameras (sets the scene's pair Scale; the result's baseline is
    1 without one); ``intrinsics``: fx, fy, cx, cy of both photos in pixels (default: estimated);
    ``params``: any further parameter of the backend's pair_pose task (``seed``, ``k``, ``guidance``).
    """
    inputs = pair_operator.pair_inputs(image_a, image_b)
    if intrinsics is not None:
        params["intrinsics"] = [float(x) for x in intrinsics]
    params = pair_operator.pair_params(videos, frames, steps, subsets, estimator, generator, **params)
    if scale is not None:
        bpy.context.scene.parallax.pair_scale = scale  # the import reads it, now or when the job ends
    return _run("pair_pose", inputs, params, wait)


def generate(prompt: str, frames: int = 16, seed: int = 0, *, steps: int = 25, guidance: float = 5.0,
             camera: bool = True, keyframes=(), model: Optional[str] = None, geometry: Optional[str] = None,
             wait: bool = True) -> Optional[bpy.types.Collection]:
    """Generate a shot (and its camera unless ``camera=False``) from ``prompt`` and import it.

    ``frames`` 2..16 (the model's window; a hub model rounds it to a count it makes, e.g. 4k+1),
    ``steps`` 1..100, ``guidance`` 0..20; ``keyframes``: up to two image paths kept as the first
    (and last) frame. ``model``: the generator, None or "parallax-tiny" for the built-in model
    (frames and cameras in one pass), else an installed catalogue id (Preferences > Parallax:
    models) or a model folder; ``geometry``: the model whose cameras another generator's shot
    gets (a catalogue id or folder; default parallax-tiny's V2C). The collection's
    ``parallax_summary`` says which model made the frames and which the cameras.
    """
    local = backend_link.prefs().backend_mode == "LOCAL"
    params = jobs.generate_params(prompt, frames, seed, steps, guidance, camera,
                                  model=jobs.generator_param(model or "", local=local),
                                  geometry=jobs.model_folder(geometry, local) if geometry else None)
    return _run("generate", [bpy.path.abspath(str(k)) for k in keyframes], params, wait)


def cancel() -> bool:
    """Cancel the running job; False if none runs."""
    return jobs.cancel()


def tasks(engines: bool = False) -> dict:
    """{task: available} (or {engine: available}) from the backend's /v1/health (starts it)."""
    backend_link.refresh_health(wait=True)
    if backend_link.Health.data is None:
        raise client.BackendUnavailable(backend_link.Health.error)
    key = "engines" if engines else "tasks"
    return {k: bool(v.get("available")) for k, v in backend_link.Health.data.get(key, {}).items()}


def release_memory() -> None:
    """Free the backend's loaded models and cached GPU memory."""
    backend_link.release_memory()


def stop_backend() -> None:
    """Stop the local backend process (the next job starts it again)."""
    backend_link.stop()
