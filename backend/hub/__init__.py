"""Hub models: the catalogue of models Parallax can use beside its own, and trustworthy downloads.

- :mod:`backend.hub.catalogue`: what each model is (role, loader, pinned hub repo and revision,
  licence, size, VRAM) and :func:`~backend.hub.catalogue.resolve_model`, which turns a catalogue
  id or a local folder into a folder the loaders read.
- :mod:`backend.hub.download`: the huggingface_hub cache: download (byte progress, resume after
  an interruption, disk check up front, cancel, plain messages for each failure), state and remove.
- :mod:`backend.hub.cli`: ``python -m backend models list|info|download|remove``.
- ``generators.py`` / ``geometry.py``: the loaders that fill the generator and geometry roles
  (``backend/roles.py``) from a resolved folder.

Nothing here imports torch at import time; the server lists and downloads models without it.
"""
