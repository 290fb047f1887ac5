"""Issues 5 and 6 on the API and the web chat: statistics of the caller's own context, the
barometer chart in the web chat, export and erasure, logs without personal data, and hot reload
of the knowledge base (admin endpoint and SIGHUP), all against real servers on loopback."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import io
import json
import logging
import re
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect

from bot.app.engines import build_engine
from bot.app.features import Features
from bot.app.identity import pseudonym
from bot.app.reload import EngineHolder, Reloader
from bot.channels.http import ConversationApi, RateLimiter
from bot.channels.http.admin import admin_routes
from bot.engine import barometer as mode
from bot.knowledge.loader import load
from bot.logging_setup import JsonFormatter
from bot.server import create_app
from bot.storage.features import FeatureStore
from bot.storage.integration import IntegrationStore
from tests.harness.knowledge import version_b
from tests.harness.paths import CONTENUS
from tests.harness.servers import serve
from tests.harness.wait import BROWSER_WAIT_MS

API_SECRET = b"api-pseudonym-secret-for-tests-0"
ADMIN = "admin-token-for-tests-0123456789"
PATIENT_TRAINER = ("patient", "chronique", "stabilise", "former", "fr", "occitanie", "aucune",
                   "aucune", "mensuel")  # fmt: skip
#: The two sides of a group (as on Telegram): several criteria differ by more than one point.
PRO_SCORES = [4, 3, 4, 2, 0, 2, 3, 4, 2, 2, 3]
PATIENT_SCORES = [1, 2, 2, 1, 2, 2, 3, 3, 1, 1, 2]


@dataclass
class Site:
    url: str
    db: Path
    keys: dict[str, str]
    holder: EngineHolder
    contenus: Path

    def client(self, establishment: str = "chu-a") -> httpx.Client:
        headers = {"authorization": f"Bearer {self.keys[establishment]}"}
        return httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=20)


async def make_keys(db: Path) -> dict[str, str]:
    store = IntegrationStore(db)
    await store.open()
    keys = {name: (await store.create_key(name))[0] for name in ("chu-a", "chu-b")}
    await store.close()
    return keys


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    contenus = tmp_path / "contenus"
    shutil.copytree(CONTENUS, contenus)
    db = tmp_path / "passerelle.db"
    # In a thread: Playwright's sync API may already run an event loop in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        keys = pool.submit(asyncio.run, make_keys(db)).result()
    holder = EngineHolder(build_engine(load(contenus)), build_engine)
    features = Features(holder.engine, FeatureStore(db))
    holder.on_swap(features.set_engine)
    api = ConversationApi(
        holder,
        IntegrationStore(db),
        limiter=RateLimiter(1e4, 10_000),
        demo_key="pwk_demo_for_tests",
        features=features,
        secret=API_SECRET,
    )
    reloader = Reloader(contenus, [holder])
    with serve(create_app(api, extra_routes=admin_routes(reloader, ADMIN))) as url:
        yield Site(url, db, keys, holder, contenus)


def rate(client: httpx.Client, conversation: str, rater: str, scores: list[int]) -> dict[str, Any]:
    def post(body: dict[str, str]) -> dict[str, Any]:
        response = client.post(f"/conversations/{conversation}/messages", json=body)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    turn = post({"choice": "cmd:barometre"})
    turn = post({"choice": mode.RATER + rater})
    for score in scores:
        turn = post({"text": str(score)})
    return post({"choice": mode.CREATE}) | {"rated": turn}


def test_stats_show_only_the_callers_own_context(site: Site) -> None:
    with site.client("chu-a") as a, site.client("chu-b") as b:
        for _ in range(6):
            assert a.post("/conversations", json={"context": "chu-a"}).status_code == 201
        for _ in range(5):
            assert b.post("/conversations", json={"context": "chu-b"}).status_code == 201
        mine = a.get("/stats").json()
        theirs = b.get("/stats", params={"since": "2020-01-01"}).json()
        assert mine["context"] == "chu-a" and mine["conversations"] == 6
        assert theirs["context"] == "chu-b" and theirs["conversations"] == 5
        assert a.get("/stats", params={"since": "hier"}).status_code == 422
        assert httpx.get(site.url + "/api/v1/stats").status_code == 401
        document = a.get("/openapi.json").json()
        assert "/stats" in document["paths"]


def test_export_then_delete_leaves_no_row_about_the_conversation(site: Site) -> None:
    handler_buffer = io.StringIO()
    handler = logging.StreamHandler(handler_buffer)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    logging.getLogger("bot").setLevel(logging.DEBUG)
    typed = "je suis une patiente avec une maladie chronique très particulière"
    try:
        with site.client() as client:
            cid = client.post("/conversations", json={}).json()["conversation_id"]
            client.post(f"/conversations/{cid}/messages", json={"text": typed})
            kept = rate(client, cid, "usager", [1, 2, 2, 1, 2, 2, 3, 3, 1, 1, 2])
            assert any(r["image_url"] for r in kept["rated"]["replies"])
            exported = client.get(f"/conversations/{cid}").json()
            assert exported["session"]["node"] == exported["node"]
            assert len(exported["barometer_ratings"]) == 1
            assert any(line["text"] == typed for line in exported["transcript"])
            # Its anonymous statistics row goes with it, as with /oubli on Telegram.
            stats = exported["session"]["extra"]["stats_id"]
            with contextlib.closing(sqlite3.connect(site.db)) as conn:
                found = conn.execute("SELECT id FROM stats_conversations WHERE id = ?", (stats,))
                assert found.fetchall() == [(stats,)]
            assert client.delete(f"/conversations/{cid}").status_code == 204
            assert client.get(f"/conversations/{cid}").status_code == 404
            member = pseudonym(API_SECRET, "api", cid)
    finally:
        logging.getLogger().removeHandler(handler)
    with contextlib.closing(sqlite3.connect(site.db)) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        assert {"api_conversations", "api_messages", "barometer_ratings", "followups"} <= set(
            tables
        )
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                cells = " ".join(str(cell) for cell in row)
                for needle in (cid, member, typed, stats):
                    assert needle not in cells, f"{table} still holds {needle!r}"
    logs = handler_buffer.getvalue()
    for line in logs.splitlines():
        assert {"ts", "level", "logger", "event"} <= set(json.loads(line))
    for needle in (typed, *site.keys.values(), cid):
        assert needle not in logs


def test_web_chat_barometer_button_shows_the_chart(site: Site, page: Page) -> None:
    page.goto(site.url + "/")
    expect(
        page.get_by_role("button", name="Je vis avec une maladie ou un handicap")
    ).to_be_enabled()
    page.get_by_role("button", name="Baromètre").click()
    page.get_by_role("button", name=re.compile("patient", re.IGNORECASE)).last.click()
    for number in range(1, 12):
        # Type only once the criterion is on screen: a number typed earlier would be lost.
        expect(page.locator(".passerelle-bot").last).to_contain_text(f"Critère {number} sur")
        box = page.get_by_label("Votre message")
        box.fill("3")
        box.press("Enter")
        expect(page.locator(".passerelle-bot").last).not_to_have_text("Passerelle écrit…")
    chart = page.locator(".passerelle-bot img").last
    expect(chart).to_be_visible()
    alt = chart.get_attribute("alt") or ""
    # A short name; the scores in words, criterion by criterion, are in the message before.
    assert alt.startswith("Graphique : Votre baromètre") and len(alt) < 250
    expect(page.locator(".passerelle-bot", has_text="3/4").last).to_be_visible()
    assert (chart.get_attribute("src") or "").startswith("data:image/png;base64,")
    assert chart.evaluate("img => img.naturalWidth") > 100


def web_chat(browser: Browser, url: str) -> Page:
    """A fresh web chat in its own browser context (its own storage: its own conversation)."""
    context = browser.new_context(locale="fr-FR")
    chat = context.new_page()
    chat.set_default_timeout(BROWSER_WAIT_MS)
    chat.goto(url + "/")
    expect(
        chat.get_by_role("button", name="Je vis avec une maladie ou un handicap")
    ).to_be_enabled()
    return chat


def settle(chat: Page) -> None:
    """Wait until the widget has shown the bot's answer to the last action."""
    expect(chat.get_by_role("log")).to_have_attribute("aria-busy", "false")


def press(chat: Page, label: str) -> None:
    chat.get_by_role("button", name=label, exact=True, disabled=False).last.click()
    settle(chat)


def say(chat: Page, words: str) -> None:
    box = chat.get_by_label("Votre message")
    box.fill(words)
    box.press("Enter")
    settle(chat)


def rate_in_web_chat(chat: Page, rater_label: str, scores: list[int]) -> None:
    """« Baromètre », who rates, then every criterion: buttons and typed numbers in turn."""
    press(chat, "Baromètre")
    press(chat, rater_label)
    for number, score in enumerate(scores, start=1):
        expect(chat.locator(".passerelle-bot").last).to_contain_text(f"Critère {number} sur")
        if number % 2:
            press(chat, str(score))
        else:
            say(chat, str(score))
    expect(chat.get_by_role("button", name="Oui, créer un groupe", disabled=False)).to_be_visible()


def comparison_charts(chat: Page) -> list[tuple[str, bytes]]:
    """(alt, PNG bytes) of every comparison chart shown in the chat."""
    charts = chat.locator(".passerelle-bot img[alt*='Comparaison du groupe']")
    found = []
    for i in range(charts.count()):
        alt = charts.nth(i).get_attribute("alt") or ""
        src = charts.nth(i).get_attribute("src") or ""
        assert src.startswith("data:image/png;base64,"), src[:40]
        found.append((alt, base64.b64decode(src.split(",", 1)[1], validate=True)))
    return found


def assert_comparison_chart(chat: Page, code: str) -> None:
    chart = chat.locator(".passerelle-bot img[alt*='Comparaison du groupe']").last
    expect(chart).to_be_visible()
    assert chart.evaluate("img => img.naturalWidth") > 100  # the browser decoded it
    [*_, (alt, png)] = comparison_charts(chat)
    assert code in alt and "Professionnels" in alt and "Patients" in alt
    # The detail is in the message before the chart, not repeated in its short alt text.
    expect(
        chat.locator(".passerelle-bot", has_text="Écarts de plus d'un point").last
    ).to_be_visible()
    assert "Écarts de plus d'un point" not in alt and len(alt) < 250
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG" and image.width > 100 and image.height > 100
        image.verify()


def test_web_chat_group_comparison_shows_the_chart(
    site: Site,
    browser: Browser,
) -> None:
    pro, patient, outsider = (web_chat(browser, site.url) for _ in range(3))
    try:
        rate_in_web_chat(pro, "Je suis professionnel(le)", PRO_SCORES)
        press(pro, "Oui, créer un groupe")
        created = pro.locator(".passerelle-bot", has_text="Son code : ").last.inner_text()
        found = re.search(r"Son code : ([A-Z0-9]{4}-[A-Z0-9]{4})", created)
        assert found, created
        code = found.group(1)
        assert not comparison_charts(pro)  # alone in the group: nothing to compare yet

        rate_in_web_chat(patient, "Je suis patient(e), proche-aidant(e) ou RU", PATIENT_SCORES)
        press(patient, "Oui, j'ai un code de groupe")
        say(patient, code.lower())
        expect(
            patient.locator(".passerelle-bot", has_text=f"gardée dans le groupe {code}")
        ).to_be_visible()
        assert_comparison_chart(patient, code)

        # The professional sees the same comparison from the barometer's first screen.
        press(pro, "Baromètre")
        press(pro, "Voir la comparaison du groupe")
        assert_comparison_chart(pro, code)

        # A conversation that joined no group is offered no comparison and is shown none.
        press(outsider, "Baromètre")
        expect(outsider.get_by_role("button", name="Je suis professionnel(le)")).to_be_enabled()
        expect(outsider.get_by_role("button", name="Voir la comparaison du groupe")).to_have_count(
            0
        )
        say(outsider, "voir la comparaison")
        expect(outsider.locator(".passerelle-bot").last).to_contain_text(
            "Je suis professionnel(le)"
        )
        assert not comparison_charts(outsider)
        assert code not in outsider.locator(".passerelle-log").inner_text()
    finally:
        for person in (pro, patient, outsider):
            person.context.close()


def test_admin_reload_needs_the_token_and_refuses_an_invalid_base(site: Site) -> None:
    url = site.url + "/admin/reload"
    assert httpx.post(url).status_code == 401
    assert httpx.post(url, headers={"authorization": "Bearer wrong-token"}).status_code == 403
    auth = {"authorization": f"Bearer {ADMIN}"}
    version_b(site.contenus, valid=False)
    refused = httpx.post(url, headers=auth, timeout=30)
    assert refused.status_code == 422
    problems = refused.json()["error"]["problems"]
    assert any("recul" in problem for problem in problems)
    assert site.holder.kb.version != "9.9.9"
    with site.client() as client:  # the old base keeps serving
        assert client.post("/conversations", json={}).status_code == 201


def test_conversation_continues_after_reload_that_removed_its_question(site: Site) -> None:
    with site.client() as client:
        cid = client.post("/conversations", json={}).json()["conversation_id"]
        for choice in ("patient", "chronique"):
            turn = client.post(f"/conversations/{cid}/messages", json={"choice": choice}).json()
        assert turn["node"] == "recul"
        shutil.rmtree(site.contenus)
        shutil.copytree(CONTENUS, site.contenus)
        version_b(site.contenus)
        reloaded = httpx.post(
            site.url + "/admin/reload", headers={"authorization": f"Bearer {ADMIN}"}, timeout=30
        )
        assert reloaded.status_code == 200 and reloaded.json()["version"] == "9.9.9"
        turn = client.post(f"/conversations/{cid}/messages", json={"choice": "cmd:aide"}).json()
        said = " ".join(r["text"] for r in turn["replies"])
        assert site.holder.engine.msg("kb_changed", site.holder.engine.new_session())[:30] in said
        assert turn["node"] == "experience"
        for choice in ("chronique", *PATIENT_TRAINER[2:]):
            turn = client.post(f"/conversations/{cid}/messages", json={"choice": choice}).json()
        assert turn["recommendation"] is not None
        assert client.post("/conversations", json={}).json()["replies"]
