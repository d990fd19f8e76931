"""Service limits and the job-directory retention policy (all configurable from the CLI)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional


@dataclass(frozen=True)
class Limits:
    """What the service accepts; anything beyond gets a 4xx with a human message."""

    max_upload_bytes: int = 4 * 1024**3  # one uploaded file
    max_frames: int = 3000  # frames of one video (or images of one job)
    min_video_frames: int = 2  # a camera needs motion: a 1-frame clip is refused
    max_side: int = 4096  # pixels, width or height (4K DCI)
    max_queue: int = 8  # queued jobs, not counting the running one
    max_inputs: int = 3000  # uploads named by one job

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Retention:
    """Finished jobs (and uploads no active job needs) are removed past either bound, never
    within their claim window.

    The claim window (issue 12, item 4): uploads were swept by count before the job that needed
    them was submitted (--keep-uploads 3 and 6 frames uploaded while another job ran: gone when
    submitted; the default of 100 broke every frame folder of more than 100 images). Now an
    upload younger than ``claim_s`` is never removed, nor one a queued or running job names, and
    a done job's bundle nobody has downloaded yet is kept as long. An hour covers uploading a
    3000-frame folder (the most one job takes) many times over, and a client that polls every
    0.25 s downloads a result within a second of it being done.
    """

    keep_jobs: int = 20  # most recent finished jobs kept
    keep_uploads: int = 3000  # most recent uploads kept: one job's worth (Limits.max_inputs)
    max_age_s: float = 3 * 24 * 3600.0
    claim_s: float = 3600.0  # see above

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class ServerConfig:
    data_dir: Path
    token: Optional[str]  # None only with --insecure-no-token
    limits: Limits = field(default_factory=Limits)
    retention: Retention = field(default_factory=Retention)
    device: str = "auto"  # auto | cpu | cuda[:n]
    # A cancelled job whose engine has not stopped this long after the request is ended with
    # its worker process. GLOMAP takes no cancellation token (engines/colmap.py), so a cancel
    # waits for global mapping to return: minutes on a long clip, where every other stage
    # stops within a progress report (0.25 s polls).
    cancel_grace_s: float = 10.0

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"
