"""Leases of background jobs that one process runs at a time, however many run."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from mirror.db.base import Base
from mirror.db.types import UTCDateTime


class JobLease(Base):
    """Who runs a job now, until when; an expired lease may be taken by anyone."""

    __tablename__ = "job_lease"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(sa.String(128))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
