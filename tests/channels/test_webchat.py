"""The web chat in a real headless Chromium (Debian's, driven by Playwright): a persona clicks
and types through to a recommendation, and the same is possible with the keyboard alone; the
chat stays usable on a phone, while the service is slow or unreachable, and inside a hostile
host page; axe-core finds no WCAG 2.1 AA violation."""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, Route, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route as WebRoute

from bot.adapters import charts
from bot.app.engines import build_engine
from bot.app.features import Features
from bot.channels.http import ConversationApi
from bot.knowledge.loader import load
from bot.knowledge.model import KnowledgeBase
from bot.server import create_app
from bot.storage.features import FeatureStore
from bot.storage.integration import IntegrationStore
from tests.harness.personas import PATIENT_TRAINER
from tests.harness.servers import serve
from tests.harness.wait import BROWSER_WAIT_MS, DEADLINE


@pytest.fixture
def site(kb: KnowledgeBase, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    db = tmp_path / "passerelle.db"
    api = ConversationApi(build_engine(kb), IntegrationStore(db), demo_key="pwk_demo_for_tests")
    with serve(create_app(api)) as url:
        yield url, db


#: The focused element, looking inside the widget's shadow root.
FOCUSED = (
    "(() => { let a = document.activeElement;"
    " while (a && a.shadowRoot && a.shadowRoot.activeElement) { a = a.shadowRoot.activeElement; }"
    " return a; })()"
)


def focused_choice(page: Page) -> str:
    return str(page.evaluate(f"({FOCUSED} || {{}}).dataset?.choice || ''"))


def settle(page: Page) -> None:
    """Wait until the widget has shown the answer to the last action."""
    expect(page.get_by_role("log")).to_have_attribute("aria-busy", "false")


def active_choices(page: Page) -> list[str]:
    choices: list[str] = page.eval_on_selector_all(
        ".passerelle-choices button:not([disabled])", "bs => bs.map(b => b.dataset.choice)"
    )
    return choices


def test_a_persona_clicks_and_types_to_a_recommendation(
    site: tuple[str, Path], page: Page, tmp_path: Path
) -> None:
    url, _ = site
    page.goto(url + "/")
    log = page.get_by_role("log")
    expect(log).to_have_attribute("aria-live", "polite")
    expect(page.locator("html")).to_have_attribute("lang", "fr")
    expect(
        page.get_by_role("button", name="Je vis avec une maladie ou un handicap")
    ).to_be_enabled()
    for step, choice in enumerate(PATIENT_TRAINER):
        if step == 1:
            # She types this answer instead of clicking.
            box = page.get_by_label("Votre message")
            box.fill("j'ai une maladie chronique")
            box.press("Enter")
        else:
            page.locator(
                f'.passerelle-choices button[data-choice="{choice}"]:not([disabled])'
            ).click()
        expect(page.locator(".passerelle-person").nth(step)).to_be_visible()
        settle(page)
    expect(log).to_contain_text("Pourquoi")
    expect(log).to_contain_text("patient")
    assert page.locator(".passerelle-error").count() == 0
    # Older buttons are disabled: only the latest choices can be pressed.
    assert "patient" not in active_choices(page)
    page.screenshot(path=str(tmp_path / "webchat.png"), full_page=True)
    # A reload resumes the same conversation from the stored transcript.
    page.reload()
    expect(page.get_by_role("log")).to_contain_text("Pourquoi")
    assert active_choices(page), "the latest choices are usable again after a reload"


def test_keyboard_only_reaches_a_recommendation(site: tuple[str, Path], page: Page) -> None:
    url, _ = site
    page.goto(url + "/")
    page.wait_for_selector(".passerelle-choices button:not([disabled])")
    # From the top of the page, Tab reaches the first choice.
    for _ in range(10):
        page.keyboard.press("Tab")
        if focused_choice(page):
            break
    for choice in PATIENT_TRAINER:
        offered = active_choices(page)
        assert choice in offered, (choice, offered)
        assert focused_choice(page) == offered[0], "focus is on the first of the new choices"
        for _ in range(offered.index(choice)):
            page.keyboard.press("Tab")
        assert focused_choice(page) == choice
        page.keyboard.press("Enter")
        settle(page)
        page.wait_for_function(
            f"(() => {{ const a = {FOCUSED}; return a && a.dataset.choice !== undefined"
            " && !a.disabled; })()"
        )
    expect(page.get_by_role("log")).to_contain_text("Pourquoi")
    # Typing works from the keyboard too: Tab to the text box, type, Enter.
    page.get_by_label("Votre message").focus()
    page.keyboard.type("aide")
    page.keyboard.press("Enter")
    expect(page.locator(".passerelle-person").last).to_have_text("Vous : aide")
    # Buttons are large enough to press (at least 44 × 44 CSS pixels).
    box = page.locator(".passerelle-choices button:not([disabled])").first.bounding_box()
    assert box is not None and box["height"] >= 44 and box["width"] >= 44


def test_replies_are_shown_as_text_never_as_html(site: tuple[str, Path], page: Page) -> None:
    url, _ = site
    page.goto(url + "/")
    page.wait_for_selector(".passerelle-choices button:not([disabled])")
    box = page.get_by_label("Votre message")
    box.fill('<img src=x onerror="window.pwned=1"><b>gras</b>')
    box.press("Enter")
    expect(page.locator(".passerelle-person").last).to_contain_text("<b>gras</b>")
    assert page.evaluate("window.pwned === undefined")
    assert page.locator(".passerelle-log img").count() == 0


def test_erase_button_deletes_the_stored_conversation(site: tuple[str, Path], page: Page) -> None:
    url, db = site
    page.goto(url + "/")
    page.locator('.passerelle-choices button[data-choice="patient"]').click()
    expect(page.locator(".passerelle-person")).to_have_count(1)
    settle(page)
    page.get_by_role("button", name="Effacer cette conversation").click()
    # It asks first; « Annuler » keeps everything.
    expect(page.get_by_text("Effacer définitivement cette conversation ?")).to_be_visible()
    assert person_lines(db) == 1
    assert violations(page) == []
    page.get_by_role("button", name="Annuler").click()
    expect(page.get_by_text("Effacer définitivement cette conversation ?")).to_be_hidden()
    expect(page.get_by_role("button", name="Effacer cette conversation")).to_be_focused()
    assert person_lines(db) == 1
    page.get_by_role("button", name="Effacer cette conversation").click()
    page.get_by_role("button", name="Oui, effacer").click()
    expect(page.get_by_role("log")).to_contain_text("Conversation effacée")
    page.wait_for_selector(".passerelle-choices button:not([disabled])")

    assert person_lines(db) == 0, "the person's answers are gone from the database"


def person_lines(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as connection:
        (count,) = connection.execute(
            "SELECT COUNT(*) FROM api_messages WHERE author = 'person'"
        ).fetchone()
    return int(count)


# -- on a phone, while waiting, after a failure ------------------------------------------------
def walk_to_recommendation(page: Page) -> None:
    for choice in PATIENT_TRAINER:
        page.locator(f'.passerelle-choices button[data-choice="{choice}"]:not([disabled])').click()
        settle(page)
    expect(page.get_by_role("log")).to_contain_text("Pourquoi")


def test_on_a_phone_the_page_fits_the_answer_starts_in_view_and_links_work(
    site: tuple[str, Path], browser: Browser
) -> None:
    url, _ = site
    context = browser.new_context(locale="fr-FR", viewport={"width": 360, "height": 740})
    page = context.new_page()
    page.set_default_timeout(BROWSER_WAIT_MS)
    try:
        page.goto(url + "/")
        walk_to_recommendation(page)
        # The page is as tall as its content (no hidden label stretching it far below).
        height = page.evaluate("document.documentElement.scrollHeight")
        bottom = page.evaluate(
            "document.querySelector('main').getBoundingClientRect().bottom + window.scrollY"
        )
        assert height <= bottom + 1, (height, bottom)
        # The log shows the start of the recommendation, not its end.
        first_role = page.locator(".passerelle-bot", has_text="Voici les rôles").last
        log_box = page.get_by_role("log").bounding_box()
        role_box = first_role.bounding_box()
        assert log_box is not None and role_box is not None
        assert log_box["y"] <= role_box["y"] <= log_box["y"] + 40, (log_box, role_box)
        # Web addresses are links that open safely in a new tab; nothing else is a link.
        links = page.locator(".passerelle-log a")
        expect(links.first).to_be_attached()
        for i in range(links.count()):
            href = links.nth(i).get_attribute("href") or ""
            assert href.startswith(("https://", "http://", "tel:")), href
            if href.startswith("http"):
                assert "noopener" in (links.nth(i).get_attribute("rel") or "")
                assert links.nth(i).get_attribute("target") == "_blank"
        # Nothing is wider than the phone: long addresses wrap inside their bubble.
        overflow = page.evaluate(
            "(() => { const log = document.querySelector('.passerelle-host').shadowRoot"
            ".querySelector('.passerelle-log'); return log.scrollWidth - log.clientWidth; })()"
        )
        assert overflow <= 0
        assert page.evaluate("document.documentElement.scrollWidth") <= 360
    finally:
        context.close()


def test_crisis_numbers_are_phone_links(site: tuple[str, Path], page: Page) -> None:
    url, _ = site
    page.goto(url + "/")
    settle(page)
    box = page.get_by_label("Votre message")
    box.fill("je veux mourir")
    box.press("Enter")
    number = page.locator('.passerelle-log a[href="tel:3114"]')
    expect(number).to_have_text("3114")
    expect(page.locator('.passerelle-log a[href="tel:112"]').first).to_be_visible()


def test_while_waiting_it_says_so_and_a_second_action_is_blocked_visibly(
    site: tuple[str, Path], page: Page
) -> None:
    url, _ = site
    held: list[Route] = []
    page.route("**/messages", lambda route: held.append(route))
    page.goto(url + "/")
    page.locator('.passerelle-choices button[data-choice="patient"]').click()
    expect(page.locator(".passerelle-typing")).to_have_text("Passerelle écrit…")
    # The other answers can no longer be pressed (they look disabled), nor the tools.
    expect(page.locator('.passerelle-choices button[data-choice="proche"]')).to_be_disabled()
    expect(page.get_by_role("button", name="Baromètre")).to_be_disabled()
    # Typing meanwhile is not lost: a visible note says why nothing was sent yet.
    box = page.get_by_label("Votre message")
    box.fill("et ensuite ?")
    box.press("Enter")
    expect(page.get_by_text("Passerelle répond encore")).to_be_visible()
    expect(box).to_have_value("et ensuite ?")
    assert page.locator(".passerelle-person").count() == 1
    for _ in range(250):  # the request is held by the route handler: wait until it is there
        if held:
            break
        page.wait_for_timeout(20)
    held[0].continue_()
    settle(page)
    expect(page.locator(".passerelle-typing")).to_have_count(0)
    expect(page.get_by_text("Passerelle répond encore")).to_be_hidden()
    assert active_choices(page), "the next question's answers can be pressed"


def test_a_message_that_failed_is_marked_and_can_be_sent_again(
    site: tuple[str, Path], page: Page
) -> None:
    url, db = site
    failures = [1]

    def flaky(route: Route) -> None:
        if failures:
            failures.pop()
            route.abort("internetdisconnected")
        else:
            route.continue_()

    page.route("**/messages", flaky)
    page.goto(url + "/")
    page.locator('.passerelle-choices button[data-choice="patient"]').click()
    settle(page)
    bubble = page.locator(".passerelle-person").last
    expect(bubble).to_contain_text("Non envoyé")
    expect(page.get_by_role("alert")).to_contain_text("Vérifiez votre connexion")
    assert person_lines(db) == 0
    assert violations(page) == []
    # The answers are usable again, and « Réessayer » sends the same message.
    assert "patient" in active_choices(page)
    page.get_by_role("button", name="Réessayer").click()
    settle(page)
    expect(bubble).not_to_contain_text("Non envoyé")
    expect(page.get_by_role("alert")).to_have_count(0)
    assert page.locator(".passerelle-person").count() == 1
    assert person_lines(db) == 1
    assert "patient" not in active_choices(page)


def test_the_chart_opens_full_size(kb: KnowledgeBase, tmp_path: Path, page: Page) -> None:
    db = tmp_path / "passerelle.db"
    engine = build_engine(kb)
    api = ConversationApi(
        engine,
        IntegrationStore(db),
        demo_key="pwk_demo_for_tests",
        features=Features(engine, FeatureStore(db)),
    )
    with serve(create_app(api)) as url:
        # The chart worker, started as `passerelle serve` starts it: on a loaded machine its
        # first start (importing matplotlib, loading the fonts) can outlast the page's
        # timeouts, so wait until it is warm, as a person arriving after start-up finds it.
        warm = charts.prestart()
        if warm is not None:
            warm.result(timeout=DEADLINE)
        rate_and_enlarge(page, url)


def rate_and_enlarge(page: Page, url: str) -> None:
    page.goto(url + "/")
    settle(page)
    page.get_by_role("button", name="Baromètre").click()
    settle(page)
    page.get_by_role(
        "button", name=re.compile("patient", re.IGNORECASE), disabled=False
    ).last.click()
    for number in range(1, 12):
        expect(page.locator(".passerelle-bot").last).to_contain_text(f"Critère {number} sur")
        page.get_by_role("button", name="2", exact=True, disabled=False).last.click()
        settle(page)
    chart = page.locator(".passerelle-figure img").last
    expect(chart).to_be_visible()
    alt = chart.get_attribute("alt") or ""
    # A short name for the picture; the scores are in the message just before it.
    assert 10 < len(alt) < 250, alt
    detail = page.locator(".passerelle-bot", has_text="2/4").last.inner_text()
    assert alt.removesuffix(". Le détail est dans le message précédent.") not in detail[40:]
    page.get_by_role("button", name="Agrandir le graphique").last.click()
    dialog = page.get_by_role("dialog", name="Graphique en grand")
    expect(dialog).to_be_visible()
    big = dialog.locator("img")
    natural, shown = big.evaluate("img => [img.naturalWidth, img.getBoundingClientRect().width]")
    assert natural > 300 and abs(natural - shown) < 1, (natural, shown)
    assert violations(page) == []
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("button", name="Agrandir le graphique").last).to_be_focused()


# -- axe-core, on the page and inside a hostile host page -----------------------------------
WCAG_AA = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}
HOSTILE_CSS = """
html { font-size: 10px; }
button { background: red !important; color: red !important; border: 0 !important; }
label { display: none !important; }
div { color: #eee; line-height: 0.8; }
.passerelle-log, .passerelle-msg { display: none !important; }
"""


def violations(page: Page) -> list[str]:
    results = Axe().run(page, options=WCAG_AA)
    return [
        f"{v['id']}: {[node['target'] for node in v['nodes']]}"
        for v in results.response["violations"]
    ]


def host_app(widget_origin: str, csp: str) -> Starlette:
    page = f"""<!doctype html>
<html lang="fr"><head><meta charset="utf-8"><title>Hôpital exemple</title>
<link rel="stylesheet" href="/host.css"></head>
<body><main><h1>Hôpital exemple</h1><p>Bienvenue sur le site de l'hôpital.</p>
<div id="chat"></div></main>
<script src="{widget_origin}/widget.js" data-key="pwk_demo_for_tests" data-target="chat"></script>
</body></html>"""

    async def home(request: Request) -> Response:
        return Response(page, media_type="text/html", headers={"content-security-policy": csp})

    async def css(request: Request) -> Response:
        return Response(HOSTILE_CSS, media_type="text/css")

    return Starlette(routes=[WebRoute("/", home), WebRoute("/host.css", css)])


def documented_csp(origin: str) -> str:
    """The policy docs/integration.md asks a host page to allow."""
    return (
        f"default-src 'self'; script-src 'self' {origin}; style-src 'self' {origin}; "
        f"connect-src 'self' {origin}; img-src 'self' data:"
    )


def test_no_wcag_violation_on_the_page(site: tuple[str, Path], page: Page) -> None:
    url, _ = site
    page.goto(url + "/")
    walk_to_recommendation(page)
    assert violations(page) == []


def test_inside_a_hostile_host_page_it_looks_its_own_and_has_no_wcag_violation(
    site: tuple[str, Path], page: Page
) -> None:
    url, _ = site
    with serve(host_app(url, documented_csp(url))) as host:
        assert host != url  # another origin, as on a hospital's site
        page.goto(host + "/")
        button = page.get_by_role("button", name="Je vis avec une maladie ou un handicap")
        expect(button).to_be_enabled()
        # The host's CSS does not reach inside: buttons keep their colours, the label shows.
        assert button.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(255, 255, 255)"
        expect(
            page.get_by_text("Votre message (ou choisissez une réponse ci-dessus)")
        ).to_be_visible()
        expect(page.get_by_role("log")).to_be_visible()
        walk_to_recommendation(page)
        assert violations(page) == []


def test_a_host_policy_that_blocks_the_service_is_not_called_a_network_failure(
    site: tuple[str, Path], page: Page
) -> None:
    url, _ = site
    strict = documented_csp(url).replace(f"connect-src 'self' {url}", "connect-src 'self'")
    with serve(host_app(url, strict)) as host:
        page.goto(host + "/")
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text("Content-Security-Policy")
        expect(alert).to_contain_text(url)
        expect(alert).not_to_contain_text("Vérifiez votre connexion")


def test_only_web_addresses_become_links_and_they_stay_whole(
    base_copy: Path, tmp_path: Path, page: Page
) -> None:
    """Even if a content editor writes a script address, only http(s) ones become links."""
    messages = base_copy / "messages.yaml"
    text = messages.read_text(encoding="utf-8")
    messages.write_text(
        text.replace(
            "    Je vais vous poser quelques questions courtes, une à la fois.",
            "    Je vais vous poser quelques questions courtes, une à la fois. Voir\n"
            "    javascript:alert(1) et https://www.exemple.org/partenariat/patients-partenaires"
            "/formation_continue?region=occitanie. Ou appelez le 01 23 45 67 89.",
        ),
        encoding="utf-8",
    )
    kb = load(base_copy)
    api = ConversationApi(
        build_engine(kb), IntegrationStore(tmp_path / "p.db"), demo_key="pwk_demo_for_tests"
    )
    page.set_viewport_size({"width": 360, "height": 740})
    with serve(create_app(api)) as url:
        page.goto(url + "/")
        welcome = page.locator(".passerelle-bot").first
        expect(welcome).to_contain_text("javascript:alert(1)")
        links = welcome.locator("a")
        expect(links).to_have_count(2)
        web = links.nth(0)
        address = "https://www.exemple.org/partenariat/patients-partenaires/formation_continue?region=occitanie"
        assert web.get_attribute("href") == address  # the final period is not part of it
        shown = web.evaluate(
            "a => [...a.childNodes].filter(n => n.nodeType === 3).map(n => n.data).join('')"
        )
        assert shown == address
        assert web.get_attribute("rel") == "noopener noreferrer"
        expect(links.nth(1)).to_have_attribute("href", "tel:0123456789")
        # On a phone the address wraps inside its bubble, at its / . - _ ? = only.
        box, bubble = web.bounding_box(), welcome.bounding_box()
        assert box is not None and bubble is not None
        assert box["x"] + box["width"] <= bubble["x"] + bubble["width"] + 0.5
        lines = web.evaluate(
            "a => { const r = document.createRange(); const out = [];"
            " for (const n of a.childNodes) { if (n.nodeType !== 3) continue;"
            "  r.selectNodeContents(n); out.push(r.getClientRects().length); } return out; }"
        )
        assert lines and all(count == 1 for count in lines), "no piece is cut mid-word"
