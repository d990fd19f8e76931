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
    """Finished jobs (and uploads no active job needs) are removed past either bound."""

    keep_jobs: int = 20  # most recent finished jobs kept
    keep_uploads: int = 100  # most recent uploads kept
    max_age_s: float = 3 * 24 * 3600.0

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class ServerConfig:
    data_dir: Path
    token: Optional[str]  # None only with --insecure-no-token
    limits: Limits = field(default_factory=Limits)
    retention: Retention = field(default_factory=Retention)
    device: str = "auto"  # auto | cpu | cuda[:n]

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"
