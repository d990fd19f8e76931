"""The HTTP service the Blender add-on talks to (DESIGN section 4).

``python -m backend serve`` runs a FastAPI app under uvicorn, bound to 127.0.0.1 by default.
Every request carries the bearer token that the add-on generated and handed over in the
environment variable ``PARALLAX_TOKEN``. Inputs are uploaded (and validated) first, then a job
names a task, its upload ids and its parameters; one worker thread hands the jobs in order to
an engine worker process, which runs them and reports their progress; the result is a bundle
zip (``backend.bundle``).

Modules, one job each:

- ``config``    limits and the job-directory retention policy
- ``errors``    the JSON error type every endpoint raises
- ``uploads``   receiving and validating uploads (PyAV / Pillow probes)
- ``tasks``     the task registry (what a job can run) and the ``solve`` task
- ``jobs``      the job queue, its worker thread, progress, cancel, ETA, recovery after a crash
- ``worker``    the engine worker process that runs the jobs (a native crash fails one job only)
- ``storage``   the private data folder, private files, disk-full errors, path scrubbing
- ``retention`` removal of old job and upload directories (never within their claim window)
- ``app``       the FastAPI application (routes, auth, error handlers)
- ``cli``       ``python -m backend serve``
"""
