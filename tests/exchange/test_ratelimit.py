"""Rate budgets on a replay clock: fixed aligned windows, header correction, 429 block, 418 ban."""

from __future__ import annotations

import asyncio

import pytest

from engine.clock import ReplayClock
from exchange.errors import Retryable
from exchange.ratelimit import (
    ORDERS,
    RAW_REQUESTS,
    REQUEST_WEIGHT,
    RateLimit,
    RateLimiter,
    rate_limits_from_exchange_info,
)

MINUTE_START_MS = 28_333_334 * 60_000  # 1_700_000_040_000: a whole minute since the epoch
MS = 1_000_000  # ns per ms


def clock_at(ms: int) -> ReplayClock:
    return ReplayClock(ms * MS)


def now_ms(clock: ReplayClock) -> int:
    return clock.now_ns() // MS


WEIGHT_10_PER_MIN = RateLimit(REQUEST_WEIGHT, "MINUTE", 1, 10)


def test_limits_from_spot_exchange_info_example() -> None:
    info = {
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
             "limit": 6000},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 50},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 160000},
            {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5,
             "limit": 61000},
        ]
    }  # fmt: skip
    limits = rate_limits_from_exchange_info(info)
    assert [(x.kind, x.header_suffix, x.interval_ms, x.limit) for x in limits] == [
        (REQUEST_WEIGHT, "1m", 60_000, 6000),
        (ORDERS, "10s", 10_000, 50),
        (ORDERS, "1d", 86_400_000, 160000),
        (RAW_REQUESTS, "5m", 300_000, 61000),
    ]


async def test_waits_for_the_next_fixed_window_before_exceeding() -> None:
    clock = clock_at(MINUTE_START_MS + 30_000)
    limiter = RateLimiter(clock, [WEIGHT_10_PER_MIN], max_wait_s=60)
    await limiter.acquire(6)
    await limiter.acquire(4)  # exactly at the limit: allowed
    assert now_ms(clock) == MINUTE_START_MS + 30_000
    await limiter.acquire(1)
    assert now_ms(clock) == MINUTE_START_MS + 60_000  # waited for :00, not 60 s sliding
    assert limiter.used(REQUEST_WEIGHT, "1m") == 1


async def test_long_wait_fails_fast_as_retryable() -> None:
    clock = clock_at(MINUTE_START_MS + 30_000)
    limiter = RateLimiter(clock, [WEIGHT_10_PER_MIN], max_wait_s=5)
    await limiter.acquire(10)
    with pytest.raises(Retryable) as caught:
        await limiter.acquire(1)
    assert caught.value.retry_after_s == 30.0
    assert now_ms(clock) == MINUTE_START_MS + 30_000


async def test_one_request_costing_more_than_the_limit_is_a_bug() -> None:
    limiter = RateLimiter(clock_at(MINUTE_START_MS), [WEIGHT_10_PER_MIN])
    with pytest.raises(ValueError):
        await limiter.acquire(11)


async def test_headers_replace_the_local_estimate_both_ways() -> None:
    clock = clock_at(MINUTE_START_MS + 1_000)
    limit = RateLimit(REQUEST_WEIGHT, "MINUTE", 1, 1200)
    limiter = RateLimiter(clock, [limit], max_wait_s=120)
    permit = await limiter.acquire(1)
    limiter.settle(permit, {"X-MBX-USED-WEIGHT-1M": "1195", "X-MBX-USED-WEIGHT": "1195"})
    assert limiter.used(REQUEST_WEIGHT, "1m") == 1195
    await limiter.acquire(5)  # 1200: still fits
    permit = await limiter.acquire(10)  # must wait for the next minute
    assert now_ms(clock) == MINUTE_START_MS + 60_000
    limiter.settle(permit, {"x-mbx-used-weight-1m": "3"})  # server counted less than we did
    assert limiter.used(REQUEST_WEIGHT, "1m") == 3


async def test_requests_still_in_flight_stay_charged() -> None:
    limiter = RateLimiter(clock_at(MINUTE_START_MS), [RateLimit(REQUEST_WEIGHT, "MINUTE", 1, 100)])
    first = await limiter.acquire(5)
    await limiter.acquire(7)  # not answered yet
    limiter.settle(first, {"X-MBX-USED-WEIGHT-1M": "5"})
    assert limiter.used(REQUEST_WEIGHT, "1m") == 12


async def test_header_from_a_request_that_straddled_windows_is_ignored() -> None:
    clock = clock_at(MINUTE_START_MS + 59_900)
    limiter = RateLimiter(clock, [RateLimit(REQUEST_WEIGHT, "MINUTE", 1, 100)])
    permit = await limiter.acquire(2)
    clock.advance_to((MINUTE_START_MS + 60_100) * MS)
    limiter.settle(permit, {"X-MBX-USED-WEIGHT-1M": "90"})  # belongs to the old minute
    assert limiter.used(REQUEST_WEIGHT, "1m") == 0


async def test_order_budget_limits_orders_not_reads() -> None:
    clock = clock_at(MINUTE_START_MS + 3_000)
    orders = RateLimit(ORDERS, "SECOND", 10, 2)
    limiter = RateLimiter(clock, [WEIGHT_10_PER_MIN, orders], max_wait_s=30)
    await limiter.acquire(1, orders=1)
    await limiter.acquire(1, orders=1)
    await limiter.acquire(1)  # a read passes
    assert now_ms(clock) == MINUTE_START_MS + 3_000
    permit = await limiter.acquire(0, orders=1)  # futures orders weigh 0 on the IP budget
    assert now_ms(clock) == MINUTE_START_MS + 10_000  # 10 s windows start at :00, :10, ...
    limiter.settle(permit, {"X-MBX-ORDER-COUNT-10S": "2"})
    assert limiter.used(ORDERS, "10s") == 2
    assert limiter.used(REQUEST_WEIGHT, "1m") == 3


async def test_day_window_rolls_at_utc_midnight() -> None:
    midnight_ms = 19_700 * 86_400_000
    clock = clock_at(midnight_ms - 1_000)
    limiter = RateLimiter(clock, [RateLimit(ORDERS, "DAY", 1, 1)], max_wait_s=5)
    await limiter.acquire(1, orders=1)
    await limiter.acquire(1, orders=1)
    assert now_ms(clock) == midnight_ms


async def test_raw_requests_count_one_per_request() -> None:
    raw = RateLimit(RAW_REQUESTS, "MINUTE", 5, 2)
    clock = clock_at(MINUTE_START_MS)
    limiter = RateLimiter(clock, [raw], max_wait_s=1)
    await limiter.acquire(40)
    await limiter.acquire(0, orders=1)
    with pytest.raises(Retryable):
        await limiter.acquire(1)


async def test_429_blocks_for_retry_after() -> None:
    clock = clock_at(MINUTE_START_MS + 15_000)
    limiter = RateLimiter(clock, [WEIGHT_10_PER_MIN])
    limiter.block(3)
    await limiter.acquire(1)
    assert now_ms(clock) == MINUTE_START_MS + 18_000


async def test_429_without_retry_after_blocks_to_the_minute_end() -> None:
    clock = clock_at(MINUTE_START_MS + 15_000)
    limiter = RateLimiter(clock, [], max_wait_s=60)
    limiter.block(None)
    await limiter.acquire(1)
    assert now_ms(clock) == MINUTE_START_MS + 60_000


async def test_order_rate_block_leaves_reads_alone() -> None:
    clock = clock_at(MINUTE_START_MS)
    limiter = RateLimiter(clock, [])
    limiter.block(4, orders_only=True)
    await limiter.acquire(1)
    assert now_ms(clock) == MINUTE_START_MS
    await limiter.acquire(1, orders=1)
    assert now_ms(clock) == MINUTE_START_MS + 4_000


async def test_418_ban_halts_rest_until_the_epoch() -> None:
    clock = clock_at(MINUTE_START_MS)
    limiter = RateLimiter(clock, [WEIGHT_10_PER_MIN], max_wait_s=10_000)
    ban_end = MINUTE_START_MS + 120_000
    limiter.ban(ban_end, retry_after_s=120)
    assert limiter.banned_until_ms == ban_end
    with pytest.raises(Retryable) as caught:
        await limiter.acquire(1)  # never waits through a ban, however long max_wait_s is
    assert caught.value.banned_until_ms == ban_end and caught.value.retry_after_s == 120.0
    assert now_ms(clock) == MINUTE_START_MS
    clock.advance_to(ban_end * MS)
    assert limiter.banned_until_ms is None
    await limiter.acquire(1)


async def test_418_without_epoch_uses_retry_after() -> None:
    clock = clock_at(MINUTE_START_MS)
    limiter = RateLimiter(clock, [])
    limiter.ban(None, retry_after_s=300)
    assert limiter.banned_until_ms == MINUTE_START_MS + 300_000


async def test_concurrent_requests_never_overcommit() -> None:
    clock = clock_at(MINUTE_START_MS + 50_000)
    limiter = RateLimiter(clock, [WEIGHT_10_PER_MIN], max_wait_s=60)
    permits = await asyncio.gather(*(limiter.acquire(6) for _ in range(3)))
    minutes = sorted(p.acquired_ms // 60_000 for p in permits)
    assert minutes == [MINUTE_START_MS // 60_000 + k for k in (0, 1, 2)]


async def test_reconfigure_keeps_the_current_count() -> None:
    limiter = RateLimiter(clock_at(MINUTE_START_MS), [WEIGHT_10_PER_MIN])
    await limiter.acquire(7)
    limiter.configure([RateLimit(REQUEST_WEIGHT, "MINUTE", 1, 6000)])
    assert limiter.used(REQUEST_WEIGHT, "1m") == 7


def test_try_acquire_charges_only_what_may_go_now_and_refund_gives_it_back() -> None:
    clock = clock_at(MINUTE_START_MS + 1_000)
    orders = RateLimit(ORDERS, "SECOND", 10, 2)
    limiter = RateLimiter(clock, [WEIGHT_10_PER_MIN, orders])
    first = limiter.try_acquire(4, 1)
    second = limiter.try_acquire(4, 1)
    assert first is not None and second is not None
    assert limiter.try_acquire(1, 1) is None  # a third order waits for the 10 s window
    assert limiter.try_acquire(3, 0) is None  # 8 + 3 > 10 weight
    assert (limiter.used(REQUEST_WEIGHT, "1m"), limiter.used(ORDERS, "10s")) == (8, 2)
    limiter.refund(second)  # never sent
    assert (limiter.used(REQUEST_WEIGHT, "1m"), limiter.used(ORDERS, "10s")) == (4, 1)
    assert limiter.try_acquire(6, 1) is not None
    limiter.ban(None, retry_after_s=5)
    assert limiter.try_acquire(0, 0) is None
