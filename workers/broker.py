"""kombu's Redis transport, plus who holds each unacknowledged message and a lease that says they live.

Celery uses it through `broker_transport` (workers/celery_app.py). Each message a worker takes is
recorded with its consumer in the same transaction as kombu's own `unacked` entry; the worker's main
process renews its lease, and puts back what dead consumers held (fieldrelay/consumers.py explains the
states). kombu's visibility timeout still applies, to messages no consumer is recorded for.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import time
from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from kombu.transport.virtual import base as virtual
from kombu.utils.json import dumps

from fieldrelay.consumers import LEASE, OWNERS, Leases, consumer_id, restore_orphans
from fieldrelay.logs import OutageLog

log = logging.getLogger("fieldrelay.broker")
SWEEP = 2.0  # seconds between two looks for orphaned messages, in every worker


class LeaseKeeper(threading.Thread):
    """Renews this consumer's lease and puts back what dead consumers held; one per worker main process.

    A lease that lapsed while this process lived (Redis out of reach for longer than the lease) may
    already have had its messages handed to other workers: the process then exits at once, so nothing
    it runs overlaps their redelivery, and `fieldrelay worker` starts it again.
    """

    def __init__(self, client: redis.Redis, consumer: str, lease: float = LEASE, sweep: float = SWEEP) -> None:
        super().__init__(name="fieldrelay-lease", daemon=True)
        self.r, self.consumer, self.sweep = client, consumer, sweep
        self.leases = Leases(client, lease)
        self.interval = lease / 5
        self.pid = os.getpid()
        self.stopping = threading.Event()
        self.outage = OutageLog(
            log, "cannot renew this worker's lease, Redis is unreachable", "renewing this worker's lease again"
        )

    def begin(self) -> LeaseKeeper:
        """Take the lease before the first message is taken, then keep it from a thread."""
        self.leases.renew(self.consumer)
        log.info("worker lease taken", extra={"consumer": self.consumer, "lease_seconds": self.leases.lease})
        atexit.register(self.end)
        self.start()
        return self

    def run(self) -> None:
        swept = 0.0
        while not self.stopping.wait(self.interval):
            try:
                if not self.leases.renew(self.consumer):
                    self.lapsed()
                if time.monotonic() - swept >= self.sweep:
                    swept = time.monotonic()
                    restore_orphans(self.r, by="worker", leases=self.leases)
            except redis.RedisError as exc:
                self.outage.failed(exc)
                continue
            self.outage.recovered()

    def lapsed(self) -> None:
        log.error(
            "this worker's lease lapsed (Redis unreachable for over %.0f s); other workers may be running what "
            "it held, so it stops now and its supervisor starts it again",
            self.leases.lease,
            extra={"consumer": self.consumer},
        )
        logging.shutdown()
        os._exit(75)  # EX_TEMPFAIL: nothing may run on, not even atexit handlers that wait

    def end(self) -> None:
        """A clean exit: give up the lease, so anything still recorded as ours is put back at once."""
        if os.getpid() != self.pid or self.stopping.is_set():
            return
        self.stopping.set()
        with contextlib.suppress(redis.RedisError):  # otherwise it lapses by itself
            self.leases.release(self.consumer)


class _Process:
    """This process's consumer and its keeper, made when it first consumes (never in beat or a producer)."""

    lock = threading.Lock()
    consumer: str | None = None
    keeper: LeaseKeeper | None = None
    pid: int | None = None


def process_consumer(channel: Any) -> str:
    """This process's consumer id, with its lease taken and kept from then on (a kombu Redis `channel`)."""
    with _Process.lock:
        if _Process.pid != os.getpid() or _Process.consumer is None:
            params = channel._connparams(asynchronous=False)
            # kombu waits on its sockets forever by default; the keeper must notice a dead Redis.
            params.update(socket_timeout=5.0)
            if "socket_connect_timeout" in params:
                params["socket_connect_timeout"] = 5.0
            client = redis.Redis(connection_pool=redis.ConnectionPool(**params))
            _Process.pid, _Process.consumer = os.getpid(), consumer_id()
            _Process.keeper = LeaseKeeper(client, _Process.consumer).begin()
        return _Process.consumer


class QoS(kombu_redis.QoS):
    """kombu's ack emulation, with each delivery's consumer recorded beside it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.consumer = process_consumer(self.channel)

    def append(self, message: Any, delivery_tag: str) -> None:
        # kombu's QoS.append, with the owner written in the same MULTI/EXEC.
        delivery = message.delivery_info
        exchange, routing_key = delivery["exchange"], delivery["routing_key"]
        with self.pipe_or_acquire() as pipe:
            pipe.zadd(self.unacked_index_key, {delivery_tag: time.time()}).hset(
                self.unacked_key, delivery_tag, dumps([message._raw, exchange, routing_key])
            ).hset(OWNERS, delivery_tag, self.consumer).execute()
            virtual.QoS.append(self, message, delivery_tag)

    def _remove_from_indices(self, delivery_tag: str, pipe: Any = None) -> Any:
        # Used by ack, reject and restore_by_tag alike. (The stubs leave out kombu's private names.)
        kombu_qos: Any = super()
        return kombu_qos._remove_from_indices(delivery_tag, pipe).hdel(OWNERS, delivery_tag)

    def restore_visible(self, start: int = 0, num: int = 10, interval: int = 10) -> None:
        """kombu's visibility-timeout sweep, for messages no consumer is recorded for (the lease covers the rest)."""
        qos: Any = self  # kombu's private names are not in its stubs
        qos._vrestore_count += 1
        if (qos._vrestore_count - 1) % (interval or 1):
            return
        with qos.channel.conn_or_acquire() as client:
            ceil = time.time() - self.visibility_timeout
            try:
                with kombu_redis.Mutex(client, self.unacked_mutex_key, self.unacked_mutex_expire):
                    visible = client.zrange(
                        self.unacked_index_key, ceil, 0, desc=True, byscore=True, offset=num and start, num=num
                    )
                    owned = client.hmget(OWNERS, visible) if visible else []
                    for tag, owner in zip(visible or [], owned, strict=True):
                        if owner is None:
                            self.restore_by_tag(tag, client)
            except kombu_redis.MutexHeld:
                pass


class Channel(kombu_redis.Channel):
    QoS = QoS


class Transport(kombu_redis.Transport):
    """`broker_transport = "workers.broker:Transport"`: kombu's Redis transport with consumer leases."""

    Channel = Channel
