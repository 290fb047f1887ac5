"""Benchmark of the conversation API on loopback, beside a bare Starlette endpoint.

    .venv/bin/python bench/api.py [--seconds 6] [--concurrency 16] [--rate 200] [--events 1000]

1. Throughput: persona conversations (create + 9 choices) against ``passerelle``'s API with a
   durable SQLite store (WAL, synchronous=FULL), then the same number of concurrent clients
   against a bare Starlette endpoint that parses the same JSON and answers a reply of the same
   size. Prints conversations/s, messages/s and the ratio (target: at least 0.5).
2. Latency: messages sent at a fixed rate (200/s by default, open loop); p50/p99 (target: p99
   under 20 ms).
3. Webhooks: events enqueued in the outbox and delivered, signed, to a loopback receiver;
   events/s.

Each server runs in its own process under uvicorn; the load generator is this process.
``--db all`` (the default) runs the API on SQLite, then on PostgreSQL (a throwaway cluster) with
one instance and with ``--instances`` instances on one database, each request sent to the next
instance in turn (a load balancer without affinity: a conversation's turns hop between them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness.ports import free_port  # noqa: E402 (after the path set-up)

PERSONA = ("patient", "chronique", "stabilise", "former", "fr", "occitanie", "aucune",
                   "aucune", "mensuel")  # fmt: skip
REPLY_SIZE_FILE = "reply_size"


# -- servers (child processes) ---------------------------------------------------------------
def child(kind: str, port: int, workdir: Path) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    if kind == "ours":
        from bot.app.engines import build_engine
        from bot.channels.http import ConversationApi, RateLimiter
        from bot.knowledge.loader import load
        from bot.server import create_app
        from bot.storage.factory import integration_store

        api = ConversationApi(
            build_engine(load(ROOT / "contenus")),
            integration_store(os.environ.get("BENCH_DB") or workdir / "passerelle.db"),
            limiter=RateLimiter(1e6, 1_000_000),
        )
        app: Any = create_app(api)
    elif kind == "bare":
        size = int((workdir / REPLY_SIZE_FILE).read_text())
        body = json.dumps({"replies": [{"text": "x" * max(0, size - 40)}]}).encode()

        async def bare(request: Request) -> Response:
            data = json.loads(await request.body())
            if not isinstance(data, dict):
                return Response(b"{}", 422)
            return Response(body, 200 if "messages" in request.url.path else 201,
                            media_type="application/json")  # fmt: skip

        app = Starlette(
            routes=[
                Route("/api/v1/conversations", bare, methods=["POST"]),
                Route("/api/v1/conversations/{cid}/messages", bare, methods=["POST"]),
            ]
        )
    else:  # a webhook receiver acknowledging everything

        async def receive(request: Request) -> Response:
            await request.body()
            return Response(status_code=204)

        app = Starlette(routes=[Route("/hook", receive, methods=["POST"])])
    # Keep-alive longer than the runs' idle gaps: a client reusing a connection never races
    # uvicorn closing it (httpx.ReadError under load with the 5 s default).
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, ws="none",
                timeout_keep_alive=120)  # fmt: skip


def start(kind: str, workdir: Path, db: str | None = None) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, **({"BENCH_DB": db} if db else {})}
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", kind, str(port), str(workdir)], cwd=ROOT, env=env
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process, url
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit(f"the {kind} server did not start")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


# -- load ------------------------------------------------------------------------------------
class Spread(httpx.AsyncBaseTransport):
    """Each request to the next server in turn, as a load balancer without affinity."""

    def __init__(self, urls: list[str], limits: httpx.Limits) -> None:
        self.targets = [httpx.URL(url) for url in urls]
        self.next = 0
        self.inner = httpx.AsyncHTTPTransport(limits=limits)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        target = self.targets[self.next % len(self.targets)]
        self.next += 1
        request.url = request.url.copy_with(host=target.host, port=target.port)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def client_for(
    urls: str | list[str], headers: dict[str, str], limits: httpx.Limits | None = None
) -> httpx.AsyncClient:
    spread = [urls] if isinstance(urls, str) else urls
    limits = limits or httpx.Limits()
    return httpx.AsyncClient(
        base_url=spread[0], headers=headers, transport=Spread(spread, limits), timeout=30
    )


async def conversation(client: httpx.AsyncClient, latencies: list[float]) -> int:
    started = time.perf_counter()
    response = await client.post("/api/v1/conversations", json={})
    latencies.append(time.perf_counter() - started)
    assert response.status_code == 201, response.text
    cid = response.json().get("conversation_id", "bare")
    for choice in PERSONA:
        started = time.perf_counter()
        response = await client.post(
            f"/api/v1/conversations/{cid}/messages", json={"choice": choice}
        )
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 200, (choice, response.text)
    return 1 + len(PERSONA)


async def throughput(
    url: str | list[str], key: str, seconds: float, concurrency: int
) -> dict[str, float]:
    headers = {"authorization": f"Bearer {key}"}
    latencies: list[float] = []
    done = 0
    requests = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with client_for(url, headers, limits) as client:
        await conversation(client, [])  # warm-up
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()

        async def user() -> None:
            nonlocal done, requests
            while time.perf_counter() < deadline:
                sent = await conversation(client, latencies)
                requests += sent
                done += 1

        await asyncio.gather(*(user() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "conversations_per_s": done / elapsed,
        "requests_per_s": requests / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": statistics.quantiles(latencies, n=100)[98] * 1000,
    }


async def paced(url: str | list[str], key: str, rate: float, seconds: float) -> dict[str, float]:
    """Open loop: one message every 1/rate s, whatever the answers' timing."""
    headers = {"authorization": f"Bearer {key}"}
    latencies: list[float] = []
    async with client_for(url, headers) as client:
        conversations: list[str] = []
        for _ in range(50):
            response = await client.post("/api/v1/conversations", json={})
            if "conversation_id" in response.json():
                conversations.append(response.json()["conversation_id"])
        count = int(rate * seconds)
        tasks = []
        start = time.perf_counter()

        async def one(index: int) -> None:
            cid = conversations[index % len(conversations)] if conversations else "bare"
            began = time.perf_counter()
            response = await client.post(
                f"/api/v1/conversations/{cid}/messages", json={"text": "aide"}
            )
            latencies.append(time.perf_counter() - began)
            assert response.status_code == 200, response.text

        for index in range(count):
            target = start + index / rate
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(index)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return {
        "sent_per_s": count / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": statistics.quantiles(latencies, n=100)[98] * 1000,
    }


async def outbox(workdir: Path, receiver: str, events: int) -> dict[str, float]:
    from bot.adapters.webhooks import WebhookWorker
    from bot.knowledge.establishments import Establishment
    from bot.storage.integration import IntegrationStore, OutboxEvent

    store = IntegrationStore(workdir / "outbox.db")
    await store.open()
    payload = json.dumps({"type": "conversation.completed", "data": {"roles": ["x"] * 3}})
    await store.enqueue(
        [
            OutboxEvent(f"msg_{i:06d}", "chu", "conversation.completed", payload)
            for i in range(events)
        ]
    )
    chu = Establishment("chu", "CHU", webhook_url=f"{receiver}/hook", secret=b"s" * 32)
    worker = WebhookWorker(store, {"chu": chu}, concurrency=16)
    started = time.perf_counter()
    await worker.start()
    while worker.delivered < events and time.perf_counter() - started < 60:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - started
    await worker.stop()
    left = len(await store.outbox_list())
    await store.close()
    return {"delivered": worker.delivered, "events_per_s": worker.delivered / elapsed, "left": left}


async def make_key(db: str | Path) -> str:
    from bot.storage.factory import integration_store

    store = integration_store(db)
    await store.open()
    key, _ = await store.create_key("bench")
    await store.close()
    return key


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--paced-seconds", type=float, default=5.0)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "all"], default="all")
    parser.add_argument("--instances", type=int, default=2, help="API servers on one PostgreSQL")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "PORT", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), Path(args.child[2]))
        return 0

    def measure(workdir: Path, db: str | None, instances: int) -> dict[str, Any]:
        """Throughput and latency of ``instances`` API servers on ``db`` (None: SQLite)."""
        key = asyncio.run(make_key(db or workdir / "passerelle.db"))
        servers = [start("ours", workdir, db) for _ in range(instances)]
        urls = [url for _, url in servers]
        try:
            if not (workdir / REPLY_SIZE_FILE).exists():
                sample = httpx.post(
                    f"{urls[0]}/api/v1/conversations",
                    json={},
                    headers={"authorization": f"Bearer {key}"},
                )
                (workdir / REPLY_SIZE_FILE).write_text(str(len(sample.content)))
            result: dict[str, Any] = {
                **asyncio.run(throughput(urls, key, args.seconds, args.concurrency))
            }
            result["paced"] = asyncio.run(paced(urls, key, args.rate, args.paced_seconds))
            return result
        finally:
            for process, _ in servers:
                stop(process)

    started_load = os.getloadavg()[0]
    runs: list[tuple[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="passerelle-bench-") as tmp:
        workdir = Path(tmp)
        if args.db in ("sqlite", "all"):
            runs.append(("passerelle API (SQLite)", measure(workdir, None, 1)))
        if args.db in ("postgresql", "all"):
            from bot.storage.postgres.schema import ensure_current
            from tests.harness.postgres import cluster

            with cluster() as pg:
                for count in sorted({1, max(1, args.instances)}):
                    with pg.database() as db:
                        asyncio.run(ensure_current(db, upgrade=True))
                        runs.append(
                            (f"passerelle API (PostgreSQL ×{count})", measure(workdir, db, count))
                        )
        ours, latency = runs[0][1], runs[0][1]["paced"]
        process, url = start("bare", workdir)
        try:
            bare = asyncio.run(throughput(url, "bare", args.seconds, args.concurrency))
            bare_latency = asyncio.run(paced(url, "bare", args.rate, args.paced_seconds))
        finally:
            stop(process)
        process, url = start("receiver", workdir)
        try:
            hooks = asyncio.run(outbox(workdir, url, args.events))
        finally:
            stop(process)

    ratio = ours["requests_per_s"] / bare["requests_per_s"]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(
        f"{when}, cpu cores: {os.cpu_count()}, load average {started_load:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end; concurrency {args.concurrency}, "
        f"{args.seconds:.0f} s each"
    )
    print(
        f"{runs[0][0]:32}: {ours['conversations_per_s']:7.1f} conversations/s "
        f"({ours['requests_per_s']:6.0f} req/s), p50 {ours['p50_ms']:.1f} ms, "
        f"p99 {ours['p99_ms']:.1f} ms"
    )
    print(
        f"bare Starlette endpoint         : {bare['conversations_per_s']:7.1f} conversations/s "
        f"({bare['requests_per_s']:6.0f} req/s), p50 {bare['p50_ms']:.1f} ms, "
        f"p99 {bare['p99_ms']:.1f} ms"
    )
    print(f"ratio passerelle / bare         : {ratio:.2f} (target >= 0.5)")
    for name, row in runs[1:]:
        rate = row["requests_per_s"]
        print(
            f"{name}: {row['conversations_per_s']:.1f} conversations/s "
            f"({rate:.0f} req/s, {rate / bare['requests_per_s']:.2f} × bare, "
            f"{rate / ours['requests_per_s']:.2f} × {runs[0][0]}), "
            f"p99 {row['p99_ms']:.1f} ms; at {row['paced']['sent_per_s']:.0f}/s p99 "
            f"{row['paced']['p99_ms']:.1f} ms"
        )
    print(
        f"at {latency['sent_per_s']:.0f} messages/s (open loop) : p50 {latency['p50_ms']:.1f} ms, "
        f"p99 {latency['p99_ms']:.1f} ms (target p99 < 20 ms); bare endpoint: "
        f"p50 {bare_latency['p50_ms']:.1f} ms, p99 {bare_latency['p99_ms']:.1f} ms"
    )
    print(
        f"webhook outbox                  : {hooks['events_per_s']:.0f} events/s delivered "
        f"({hooks['delivered']:.0f} signed deliveries, {hooks['left']:.0f} left)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
