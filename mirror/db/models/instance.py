"""What the database knows about the service it belongs to, and the admin page's sessions."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from mirror.db.base import Base
from mirror.db.types import UTCDateTime

#: The one row of the instance table.
INSTANCE_ROW = 1


class InstanceRecord(Base):
    """The base URL this database was initialised with (one row).

    Every id stored here is built on it, so a config naming another base URL
    is refused rather than served with (issue 19, item 12).
    """

    __tablename__ = "instance"
    __table_args__ = (sa.CheckConstraint(f"id = {INSTANCE_ROW}", name="one_row"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    base_url: Mapped[str] = mapped_column(sa.String(2048))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AdminSession(Base):
    """A signed-in admin page session; signing out deletes it.

    Only a keyed digest of the cookie's secret is stored (keyed with the admin
    token, so changing the token ends every session), never the secret.
    """

    __tablename__ = "admin_session"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    digest: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
