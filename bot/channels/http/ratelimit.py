"""The API's rate limiter: a token bucket per API key (per key and client address for a
public widget key).

Per instance, on purpose: the buckets live in this process's memory, so behind a load balancer
spreading requests over ``n`` instances a key may make up to ``n`` times ``PASSERELLE_API_RATE``
requests per second in all (docs/integration.md says so). Sharing them would cost a database
round trip on every request for a limit that only guards against a runaway client; a deployment
that needs an exact global limit sets it at its reverse proxy."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class _Bucket:
    tokens: float
    stamp: float


@dataclass
class RateLimiter:
    """A token bucket per key: ``rate`` requests per second on average, bursts of ``burst``;
    in this process only (see the module's docstring)."""

    rate: float = 20.0
    burst: int = 60
    buckets: dict[str, _Bucket] = field(default_factory=dict)

    def check(self, name: str, now: float | None = None) -> float:
        """0 if allowed (and counted), else the seconds to wait."""
        now = time.monotonic() if now is None else now
        bucket = self.buckets.get(name)
        if bucket is None:
            if len(self.buckets) > 10_000:
                self.buckets.clear()
            bucket = self.buckets[name] = _Bucket(float(self.burst), now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate
