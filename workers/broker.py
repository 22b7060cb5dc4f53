"""kombu's Redis transport, plus who holds each unacknowledged message and a lease that says they live.

Celery uses it through `broker_transport` (workers/celery_app.py). A worker takes a message off its
queue and records it in kombu's `unacked` hash, with itself as its owner, in one Lua script: kombu's own
BRPOP takes it first and records it in a second round trip, and a process killed (or a Redis stopped)
in between lost the message for good. While its queues are empty, a worker waits with
`BLMOVE queue queue RIGHT RIGHT`, which wakes on a message without taking it, one queue after another.

The worker's main process renews its lease, and puts back what dead consumers held (fieldrelay/consumers.py
explains the states). kombu's visibility timeout still applies, to messages no consumer is recorded for.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from queue import Empty
from typing import Any

import redis
from kombu.transport import redis as kombu_redis
from kombu.transport.virtual import base as virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads

from fieldrelay.consumers import (
    LEASE,
    OWNERS,
    UNACKED,
    UNACKED_INDEX,
    Leases,
    consumer_id,
    restore_orphans,
    restore_stale,
)
from fieldrelay.logs import OutageLog

log = logging.getLogger("fieldrelay.broker")
SWEEP = 2.0  # seconds between two looks for orphaned messages, in every worker
# How long a message of a closed channel of this worker stays put: Celery cancels the tasks it ran when
# the connection broke (worker_cancel_long_running_tasks_on_connection_loss), and they must be gone first.
STALE_GRACE = 3.0
# How long a worker whose queues are empty waits on one of them before it looks at all of them again: what a
# message on another queue may wait, at most, while the worker is idle.
IDLE_WAIT = 0.05

# Take the first message of the first non-empty queue (KEYS[4..], in kombu's order) and record it as
# delivered to ARGV[1] at ARGV[2], as kombu's QoS.append would: one step, so it is in its queue or in
# `unacked` (with its owner), never only in a process's memory. ARGV[3] is the number of queues, the
# keys of the first priority level: kombu rotates a queue it served to the end, so under a steady load of
# one queue the others come first, empty, and one EXISTS passes them (not one RPOP each).
_TAKE = """
local start = 4
local level = tonumber(ARGV[3])
if level > 1 and redis.call('EXISTS', unpack(KEYS, 4, 2 + level)) == 0 then start = 3 + level end
for i = start, #KEYS do
  local raw = redis.call('RPOP', KEYS[i])
  if raw then
    local ok, message = pcall(cjson.decode, raw)
    local properties = ok and type(message) == 'table' and message['properties'] or {}
    local tag = properties['delivery_tag']
    local info = properties['delivery_info'] or {}
    if type(tag) == 'string' then
      redis.call('ZADD', KEYS[2], ARGV[2], tag)
      local route = cjson.encode(info['exchange'] or '') .. ',' .. cjson.encode(info['routing_key'] or '')
      redis.call('HSET', KEYS[1], tag, '[' .. raw .. ',' .. route .. ']')
      redis.call('HSET', KEYS[3], tag, ARGV[1])
      return {KEYS[i], raw, tag}
    end
    return {KEYS[i], raw}
  end
end
return false
"""


# KEYS: unacked index, unacked, owners. ARGV[1]: the delivery tag acknowledged.
_ACK = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"""


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
        self.exit: Callable[[int], None] = os._exit  # tests replace it
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
        swept, stale = 0.0, dict[str, float]()
        while not self.stopping.wait(self.interval):
            try:
                if not self.leases.renew(self.consumer):
                    self.lapsed()
                if time.monotonic() - swept >= self.sweep:
                    swept = time.monotonic()
                    restore_orphans(self.r, by="worker", leases=self.leases)
                    restore_stale(self.r, self.consumer, live_channels(), seen=stale, grace=STALE_GRACE)
            except redis.RedisError as exc:
                self.outage.failed(exc)
                continue
            self.outage.recovered()

    def lapsed(self) -> None:
        """The lease was gone when renewed: Redis was out of reach for longer than the lease, or lost the key.

        If every message this process holds is still recorded as its own, nobody took any of them and
        renewing is enough. Otherwise another worker may be running one of them: exit at once.
        """
        held = held_tags()
        owners = self.r.hmget(OWNERS, [tag for tag, _ in held]) if held else []
        taken = [tag for (tag, owner), now in zip(held, owners, strict=True) if _text(now) != owner]
        if not taken:
            log.warning(
                "this worker's lease had lapsed; nothing it held was taken, so it goes on",
                extra={"consumer": self.consumer, "held": len(held)},
            )
            return
        log.error(
            "this worker's lease lapsed (Redis unreachable for over %.0f s) and %d message(s) it held are no "
            "longer its own; other workers may be running them, so it stops now and its supervisor starts it again",
            self.leases.lease,
            len(taken),
            extra={"consumer": self.consumer},
        )
        logging.shutdown()
        self.exit(75)  # os._exit, EX_TEMPFAIL: nothing may run on, not even atexit handlers that wait

    def end(self) -> None:
        """A clean exit: give up the lease, so anything still recorded as ours is put back at once."""
        if os.getpid() != self.pid or self.stopping.is_set():
            return
        self.stopping.set()
        with contextlib.suppress(redis.RedisError):  # otherwise it lapses by itself
            self.leases.release(self.consumer)


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class _Process:
    """This process's consumer and its keeper, made when it first consumes (never in beat or a producer),
    and its channels that may hold messages (`<consumer>/<n>`, one per QoS)."""

    lock = threading.Lock()
    # Owners of channels closed by a finalizer. A finalizer runs inside any allocation of whatever thread
    # collects garbage, possibly one holding `lock`, so it never takes it: it appends here (deque appends
    # are atomic) and the next holder of the lock takes the owners out of `live`.
    closed: collections.deque[str] = collections.deque()
    consumer: str | None = None
    keeper: LeaseKeeper | None = None
    pid: int | None = None
    channels = 0
    live: set[str] = set()
    qos: weakref.WeakSet[QoS] = weakref.WeakSet()


def held_tags() -> list[tuple[str, str]]:
    """(delivery tag, owner) of every message this process took and has not acknowledged."""
    with _Process.lock:
        instances = list(_Process.qos)
    held = []
    for qos in instances:
        state: Any = qos  # kombu's virtual QoS keeps `_delivered` and `_dirty` (acked, not yet dropped)
        try:
            tags = [t for t in list(state._delivered) if t not in state._dirty]
        except RuntimeError:  # changed while read by the main thread: read again
            tags = [t for t in list(state._delivered) if t not in set(state._dirty)]
        held += [(str(t), qos.owner) for t in tags]
    return held


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
            _Process.pid, _Process.consumer, _Process.channels, _Process.live = os.getpid(), consumer_id(), 0, set()
            _Process.keeper = LeaseKeeper(client, _Process.consumer).begin()
        return _Process.consumer


def forget_process() -> None:
    """Stop this process's keeper and forget its consumer (tests: the next channel takes a new lease)."""
    with _Process.lock:
        if _Process.keeper is not None:
            _Process.keeper.stopping.set()
        _Process.consumer = _Process.keeper = _Process.pid = None
        _Process.live = set()


def open_channel(consumer: str) -> str:
    """A new owner name for one channel of this process, live until `close_channel`."""
    with _Process.lock:
        _Process.channels += 1
        owner = f"{consumer}/{_Process.channels}"
        _Process.live.add(owner)
        return owner


def close_channel(owner: str) -> None:
    """The channel is gone; may run as a finalizer during garbage collection, so it takes no lock."""
    _Process.closed.append(owner)


def live_channels() -> set[str]:
    with _Process.lock:
        while _Process.closed:
            _Process.live.discard(_Process.closed.popleft())
        return set(_Process.live)


class QoS(kombu_redis.QoS):
    """kombu's ack emulation, with each delivery's consumer recorded beside it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.owner = open_channel(process_consumer(self.channel))
        self.recorded: set[str] = set()  # taken by `_TAKE`, which recorded them already
        with _Process.lock:
            _Process.qos.add(self)
        # A channel lost with its connection may never be closed properly (kombu collects it).
        weakref.finalize(self, close_channel, self.owner)

    def append(self, message: Any, delivery_tag: str) -> None:
        if delivery_tag in self.recorded:  # `_TAKE` wrote the same three entries when it took it
            self.recorded.discard(delivery_tag)
            virtual.QoS.append(self, message, delivery_tag)
            return
        # kombu's QoS.append (its BRPOP and basic_get paths), with the owner written in the same MULTI/EXEC.
        delivery = message.delivery_info
        exchange, routing_key = delivery["exchange"], delivery["routing_key"]
        with self.pipe_or_acquire() as pipe:
            pipe.zadd(self.unacked_index_key, {delivery_tag: time.time()}).hset(
                self.unacked_key, delivery_tag, dumps([message._raw, exchange, routing_key])
            ).hset(OWNERS, delivery_tag, self.owner).execute()
            virtual.QoS.append(self, message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        # kombu's ack is MULTI, ZREM, HDEL, EXEC, and the owner's HDEL: one script makes the three removals, as
        # atomically, in four commands instead of five (a task message's own cost: bench/pipeline_throughput.py).
        qos: Any = self  # kombu's private names are not in its stubs
        with qos.channel.conn_or_acquire() as client:
            client.eval(_ACK, 3, self.unacked_index_key, self.unacked_key, OWNERS, delivery_tag)
        virtual.QoS.ack(self, delivery_tag)

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
    """kombu's Redis channel, taking messages with `_TAKE` instead of BRPOP (module docstring)."""

    QoS = QoS
    _pending = "BRPOP"  # the command whose reply the poller waits for: EVAL (take) or BLMOVE (wait)
    _idle = False  # the last take found every queue empty: wait before taking again
    _waits = 0

    def _brpop_start(self, timeout: float | None = None) -> None:
        channel: Any = self  # kombu's private names are not in its stubs
        if channel.global_keyprefix:  # prefixed keys are not handled here: kombu's own BRPOP
            self._pending = "BRPOP"
            kombu_channel: Any = super()
            kombu_channel._brpop_start(timeout)
            return None
        queues = channel._queue_cycle.consume(len(channel.active_queues))
        if not queues:
            return None
        connection = channel.client.connection
        channel._in_poll = connection
        channel._brpop_sent_at = time.monotonic()
        if self._idle:
            queue = queues[self._waits % len(queues)]
            self._waits += 1
            self._pending = "BLMOVE"
            connection.send_command("BLMOVE", queue, queue, "RIGHT", "RIGHT", IDLE_WAIT)
        else:
            keys = [channel._q_for_pri(queue, pri) for pri in channel.priority_steps for queue in queues]
            self._pending = "EVAL"
            owner = channel.qos.owner
            connection.send_command(
                "EVAL", _TAKE, 3 + len(keys), UNACKED, UNACKED_INDEX, OWNERS, *keys, owner, time.time(), len(queues)
            )
        return None

    def _brpop_read(self, **options: Any) -> bool:
        channel: Any = self
        if self._pending == "BRPOP":
            kombu_channel: Any = super()
            return bool(kombu_channel._brpop_read(**options))
        try:
            try:
                reply = channel.client.parse_response(channel.client.connection, self._pending, **options)
            except channel.connection_errors:
                channel.client.connection.disconnect()
                raise
            if self._pending == "BLMOVE":  # woken by a message (take it next), or timed out (wait on the next queue)
                self._idle = reply is None
                raise Empty()
            if not reply:
                self._idle = True
                raise Empty()
            self._idle = False
            key, raw, *recorded = reply
            queue = bytes_to_str(key).rsplit(channel.sep, 1)[0]
            channel._queue_cycle.rotate(queue)
            if recorded:  # its delivery tag: kombu's QoS.append need not write it again
                channel.qos.recorded.add(bytes_to_str(recorded[0]))
            channel.connection._deliver(loads(bytes_to_str(raw)), queue)
            return True
        finally:
            channel._in_poll = None
            channel._flush_brpop_reauth()

    def _poll_error(self, type: str, **options: Any) -> Any:
        if type == "BRPOP" and self._pending != "BRPOP":
            channel: Any = self
            return channel.client.parse_response(channel.client.connection, self._pending)
        kombu_channel: Any = super()
        return kombu_channel._poll_error(type, **options)

    def close(self) -> None:
        qos: Any = self  # kombu's private names are not in its stubs
        if qos._qos is not None:
            close_channel(qos._qos.owner)
        super().close()


class Transport(kombu_redis.Transport):
    """`broker_transport = "workers.broker:Transport"`: kombu's Redis transport with consumer leases."""

    Channel = Channel
