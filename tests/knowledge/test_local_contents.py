"""An establishment's own contents (``PASSERELLE_CONTENUS_EXTRA``): merged at start-up,
validated like ``contenus/`` with file and line, and its contacts come first in its context."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.channels.http import ConversationApi, RateLimiter
from bot.config import ConfigError, load_settings
from bot.engine.flow import Engine
from bot.knowledge.loader import KnowledgeBaseError, load
from bot.server import create_app
from bot.storage.integration import IntegrationStore
from tests.harness.servers import serve

ROOT = Path(__file__).resolve().parents[2]
CONTENUS = ROOT / "contenus"
PATIENT_TRAINER = ("patient", "chronique", "stabilise", "former", "fr", "occitanie", "aucune",
                   "aucune", "mensuel")  # fmt: skip
TODAY = dt.date.today().isoformat()


def write_extra(directory: Path, role: str = "patient_partenaire_formateur") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "contacts.yaml").write_text(
        "contacts:\n"
        "  chu_toulouse_partenariat:\n"
        "    name: Mission partenariat du CHU de Toulouse\n"
        "    description: L'équipe qui accueille les patients partenaires du CHU.\n"
        "    website: https://www.chu-toulouse.fr\n"
        "    territories: [fr-occitanie]\n"
        f"    roles: [{role}]\n"
        "    establishment: chu-toulouse\n"
        "    why: L'équipe de votre hôpital, qui accueille les patients partenaires.\n"
        f"    checked: {TODAY}\n"
        '    sources: ["https://www.chu-toulouse.fr"]\n',
        encoding="utf-8",
    )
    (directory / "glossary.yaml").write_text(
        "terms:\n"
        "  comite_usagers_chu:\n"
        "    term: Comité des usagers du CHU\n"
        "    aliases: [comite des usagers du chu]\n"
        "    definition: Le groupe d'usagers qui donne son avis sur la vie du CHU.\n"
        "    sources: [chu-toulouse.fr]\n",
        encoding="utf-8",
    )
    return directory


@pytest.fixture
def local_engine(tmp_path: Path) -> Engine:
    return Engine(load(CONTENUS, write_extra(tmp_path / "chu")))


async def chu_key(db: Path) -> str:
    store = IntegrationStore(db)
    await store.open()
    key, _ = await store.create_key("chu-toulouse")
    await store.close()
    return key


@pytest.fixture
def url(local_engine: Engine, tmp_path: Path) -> Iterator[tuple[str, str]]:
    db = tmp_path / "db.sqlite"
    key = asyncio.run(chu_key(db))
    api = ConversationApi(local_engine, IntegrationStore(db), limiter=RateLimiter(1000, 1000))
    with serve(create_app(api)) as base:
        yield base, key


def recommended_contacts(server: tuple[str, str], context: str | None) -> list[str]:
    """The establishment's own secret key: only it may use the chu-toulouse context."""
    url, key = server
    headers = {"authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url + "/api/v1", headers=headers) as client:
        body = {"context": context} if context else {}
        cid = client.post("/conversations", json=body).json()["conversation_id"]
        turn: dict[str, object] = {}
        for choice in PATIENT_TRAINER:
            turn = client.post(f"/conversations/{cid}/messages", json={"choice": choice}).json()
    recommendation = turn["recommendation"]
    assert isinstance(recommendation, dict)
    return [contact["id"] for contact in recommendation["contacts"]]


def test_the_establishment_context_puts_its_own_contacts_first(url: tuple[str, str]) -> None:
    assert recommended_contacts(url, "chu-toulouse")[0] == "chu_toulouse_partenariat"
    others = recommended_contacts(url, None)
    assert others[0] != "chu_toulouse_partenariat"


def test_local_glossary_entries_are_merged(local_engine: Engine) -> None:
    assert "comite_usagers_chu" in local_engine.kb.glossary
    assert "partenariat_sante" in local_engine.kb.glossary, "the shared glossary stays"


def test_a_mistake_in_local_contents_names_the_file_and_line(tmp_path: Path) -> None:
    extra = write_extra(tmp_path / "chu", role="chirurgien_en_chef")
    with pytest.raises(KnowledgeBaseError) as caught:
        load(CONTENUS, extra)
    messages = [str(problem) for problem in caught.value.problems]
    assert any(
        f"{extra / 'contacts.yaml'}:7" in m and "chirurgien_en_chef" in m for m in messages
    ), messages


def test_kb_check_validates_local_contents_from_the_command_line(tmp_path: Path) -> None:
    extra = write_extra(tmp_path / "chu")
    (extra / "contacts.yaml").write_text(
        (extra / "contacts.yaml").read_text().replace("website:", "site:"), encoding="utf-8"
    )
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "kb", "check", str(CONTENUS), "--extra", str(extra)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 1
    assert f"{extra / 'contacts.yaml'}:5" in result.stderr
    assert "site" in result.stderr


def test_the_setting_must_name_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PASSERELLE_CONTENUS_EXTRA"):
        load_settings({"PASSERELLE_CONTENUS_EXTRA": str(tmp_path / "missing")})
    settings = load_settings({"PASSERELLE_CONTENUS_EXTRA": str(write_extra(tmp_path / "chu"))})
    assert settings.contenus_extra == tmp_path / "chu"
