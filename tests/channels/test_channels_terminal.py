"""The terminal channel: interactive chat, the JSON-lines interface, replay and kb test."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from bot.channels.corpus import load_corpus
from bot.channels.terminal import run_interactive, run_json
from bot.engine.flow import Engine
from tests.harness.paths import CONVERSATIONS, ROOT, UNDERSTANDING


def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        input=stdin, capture_output=True, text=True, cwd=ROOT, check=False, timeout=60,
    )  # fmt: skip


def test_json_interface_starts_before_reading(engine: Engine) -> None:
    out = io.StringIO()
    run_json(engine, [], out)
    (first,) = [json.loads(line) for line in out.getvalue().splitlines()]
    assert first["node"] == engine.kb.flow.start
    assert first["recommendation"] is None
    assert first["replies"][-1]["choices"][0].keys() == {"id", "label"}


def test_json_persona_to_recommendation(engine: Engine) -> None:
    steps = ["patient", "sante_mentale", "stabilise", "soutenir_pairs", "fr", "hdf", "aucune",
             "licence_msp", "metier"]  # fmt: skip
    lines = [json.dumps({"choice": s}) for s in steps]
    out = io.StringIO()
    run_json(engine, lines, out)
    outputs = [json.loads(line) for line in out.getvalue().splitlines()]
    last = outputs[-1]
    assert last["node"] == "recommendation"
    roles = last["recommendation"]["roles"]
    assert roles[0]["id"] == "pair_aidant"
    assert roles[0]["title"] and roles[0]["reasons"]
    assert last["recommendation"]["contacts"]


def test_json_bad_lines_get_an_error_and_lose_nothing(engine: Engine) -> None:
    lines = ['{"choice": "patient"}', "pas du json", "[1, 2]", '{"texte": "x"}', '{"text": 3}',
             '{"text": "chronique"}']  # fmt: skip
    out = io.StringIO()
    run_json(engine, lines, out)
    outputs = [json.loads(line) for line in out.getvalue().splitlines()]
    errors = [o["error"] for o in outputs if "error" in o]
    assert len(errors) == 4
    assert "JSON invalide" in errors[0]
    assert "texte" in errors[2]
    assert outputs[-1]["node"] == "recul", "the conversation went on after the errors"


def test_interactive_numbers_and_text(engine: Engine) -> None:
    stdin = io.StringIO("1\nchronik\n/quit\n")
    out = io.StringIO()
    assert run_interactive(engine, stdin, out) == 0
    text = out.getvalue()
    assert "  1. " in text
    assert "J'ai compris" in text
    assert engine.kb.questions["recul"].text["fr"] in text


def test_chat_json_subprocess() -> None:
    result = cli("chat", "--json", stdin='{"choice": "professionnel"}\n')
    assert result.returncode == 0, result.stderr
    outputs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["node"] for o in outputs] == ["profil", "pro_projet"]


def test_replay_prints_a_transcript() -> None:
    script = CONVERSATIONS / "07_fautes_sans_accents.yaml"
    result = cli("replay", str(script))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "vous (text): je sui patiant" in result.stdout
    assert "ok —" in result.stdout


def test_replay_fails_on_unmet_expectation(tmp_path: Path) -> None:
    script = tmp_path / "x.yaml"
    script.write_text("name: x\nsteps: [{choice: patient}]\nexpect: {node: exit}\n", "utf-8")
    result = cli("replay", str(script))
    assert result.returncode == 1
    assert "ÉCHEC" in result.stdout


def test_kb_test_runs_every_persona() -> None:
    result = cli("kb", "test")
    assert result.returncode == 0, result.stdout
    count = len(list(CONVERSATIONS.glob("*.yaml")))
    assert f"{count} passed, 0 failed" in result.stdout


def test_kb_test_gives_the_tuned_corpus_and_the_held_out_set_a_figure_each() -> None:
    counts = {True: 0, False: 0}
    for path in UNDERSTANDING.glob("*.yaml"):
        counts[path.name.startswith("holdout")] += len(load_corpus(path).utterances)
    result = cli("kb", "test")
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    for title, count in (("corpus de réglage", counts[False]), ("jeu tenu à part", counts[True])):
        expected = f"Compréhension ({title}) : {count} phrases comprises comme attendu sur {count}"
        assert expected in lines, result.stdout[-400:]
    assert counts[True] and counts[False]


def test_a_miss_of_the_held_out_set_is_counted_there_only(tmp_path: Path) -> None:
    for name in ("01_profil.yaml", "holdout_01_debut.yaml"):
        (tmp_path / name).write_text((UNDERSTANDING / name).read_text("utf-8"), "utf-8")
    held_out = load_corpus(tmp_path / "holdout_01_debut.yaml")
    tuned = load_corpus(tmp_path / "01_profil.yaml")
    wrong = tmp_path / "holdout_02_faux.yaml"
    wrong.write_text(
        "name: faux\nat: profil\nutterances:\n"
        '  - text: "je suis infirmière"\n    understood: {profile: patient}\n',
        "utf-8",
    )
    result = cli("kb", "test", "--corpus", str(tmp_path))
    assert result.returncode == 1
    n, m = len(tuned.utterances), len(held_out.utterances) + 1
    assert f"Compréhension (corpus de réglage) : {n} phrases comprises comme attendu sur {n}" in (
        result.stdout
    )
    assert f"Compréhension (jeu tenu à part) : {m - 1} phrases comprises comme attendu sur {m}" in (
        result.stdout
    )
    assert "ÉCHEC holdout_02_faux.yaml [profil] « je suis infirmière »" in result.stdout
