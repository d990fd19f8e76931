"""Synthetic 4D data engine: scene descriptions (numpy), a batched torch ray caster, and a
Blender Cycles exporter of the same scenes (see README.md here).

Import the parts you need. numpy only (Blender can import them): ``splits`` (seeds, held-out
split), ``scene`` (the scene sampler) with ``vectors``, ``materials``, ``primitives``,
``camera_paths``, and ``captions``, ``packing``. torch: ``synth`` (the clip API) with
``render``, ``raycast``, ``shading``, ``textures``.
"""
