"""The web chat in a real headless Chromium (Debian's, driven by Playwright): a persona clicks
and types through to a recommendation, and the same is possible with the keyboard alone."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from bot.app import build_engine
from bot.channels.http import ConversationApi, create_app
from bot.knowledge.model import KnowledgeBase
from bot.storage.integration import IntegrationStore
from tests.live import serve

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PATIENT_TRAINER = ("patient", "chronique", "stabilise", "former", "fr", "occitanie", "aucune",
                   "aucune", "mensuel")  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def site(kb: KnowledgeBase, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    db = tmp_path / "passerelle.db"
    api = ConversationApi(build_engine(kb), IntegrationStore(db), demo_key="pwk_demo_for_tests")
    with serve(create_app(api)) as url:
        yield url, db


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(locale="fr-FR")
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def active_choices(page: Page) -> list[str]:
    return page.eval_on_selector_all(
        ".passerelle-choices button:not([disabled])", "bs => bs.map(b => b.dataset.choice)"
    )


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
        page.wait_for_function("!document.querySelector('.passerelle-log[aria-busy=true]')")
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
        if page.evaluate("document.activeElement.dataset.choice || ''"):
            break
    for choice in PATIENT_TRAINER:
        offered = active_choices(page)
        assert choice in offered, (choice, offered)
        focused = page.evaluate("document.activeElement.dataset.choice || ''")
        assert focused == offered[0], "focus is on the first of the new choices"
        for _ in range(offered.index(choice)):
            page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.dataset.choice") == choice
        page.keyboard.press("Enter")
        page.wait_for_function(
            "document.activeElement && document.activeElement.dataset.choice !== undefined"
            " && !document.activeElement.disabled"
            " && !document.querySelector('.passerelle-log[aria-busy=true]')"
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
    page.get_by_role("button", name="Effacer cette conversation").click()
    expect(page.get_by_role("log")).to_contain_text("Conversation effacée")
    page.wait_for_selector(".passerelle-choices button:not([disabled])")

    with contextlib.closing(sqlite3.connect(db)) as connection:
        (count,) = connection.execute(
            "SELECT COUNT(*) FROM api_messages WHERE author = 'person'"
        ).fetchone()
    assert count == 0, "the person's answers are gone from the database"
