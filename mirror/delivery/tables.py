"""The delivery queue's tables, as the Core handles its statements are built on."""

from __future__ import annotations

from mirror.db.base import table_of
from mirror.db.models import Activity, Delivery, DeliveryHost, DeliveryPace, DeliveryWorker

DELIVERIES = table_of(Delivery)
HOSTS = table_of(DeliveryHost)
ACTIVITIES = table_of(Activity)
PACES = table_of(DeliveryPace)
WORKERS = table_of(DeliveryWorker)
