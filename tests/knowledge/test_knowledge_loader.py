"""The validator on deliberately broken bases: file, line and what to fix, never a traceback."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bot.knowledge.loader import KnowledgeBaseError, load, load_with_problems
from tests.harness.knowledge import errors, line_of


def test_shipped_base_is_valid(base_copy: Path) -> None:
    kb, problems = load_with_problems(base_copy)
    assert kb is not None, "\n".join(map(str, problems))
    assert [p for p in problems if p.severity == "error"] == []


def test_yaml_syntax_error_names_file_and_line(base_copy: Path) -> None:
    roles = base_copy / "roles.yaml"
    lines = roles.read_text(encoding="utf-8").splitlines()
    lines.insert(5, "  broken: [unclosed")
    roles.write_text("\n".join(lines) + "\n", encoding="utf-8")
    found = errors(base_copy)
    assert len(found) == 1
    assert re.match(rf"{re.escape(str(roles))}:\d+: erreur: YAML illisible", found[0])
    assert "indentation" in found[0]


def test_duplicate_key_is_reported_at_its_line(base_copy: Path) -> None:
    meta = base_copy / "meta.yaml"
    meta.write_text(meta.read_text(encoding="utf-8") + "version: 9.9.9\n", encoding="utf-8")
    found = errors(base_copy)
    expected_line = len(meta.read_text(encoding="utf-8").splitlines())
    assert any(f"meta.yaml:{expected_line}:" in e and "deux fois" in e for e in found), found


def test_unknown_role_in_scores_points_at_flow_line(base_copy: Path) -> None:
    flow = base_copy / "flow.yaml"
    data = flow.read_text(encoding="utf-8")
    match = re.search(r"scores: \{(\w+):", data)
    assert match, "the shipped flow scores roles inline"
    role = match.group(1)
    flow.write_text(data.replace(f"scores: {{{role}:", "scores: {role_inexistant:", 1), "utf-8")
    found = errors(base_copy)
    line = line_of(flow, "role_inexistant")
    assert any(f"flow.yaml:{line}:" in e and "role_inexistant" in e for e in found), found


def test_unreachable_question(base_copy: Path) -> None:
    flow = base_copy / "flow.yaml"
    data = yaml.safe_load(flow.read_text(encoding="utf-8"))
    data["questions"]["orpheline"] = {
        "text": "Jamais posée ?",
        "fact": "orpheline",
        "next": "orpheline",
        "choices": [{"id": "a", "label": "A"}, {"id": "b", "label": "B"}],
    }
    flow.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    found = errors(base_copy)
    assert any("« orpheline » n'est jamais posée" in e for e in found), found


def test_loop_without_exit_is_refused(base_copy: Path) -> None:
    flow = base_copy / "flow.yaml"
    data = yaml.safe_load(flow.read_text(encoding="utf-8"))
    start = data["start"]
    data["questions"]["boucle"] = {
        "text": "Encore ?",
        "fact": "boucle",
        "next": "boucle",
        "choices": [{"id": "oui", "label": "Oui"}, {"id": "encore", "label": "Encore"}],
    }
    data["questions"][start]["choices"][0]["next"] = "boucle"
    flow.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    found = errors(base_copy)
    assert any("depuis « boucle », aucun chemin" in e for e in found), found


def test_choice_leading_nowhere(base_copy: Path) -> None:
    flow = base_copy / "flow.yaml"
    data = yaml.safe_load(flow.read_text(encoding="utf-8"))
    start = data["start"]
    data["questions"][start]["choices"][0]["next"] = "question_fantome"
    flow.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    found = errors(base_copy)
    assert any("« question_fantome » n'est ni une question" in e for e in found), found


def test_two_choices_sharing_a_synonym(base_copy: Path) -> None:
    flow = base_copy / "flow.yaml"
    data = yaml.safe_load(flow.read_text(encoding="utf-8"))
    start = data["start"]
    first, second = data["questions"][start]["choices"][:2]
    second["synonyms"] = [*second.get("synonyms", []), first["label"].upper()]
    flow.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    found = errors(base_copy)
    assert any("désigne à la fois" in e for e in found), found


def test_unknown_field_and_missing_french(base_copy: Path) -> None:
    glossary = base_copy / "glossary.yaml"
    data = yaml.safe_load(glossary.read_text(encoding="utf-8"))
    term_id = next(iter(data["terms"]))
    data["terms"][term_id]["definiton"] = "faute de frappe"
    data["terms"][term_id]["term"] = {"en": "English only"}
    glossary.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    found = errors(base_copy)
    assert any("champ inconnu « definiton »" in e for e in found), found
    assert any("français" in e and "glossary.yaml:" in e for e in found), found


def test_stale_contact_is_a_warning_not_an_error(base_copy: Path) -> None:
    contacts = base_copy / "contacts.yaml"
    text = contacts.read_text(encoding="utf-8")
    old = (dt.date.today() - dt.timedelta(days=400)).isoformat()
    contacts.write_text(re.sub(r"checked: \S+", f"checked: {old}", text, count=1), "utf-8")
    kb, problems = load_with_problems(base_copy)
    assert kb is not None
    warnings = [str(p) for p in problems if p.severity == "warning"]
    assert any("plus de 12 mois" in w and f"contacts.yaml:{line_of(contacts, old)}" in w
               for w in warnings), warnings  # fmt: skip


def test_load_raises_with_every_problem(base_copy: Path) -> None:
    (base_copy / "guide.yaml").unlink()
    with pytest.raises(KnowledgeBaseError) as caught:
        load(base_copy)
    assert "guide.yaml" in str(caught.value)
    assert "fichier manquant" in str(caught.value)


def test_cli_check_refuses_broken_base_without_traceback(base_copy: Path) -> None:
    (base_copy / "flow.yaml").write_text("start: [\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "kb", "check", str(base_copy)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "flow.yaml:" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_engine_refuses_to_start_on_invalid_base(base_copy: Path) -> None:
    (base_copy / "roles.yaml").write_text("roles: 3\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "chat", "--contenus", str(base_copy)],
        input="", capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "roles.yaml:1" in result.stderr
    assert "ne démarre pas" in result.stderr
    assert "Traceback" not in result.stderr


def test_binary_garbage_gives_a_message(base_copy: Path) -> None:
    (base_copy / "crisis.yaml").write_bytes(b"\xff\xfe\x00garbage")
    found = errors(base_copy)
    assert any("crisis.yaml" in e and "UTF-8" in e for e in found), found


def test_contact_condition_on_an_unknown_answer(base_copy: Path) -> None:
    contacts = base_copy / "contacts.yaml"
    text = contacts.read_text(encoding="utf-8")
    contacts.write_text(text.replace("{experience: [sante_mentale, addiction]}",
                                     "{experiance: [sante_mentale]}", 1), "utf-8")  # fmt: skip
    found = errors(base_copy)
    line = line_of(contacts, "experiance")
    assert any(f"contacts.yaml:{line}:" in e and "experiance" in e for e in found), found


def test_a_button_label_too_long_for_a_phone_is_a_warning(base_copy: Path) -> None:
    flow = base_copy / "flow.yaml"
    text = flow.read_text(encoding="utf-8")
    long = "Une maladie chronique, au long cours, depuis des années"
    flow.write_text(
        text.replace("label: Une maladie chronique\n", f"label: {long}\n", 1).replace(
            '        short: "Maladie chronique"\n', "", 1
        ),
        "utf-8",
    )
    kb, problems = load_with_problems(base_copy)
    assert kb is not None
    warnings = [str(p) for p in problems if p.severity == "warning"]
    assert any(f"« {long} »" in w and "short" in w and "flow.yaml:" in w for w in warnings)
    # A short label over the limit is refused outright.
    flow.write_text(text.replace('short: "Maladie chronique"', f'short: "{long}"', 1), "utf-8")
    kb, problems = load_with_problems(base_copy)
    assert kb is None
    assert any("libellé court" in str(p) for p in problems if p.severity == "error")


def test_a_button_message_too_long_for_a_phone_is_a_warning(base_copy: Path) -> None:
    messages = base_copy / "messages.yaml"
    text = messages.read_text(encoding="utf-8")
    long = "Être mis en relation avec une personne de l'établissement"
    messages.write_text(
        text.replace("relation_button: Être mis en relation\n", f"relation_button: {long}\n", 1),
        "utf-8",
    )
    kb, problems = load_with_problems(base_copy)
    assert kb is not None
    warnings = [str(p) for p in problems if p.severity == "warning"]
    line = line_of(messages, long)
    assert any(f"« {long} »" in w and f"messages.yaml:{line}" in w for w in warnings), warnings


# -- the history of versions (CHANGELOG.md) ----------------------------------------------------
def changelog_warnings(base: Path) -> list[str]:
    kb, problems = load_with_problems(base)
    assert kb is not None, "\n".join(map(str, problems))
    return [str(p) for p in problems if p.severity == "warning" and "CHANGELOG.md" in str(p)]


def test_the_shipped_history_reads_right(base_copy: Path) -> None:
    """One paragraph per version, newest first, the first one the version of meta.yaml."""
    assert changelog_warnings(base_copy) == []
    history = (base_copy / "CHANGELOG.md").read_text(encoding="utf-8")
    version = yaml.safe_load((base_copy / "meta.yaml").read_text(encoding="utf-8"))["version"]
    first = re.search(r"^## (\S+)", history, re.MULTILINE)
    assert first is not None and first[1] == version


def test_a_version_bumped_without_its_paragraph_is_pointed_out(base_copy: Path) -> None:
    meta = base_copy / "meta.yaml"
    meta.write_text(re.sub(r"version: \S+", "version: 9.9.9", meta.read_text("utf-8")), "utf-8")
    [warning] = changelog_warnings(base_copy)
    assert "CHANGELOG.md:" in warning and "version 9.9.9" in warning


def test_a_version_with_two_paragraphs_or_out_of_order_is_pointed_out(base_copy: Path) -> None:
    history = base_copy / "CHANGELOG.md"
    second = line_of(history, "## 2.0.0 —")
    text = history.read_text("utf-8")
    text = text.replace("## 2.0.0 —", "## 2.1.0 —").replace("## 1.1.1 —", "## 1.3.0 —")
    history.write_text(text, "utf-8")
    warnings = changelog_warnings(base_copy)
    assert any("2.1.0 a déjà son paragraphe" in w for w in warnings), warnings
    assert any("1.3.0 est sous la 1.2.0" in w for w in warnings), warnings
    assert any(f"CHANGELOG.md:{second}:" in w for w in warnings), warnings
