"""Every table, importable from one place (alembic's env imports this to see them all)."""

from mirror.db.models.delivery import Delivery, DeliveryHost, DeliveryPace, DeliveryWorker
from mirror.db.models.federation import (
    Activity,
    ApObject,
    Follower,
    FollowerCopy,
    HostedBacklog,
    HostedCommunity,
    LocalActor,
    ReceivedActivity,
    RemoteActor,
)
from mirror.db.models.instance import AdminSession, InstanceRecord
from mirror.db.models.jobs import JobLease
from mirror.db.models.publication import BackfillRun, Publication
from mirror.db.models.reconstruction import (
    Alias,
    Author,
    Comment,
    Community,
    DumpFile,
    Fragment,
    Observation,
    Post,
)

__all__ = [
    "Activity",
    "AdminSession",
    "Alias",
    "ApObject",
    "Author",
    "BackfillRun",
    "Comment",
    "Community",
    "Delivery",
    "DeliveryHost",
    "DeliveryPace",
    "DeliveryWorker",
    "DumpFile",
    "Follower",
    "FollowerCopy",
    "Fragment",
    "HostedBacklog",
    "HostedCommunity",
    "InstanceRecord",
    "JobLease",
    "LocalActor",
    "Observation",
    "Post",
    "Publication",
    "ReceivedActivity",
    "RemoteActor",
]
