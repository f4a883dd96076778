"""The Redis client of every scale-out process, and how its failures leave the package.

``connect_redis`` makes the client (retrying a command once on a fresh connection after a
restart); ``ensure_group`` makes a consumer group. Inside ``cluster/`` the loops catch
redis-py's errors themselves (they log and try again); what the rest of Orchestrion calls
goes through ``queue_errors``, so a failure leaves this package as a ``DispatchError`` with the
driver's error chained, and nobody outside it needs to know redis-py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from orchestrion.errors import ConfigurationError, DispatchError
from orchestrion.store.url_display import redacted_url

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "connect_redis",
    "driver_installed",
    "ensure_group",
    "queue_errors",
    "queue_unavailable",
    "stream_lost",
]


def connect_redis(url: str) -> Redis:
    """A redis-py asyncio client for ``url``, or a ``ConfigurationError`` saying what to do."""
    try:
        from redis.asyncio import Redis
    except ImportError as exc:  # pragma: no cover - the extra is part of dev installs
        raise ConfigurationError(
            "ORCHESTRION_REDIS_URL is set but redis-py is not installed:"
            " pip install 'orchestrion[scaleout]'"
        ) from exc
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    try:
        # A restarted server leaves dead pooled connections: a command on one is retried on
        # a fresh connection. Everything sent is safe to send twice (guarded dispatch,
        # idempotent acknowledgements, duplicate events ignored by the machine).
        return Redis.from_url(
            url,
            health_check_interval=10,
            socket_connect_timeout=5,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 4),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
    except ValueError as exc:
        # The URL, and redis-py's reason, may carry the password: neither is shown whole.
        reason = redacted_url(str(exc)) if "@" in str(exc) else str(exc)
        raise ConfigurationError(
            f"invalid Redis URL {redacted_url(url)!r} (ORCHESTRION_REDIS_URL or one of its"
            f" aliases): {reason}"
        ) from None


async def ensure_group(redis: Redis, stream: str, group: str) -> None:
    """Create ``group`` on ``stream`` (and the stream) unless it exists; read from the start."""
    from redis.exceptions import ResponseError

    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def driver_installed() -> bool:
    """Whether redis-py (the ``scaleout`` extra) is installed."""
    return bool(_driver_errors())


def _driver_errors() -> tuple[type[Exception], ...]:
    """The driver's own error classes (none without redis-py)."""
    try:
        from redis.exceptions import RedisError
    except ImportError:  # pragma: no cover - the extra is part of dev installs
        return ()
    return (RedisError,)


def queue_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says Redis could not be reached or did not answer (a connection
    refused or reset, a timeout, a server restarting) rather than a bug."""
    return isinstance(exc, (DispatchError, OSError, *_driver_errors()))


def _driver_error(exc: BaseException) -> bool:
    """A failure of redis-py or of the socket under it (a builtin ``TimeoutError`` is the
    caller's own deadline, not the driver's: it stays what it is)."""
    return not isinstance(exc, TimeoutError) and isinstance(exc, (OSError, *_driver_errors()))


@contextmanager
def queue_errors() -> Iterator[None]:
    """Raise a redis-py (or socket) error of the block as a ``DispatchError`` that keeps its
    message and names its class in ``kind``; the driver's error is chained."""
    try:
        yield
    except Exception as exc:
        if not _driver_error(exc):
            raise
        raise DispatchError(str(exc) or type(exc).__name__, kind=type(exc).__name__) from exc


def stream_lost(exc: Exception) -> bool:
    """Whether a read failed because its stream or group is gone: Redis lost its data, or the
    stream was deleted while the read was blocked on it (the reaper moving an orphaned inbox);
    the reader makes the groups again and goes on."""
    message = str(exc)
    return "NOGROUP" in message or "UNBLOCKED" in message
