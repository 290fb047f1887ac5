"""``kb check`` on broken lexicons (``contenus/lexique/``): file, line and what to fix."""

from __future__ import annotations

from pathlib import Path

from bot.knowledge.loader import load_with_problems
from tests.harness.knowledge import errors, line_of

LEXIQUE = "lexique"


def replace_once(path: Path, old: str, new: str) -> int:
    """Replace the first ``old`` in ``path``; the line number it was on."""
    content = path.read_text(encoding="utf-8")
    assert old in content, old
    line = line_of(path, old)
    path.write_text(content.replace(old, new, 1), encoding="utf-8")
    return line


def test_unknown_condition_category(base_copy: Path) -> None:
    path = base_copy / LEXIQUE / "conditions.yaml"
    line = replace_once(path, "category: chronique", "category: chroniquee")
    found = errors(base_copy)
    assert any(f"conditions.yaml:{line}:" in e and "chroniquee" in e for e in found), found


def test_unknown_place_territory(base_copy: Path) -> None:
    path = base_copy / LEXIQUE / "lieux.yaml"
    line = replace_once(path, "territory: fr-bretagne", "territory: fr-armorique")
    found = errors(base_copy)
    assert any(f"lieux.yaml:{line}:" in e and "fr-armorique" in e for e in found), found


def test_profile_words_name_a_choice_of_the_profile_question(base_copy: Path) -> None:
    path = base_copy / LEXIQUE / "profils.yaml"
    line = replace_once(path, "choice: proche", "choice: famille")
    found = errors(base_copy)
    assert any(f"profils.yaml:{line}:" in e and "famille" in e for e in found), found


def test_fact_words_for_a_renamed_choice_are_a_warning(base_copy: Path) -> None:
    path = base_copy / LEXIQUE / "faits.yaml"
    line = replace_once(path, "    partager: [", "    raconter: [")
    _, problems = load_with_problems(base_copy)
    found = [str(p) for p in problems if p.severity == "warning"]
    assert any(f"faits.yaml:{line}:" in e and "raconter" in e for e in found), found
    assert not errors(base_copy), "the base still loads: those phrases are only unused"


def test_a_phrase_for_two_choices_of_one_question(base_copy: Path) -> None:
    path = base_copy / LEXIQUE / "faits.yaml"
    replace_once(path, "    former: [", "    former: [temoigner, ")
    found = errors(base_copy)
    assert any("faits.yaml" in e and "temoigner" in e for e in found), found


def test_a_contraction_is_one_word(base_copy: Path) -> None:
    path = base_copy / LEXIQUE / "langage.yaml"
    line = replace_once(path, "  jveux: je veux", "  j veux: je veux")
    found = errors(base_copy)
    assert any(f"langage.yaml:{line}:" in e and "un seul mot" in e for e in found), found


def test_a_typo_in_a_field_name_is_located(base_copy: Path) -> None:
    path = base_copy / LEXIQUE / "langage.yaml"
    line = replace_once(path, "negation:", "negations:")
    found = errors(base_copy)
    assert any(f"langage.yaml:{line}:" in e and "negations" in e for e in found), found


def test_a_missing_understanding_message(base_copy: Path) -> None:
    path = base_copy / "messages.yaml"
    replace_once(path, "  not_that: Ce n'est pas ça", "  not_that_old: Ce n'est pas ça")
    found = errors(base_copy)
    assert any("messages.yaml" in e and "not_that" in e for e in found), found


def test_overlapping_postal_ranges_of_one_country(base_copy: Path) -> None:
    path = base_copy / LEXIQUE / "lieux.yaml"
    line = replace_once(
        path,
        "{first: 1300, last: 1499, place: be-prov-brabant-wallon",
        "{first: 1200, last: 1499, place: be-prov-brabant-wallon",
    )
    found = errors(base_copy)
    assert any(f"lieux.yaml:{line}:" in e and "recouvre" in e for e in found), found


def test_a_postal_range_to_an_unknown_place(base_copy: Path) -> None:
    path = base_copy / LEXIQUE / "lieux.yaml"
    line = replace_once(path, "place: be-prov-namur, source: bpost", "place: namurr, source: bpost")
    found = errors(base_copy)
    assert any(f"lieux.yaml:{line}:" in e and "namurr" in e for e in found), found
