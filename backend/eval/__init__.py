"""Evaluation of the camera engines and the unified model (``python -m backend eval``).

- ``v2c``: JOG3R Table 1 style V2C comparison of engines on the same clips (held-out synthetic
  clips, the Cycles domain-shift set, or real hololens-000 windows);
- ``t2vc``: T2V+C self-consistency (cameras from the denoising passes vs V2C on the generated
  frames, JOG3R sec. 4.3);
- ``contact-sheet``: a grid of T2V videos with their prompts.

Modules: ``common`` (errors, devices, options, JSON, hardware line), ``datasets`` (clip sources),
``v2c``, ``t2vc``, ``contact_sheet``, ``cli``.
"""
