"""Synthetic 4D data engine: scene descriptions (numpy), a batched torch ray caster, and a
Blender Cycles exporter of the same scenes (see README.md here).

Import the parts you need: ``backend.data.scene`` needs numpy only (Blender can import it);
``backend.data.synth`` needs torch.
"""
