"""The establishments deployment file is validated at start-up with clear, located errors."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from bot.knowledge.establishments import (
    EstablishmentsError,
    decode_secret,
    load_establishments,
    new_secret,
)

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "etablissements.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(EstablishmentsError) as caught:
        load_establishments(path, environ=env or {}, known_territories={"fr", "fr-occitanie"})
    return [str(problem) for problem in caught.value.problems]


def test_a_valid_file_with_the_secret_in_the_environment(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "establishments:\n"
        "  chu-a:\n"
        "    name: CHU A\n"
        "    contexts: [chu-a, chu-a-cardio]\n"
        "    territories: [fr-occitanie]\n"
        "    webhook:\n"
        "      url: https://partenariat.chu-a.fr/hook\n"
        "      secret_env: CHU_A_SECRET\n"
        "  maison-usagers:\n"
        "    name: Maison des usagers\n",
    )
    found = load_establishments(path, environ={"CHU_A_SECRET": SECRET})
    assert found["chu-a"].secret == b"k" * 32
    assert found["chu-a"].serves("chu-a-cardio", [])
    assert found["chu-a"].serves(None, ["fr-occitanie", "fr"])
    assert not found["chu-a"].serves("autre", ["fr"])
    assert found["maison-usagers"].webhook_url is None


def test_missing_secret_variable_names_it_and_the_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "establishments:\n"
        "  chu-a:\n"
        "    name: CHU A\n"
        "    webhook:\n"
        "      url: https://x.fr/hook\n"
        "      secret_env: CHU_A_SECRET\n",
    )
    (message,) = problems(path)
    assert f"{path}:5" in message and "CHU_A_SECRET" in message


def test_typos_plain_http_unknown_territory_and_short_secret_are_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "establishments:\n  chu-a:\n    name: CHU A\n    territoires: [fr]\n",
    )
    (message,) = problems(path)
    assert f"{path}:4" in message and "territoires" in message
    path = write(
        tmp_path,
        "establishments:\n"
        "  chu-a:\n"
        "    name: CHU A\n"
        "    territories: [fr-atlantide]\n"
        "    webhook:\n"
        "      url: http://chu-a.fr/hook\n"
        "      secret: trop-court\n",
    )
    found = problems(path)
    assert any(f"{path}:4" in m and "fr-atlantide" in m for m in found)
    assert any("trop court" in m for m in found)
    assert not any("https" in m for m in found[:1])
    path = write(
        tmp_path,
        "establishments:\n"
        "  chu-a:\n"
        "    name: CHU A\n"
        "    webhook:\n"
        "      url: http://chu-a.fr/hook\n"
        f"      secret: {SECRET}\n",
    )
    (message,) = problems(path)
    assert "https://" in message


def test_secrets_are_standard_webhooks_secrets() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_") and len(decode_secret(secret)) == 32
    with pytest.raises(ValueError, match="base64"):
        decode_secret("whsec_%%%")


def test_kb_check_validates_the_establishments_file_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.cli import main

    path = write(
        tmp_path,
        "establishments:\n  chu-a:\n    name: CHU A\n    territories: [fr-atlantide]\n",
    )
    assert main(["kb", "check", "--etablissements", str(path)]) == 1
    out, err = capsys.readouterr()
    assert f"{path}:4: erreur:" in err and "fr-atlantide" in err
    assert "1 erreur(s)" in err and "Base valide" not in out

    write(tmp_path, "establishments:\n  chu-a:\n    name: CHU A\n    territories: [fr-occitanie]\n")
    assert main(["kb", "check", "--etablissements", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Base valide" in out and f"Établissements valides ({path}) : chu-a." in out
