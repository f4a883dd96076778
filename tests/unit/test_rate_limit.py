"""The pure parts of rate limiting: GCRA, local buckets, client addresses behind proxies, the
client's wait on a 429, and the bounded summary of refused requests."""

from __future__ import annotations

import httpx
import pytest

from orchestrion.api.auth import Caller, Identifier
from orchestrion.api.client_address import TrustedProxies, address_bucket, client_address
from orchestrion.api.ratelimit import Limit, LocalBuckets, RateLimiter, gcra
from orchestrion.api.refusals import RefusalSummary
from orchestrion.client.retry import RateLimitRetry
from orchestrion.cluster.rate_buckets import RedisRateBuckets
from orchestrion.settings import load_settings

# ---------------------------------------------------------------- GCRA


def test_gcra_allows_the_burst_at_once_then_the_rate() -> None:
    limit = Limit(rate=2.0, burst=3)
    tat: float | None = None
    remaining = []
    for _ in range(3):
        tat, decision = gcra(tat, 0.0, limit)
        assert decision.allowed
        remaining.append(decision.remaining)
    assert remaining == [2, 1, 0]
    refused_tat, refused = gcra(tat, 0.0, limit)
    assert refused_tat is None and not refused.allowed
    assert refused.retry_after == pytest.approx(0.5)
    assert refused.headers()["Retry-After"] == "1"  # whole seconds, rounded up
    assert refused.headers()["RateLimit-Remaining"] == "0"
    tat, later = gcra(tat, 0.5, limit)  # one token back after 1/rate
    assert later.allowed and later.remaining == 0
    _, full = gcra(tat, 100.0, limit)  # a long pause refills to the burst, no more
    assert full.allowed and full.remaining == 2 and full.reset == pytest.approx(0.5)


def test_by_default_one_key_starts_2000_executions_at_once_and_no_more_than_the_burst() -> None:
    limiter = RateLimiter.for_settings(load_settings())
    for caller in (
        Caller("192.0.2.1", "key:1", "operator", "key:abc"),
        Caller("192.0.2.9", open_api=True),  # an open API: the same limit, per address
    ):
        local = LocalBuckets(clock=lambda: 0.0)  # all at the same instant
        identity, limit = limiter.limit_for(caller)
        answers = [local.take(identity, limit).allowed for _ in range(3000)]
        assert all(answers[:2000]), "2,000 starts at once must all be let in"
        assert answers.count(True) == 2500 and not any(answers[2500:])
    unauthenticated = limiter.limit_for(Caller("192.0.2.1", presented=True))[1]
    assert (unauthenticated.rate, unauthenticated.burst) == (2.0, 20)  # still tight


@pytest.mark.parametrize(
    ("rate", "burst", "enabled"), [(0, 10, False), (5, 0, False), (1, 1, True)]
)
def test_a_zero_rate_or_burst_disables_the_limit(rate: float, burst: int, enabled: bool) -> None:
    assert Limit(rate, burst).enabled is enabled


def test_local_buckets_forget_the_least_recently_seen() -> None:
    now = [0.0]
    buckets = LocalBuckets(clock=lambda: now[0], max_clients=2)
    limit = Limit(0.001, 1)
    assert buckets.take("a", limit).allowed
    assert not buckets.take("a", limit).allowed
    buckets.take("b", limit)
    buckets.take("c", limit)  # "a" is forgotten: at most two are kept
    assert len(buckets) == 2
    assert buckets.take("a", limit).allowed


async def test_keys_and_addresses_are_kept_apart() -> None:
    limiter = RateLimiter(Limit(0.001, 1), Limit(0.001, 1), max_clients=1)
    key = Caller("192.0.2.1", "key:1", "viewer", "key:abc")
    assert (await limiter.take(key)).allowed  # type: ignore[union-attr]
    for i in range(5):  # addresses flood their own table: the key's bucket stays
        await limiter.take(Caller(f"192.0.2.{i + 2}"))
    assert not (await limiter.take(key)).allowed  # type: ignore[union-attr]


async def test_the_limit_that_applies() -> None:
    limiter = RateLimiter(Limit(100, 500), Limit(2, 20))
    key = Caller("192.0.2.1", "key:1", "viewer", "key:abc", presented=True)
    assert limiter.limit_for(key) == ("key:abc", Limit(100, 500))
    assert limiter.limit_for(Caller("192.0.2.1", presented=True)) == (
        "addr:192.0.2.1",
        Limit(2, 20),
    )
    assert limiter.limit_for(Caller("2001:db8::1", open_api=True)) == (
        "anon:2001:db8::/64",
        Limit(100, 500),
    )
    assert await RateLimiter(Limit(0, 0), Limit(0, 0)).take(key) is None


# ---------------------------------------------------------------- callers


def scope(peer: str | None, *forwarded: str, authorization: str | None = None) -> dict:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    if authorization is not None:
        headers.append((b"authorization", authorization.encode()))
    return {"type": "http", "client": (peer, 1234) if peer else None, "headers": headers}


@pytest.mark.parametrize(
    ("proxies", "peer", "forwarded", "expected"),
    [
        ((), "198.51.100.9", ("203.0.113.1",), "198.51.100.9"),  # off by default
        (("10.0.0.0/8",), "10.0.0.2", ("203.0.113.1",), "203.0.113.1"),
        (("10.0.0.0/8",), "10.0.0.2", ("203.0.113.1, 10.0.0.7",), "203.0.113.1"),
        (("10.0.0.0/8",), "10.0.0.2", ("192.0.2.66, 203.0.113.1",), "203.0.113.1"),  # spoofed left
        (("10.0.0.0/8",), "10.0.0.2", ("1.1.1.1", "203.0.113.1"), "203.0.113.1"),  # two headers
        (("10.0.0.0/8",), "10.0.0.2", ("<script>",), "10.0.0.2"),
        (("10.0.0.0/8",), "10.0.0.2", ("203.0.113.1:8080",), "203.0.113.1"),
        (("10.0.0.0/8",), "10.0.0.2", ("[2001:db8::1]:443",), "2001:db8::1"),
        (("10.0.0.0/8",), "10.0.0.2", (), "10.0.0.2"),
        (("10.0.0.0/8",), "192.0.2.5", ("203.0.113.1",), "192.0.2.5"),  # not a listed proxy
        (("::1",), "::1", ("203.0.113.1",), "203.0.113.1"),
        ((), "::ffff:192.0.2.1", (), "192.0.2.1"),
        ((), None, (), "unknown"),
    ],
)
def test_client_address(
    proxies: tuple[str, ...], peer: str | None, forwarded: tuple[str, ...], expected: str
) -> None:
    assert client_address(scope(peer, *forwarded), TrustedProxies(proxies)) == expected


@pytest.mark.parametrize(
    ("address", "bucket"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::", "2001:db8:1:2::/64"),
        ("unknown", "unknown"),
    ],
)
def test_address_bucket(address: str, bucket: str) -> None:
    assert address_bucket(address) == bucket


def test_trusted_proxies_are_validated() -> None:
    assert load_settings(trusted_proxies="10.0.0.0/8, ::1").trusted_proxies == ("10.0.0.0/8", "::1")
    assert load_settings().trusted_proxies == ()
    with pytest.raises(Exception, match="not an IP address"):
        load_settings(trusted_proxies="proxy.example")


def test_a_caller_is_the_configured_key_it_matches_never_the_token() -> None:
    identifier = Identifier({"secret-1": "viewer"}, TrustedProxies())
    caller = identifier.identify(scope("192.0.2.1", authorization="Bearer secret-1"))
    assert caller.authenticated and caller.role == "viewer"
    assert caller.bucket is not None and "secret-1" not in caller.bucket
    assert (
        caller.bucket
        == identifier.identify(scope("192.0.2.9", authorization="bearer  secret-1 ")).bucket
    )
    for header in ("Bearer secret-2", "Basic secret-1", "Bearer", "secret-1"):
        stranger = identifier.identify(scope("192.0.2.1", authorization=header))
        assert not stranger.authenticated and stranger.presented
        assert (stranger.key_id, stranger.bucket, stranger.role) == (None, None, None)
    assert not identifier.identify(scope("192.0.2.1")).presented
    open_api = Identifier({}, TrustedProxies()).identify(
        scope("192.0.2.1", authorization="Bearer x")
    )
    assert open_api.open_api and open_api.key_id is None


# ---------------------------------------------------------------- the client's wait


def answer(status: int, retry_after: str | None = None) -> httpx.Response:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return httpx.Response(status, headers=headers)


@pytest.mark.parametrize(
    ("response", "attempt", "delay"),
    [
        (answer(200), 0, None),
        (answer(503, "3"), 0, None),  # only 429s
        (answer(429, "3"), 0, 3.0),
        (answer(429, "0"), 0, 0.0),
        (answer(429), 0, 0.5),  # no Retry-After: exponential backoff
        (answer(429), 3, 4.0),
        (answer(429), 9, 30.0),  # capped
        (answer(429, "3"), 10, None),  # out of retries
        (answer(429, "120"), 0, None),  # longer than max_wait: the caller decides
        (answer(429, "soon"), 1, 1.0),
    ],
)
def test_rate_limit_retry_delay(
    response: httpx.Response, attempt: int, delay: float | None
) -> None:
    retry = RateLimitRetry(retries=10, max_wait=60, jitter=lambda d: 0.0)
    assert retry.delay(response, attempt) == delay


def test_rate_limit_retry_jitter_is_bounded() -> None:
    retry = RateLimitRetry()
    delays = {retry.delay(answer(429, "2"), 0) for _ in range(50)}
    assert all(d is not None and 2.0 <= d <= 2.5 for d in delays) and len(delays) > 1


# ---------------------------------------------------------------- refusal summary


def test_the_refusal_summary_is_bounded_whatever_the_addresses() -> None:
    summary = RefusalSummary(60, clock=lambda: 0.0)
    for i in range(30_000):
        summary.note(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", 401 if i % 2 else 429)
    summary.note("10.0.0.1", 401)
    details = summary.details()
    assert details["requests"] == 30_001
    assert details["statuses"] == {"401": 15_001, "429": 15_000}
    assert len(details["addresses"]) == 20
    assert details["addresses"][0] == {
        "remote": "10.0.0.1",
        "requests": 2,
        "statuses": {"401": 2},
    }
    listed = sum(a["requests"] for a in details["addresses"])
    assert listed + details["other_requests"] == 30_001
    assert details["other_addresses"] == 10_000 - 20 + 1  # the untracked ones as one


# ---------------------------------------------------------------- Redis failures


class FlakyRedis:
    """Just enough of redis-py for ``RedisRateBuckets``: a script that fails while ``down``."""

    def __init__(self) -> None:
        self.down = True
        self.calls = 0

    def register_script(self, source: str) -> object:
        async def script(keys: list[str], args: list[int]) -> list[int]:
            self.calls += 1
            if self.down:
                raise ConnectionError("redis is down")
            return [1, 7, 0, 1000]

        return script


async def test_redis_failures_fall_back_to_local_buckets_then_recover() -> None:
    now = [0.0]
    limiter = RateLimiter(Limit(0.001, 2), Limit(0.001, 1), clock=lambda: now[0])
    redis = FlakyRedis()
    shared = RedisRateBuckets(redis, "orchestrion")  # type: ignore[arg-type]
    key = Caller("192.0.2.1", "key:1", "viewer", "key:abc")
    decisions = [await limiter.take(key, shared) for _ in range(3)]
    assert [d.allowed for d in decisions if d] == [True, True, False]  # still limited
    assert redis.calls == 1  # then Redis is left alone for a while
    redis.down = False
    now[0] += 10
    answer = await limiter.take(key, shared)
    assert answer is not None and answer.allowed and answer.remaining == 7
    assert redis.calls == 2
