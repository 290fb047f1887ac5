"""The two lexicons an editor extends by hand (contenus/lexique/): conditions and places.

These tests read the YAML directly and fail on what an edit can break: an unknown category or
territory, a missing source, a word given to two conditions or to two places of different
territories, a département or postal prefix lost, an ambiguity that names nothing."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.engine.normalize import normalize

CONTENUS = Path(__file__).resolve().parents[2] / "contenus"
CONDITIONS = CONTENUS / "lexique" / "conditions.yaml"
PLACES = CONTENUS / "lexique" / "lieux.yaml"

CONDITION_FIELDS = {"id", "name", "phrase", "category", "words", "source"}
PLACE_FIELDS = {"id", "name", "kind", "territory", "at", "words", "source"}
DEPARTEMENT_FIELDS = PLACE_FIELDS | {"number", "postal"}
KINDS = {"pays", "region", "departement", "commune", "province", "canton", "region_qc", "ville"}
# What « vous vivez avec … » and « vous vivez … » are followed by.
ARTICLES = ("un ", "une ", "le ", "la ", "l'", "les ", "des ", "plusieurs ")
PLACE_PREPOSITIONS = ("à ", "au ", "aux ", "en ", "dans ", "sur ")

DEPARTEMENT_NUMBERS = {f"{n:02d}" for n in range(1, 96) if n != 20} | {"2A", "2B"}
DEPARTEMENT_NUMBERS |= {"971", "972", "973", "974", "976"}
FRENCH_REGIONS = [
    "fr-ara",
    "fr-bfc",
    "fr-bretagne",
    "fr-cvl",
    "fr-corse",
    "fr-grand-est",
    "fr-hdf",
    "fr-idf",
    "fr-normandie",
    "fr-nouvelle-aquitaine",
    "fr-occitanie",
    "fr-pdl",
    "fr-paca",
    "fr-guadeloupe",
    "fr-martinique",
    "fr-guyane",
    "fr-reunion",
    "fr-mayotte",
]


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.name}: the file must be a mapping"
    return data


@pytest.fixture(scope="module")
def conditions_file() -> dict[str, Any]:
    return _load(CONDITIONS)


@pytest.fixture(scope="module")
def conditions(conditions_file: dict[str, Any]) -> list[dict[str, Any]]:
    return list(conditions_file["conditions"])


@pytest.fixture(scope="module")
def places_file() -> dict[str, Any]:
    return _load(PLACES)


@pytest.fixture(scope="module")
def places(places_file: dict[str, Any]) -> list[dict[str, Any]]:
    return list(places_file["places"])


@pytest.fixture(scope="module")
def territories() -> dict[str, Any]:
    return dict(_load(CONTENUS / "territories.yaml")["territories"])


def experience_categories() -> set[str]:
    flow = _load(CONTENUS / "flow.yaml")
    for question in flow["questions"].values():
        if question.get("fact") == "experience":
            return {choice["id"] for choice in question["choices"]}
    raise AssertionError("flow.yaml has no question with fact: experience")


def _problems(found: list[str]) -> str:
    return "\n".join(found[:30]) + (f"\n… and {len(found) - 30} more" if len(found) > 30 else "")


def check_words(owner: str, words: Any) -> list[str]:
    if not isinstance(words, list) or not words:
        return [f"{owner}: words must be a non-empty list"]
    found = []
    for word in words:
        if not isinstance(word, str) or not word.strip():
            found.append(f"{owner}: empty or non-text word {word!r}")
        elif normalize(word) != word:
            found.append(f"{owner}: write {word!r} as {normalize(word)!r} (lower case, no accents)")
    if len(set(words)) != len(words):
        found.append(f"{owner}: a word is repeated")
    return found


# --- conditions -------------------------------------------------------------------------------


def test_at_least_300_conditions(conditions: list[dict[str, Any]]) -> None:
    assert len(conditions) >= 300


def test_every_condition_is_complete(conditions_file: dict[str, Any]) -> None:
    sources = conditions_file["sources"]
    categories = experience_categories()
    found: list[str] = []
    ids: set[str] = set()
    for number, entry in enumerate(conditions_file["conditions"], start=1):
        owner = f"condition {entry.get('id', f'n° {number}')}"
        if set(entry) != CONDITION_FIELDS:
            found.append(f"{owner}: fields must be exactly {sorted(CONDITION_FIELDS)}")
            continue
        if not re.fullmatch(r"[a-z0-9_]+", str(entry["id"])):
            found.append(f"{owner}: id is lower case letters, digits and _ only")
        if entry["id"] in ids:
            found.append(f"{owner}: id used twice")
        ids.add(entry["id"])
        if entry["category"] not in categories:
            found.append(f"{owner}: category {entry['category']!r} is not in {sorted(categories)}")
        if entry["source"] not in sources:
            found.append(f"{owner}: source {entry['source']!r} is not a key of sources:")
        if not str(entry["phrase"]).startswith(ARTICLES):
            found.append(f"{owner}: phrase {entry['phrase']!r} must start with un, une, le, la…")
        if not str(entry["name"]).strip():
            found.append(f"{owner}: empty name")
        found += check_words(owner, entry["words"])
    assert not found, _problems(found)


def test_every_source_is_described(
    conditions_file: dict[str, Any], places_file: dict[str, Any]
) -> None:
    for data in (conditions_file, places_file):
        for key, text in data["sources"].items():
            assert re.fullmatch(r"[a-z0-9_]+", key), key
            assert isinstance(text, str) and len(text) > 10, key


def test_no_word_belongs_to_two_conditions(conditions: list[dict[str, Any]]) -> None:
    owners: dict[str, list[str]] = defaultdict(list)
    for entry in conditions:
        for word in entry["words"]:
            owners[normalize(word)].append(entry["id"])
    shared = [f"{word!r}: {ids}" for word, ids in sorted(owners.items()) if len(ids) > 1]
    assert not shared, _problems(shared)


# The words the issue names, each with the category a person means by it.
EXPECTED_CATEGORIES = {
    "diabete": "chronique",
    "diabetique": "chronique",
    "diabete de type 1": "chronique",
    "diabete de type 2": "chronique",
    "diabete gestationnel": "chronique",
    "vih": "chronique",
    "sida": "chronique",
    "hepatite c": "chronique",
    "sclerose en plaques": "chronique",
    "sep": "chronique",
    "maladie de crohn": "chronique",
    "rch": "chronique",
    "endometriose": "chronique",
    "parkinson": "chronique",
    "alzheimer": "chronique",
    "avc": "chronique",
    "epilepsie": "chronique",
    "insuffisance cardiaque": "chronique",
    "insuffisance renale": "chronique",
    "dialyse": "chronique",
    "greffe": "chronique",
    "bpco": "chronique",
    "asthme": "chronique",
    "polyarthrite": "chronique",
    "fibromyalgie": "chronique",
    "obesite": "chronique",
    "douleur chronique": "chronique",
    "mucoviscidose": "maladie_rare",
    "drepanocytose": "maladie_rare",
    "hemophilie": "maladie_rare",
    "maladie de huntington": "maladie_rare",
    "sla": "maladie_rare",
    "maladie de charcot": "maladie_rare",
    "myopathie": "maladie_rare",
    "syndrome de rett": "maladie_rare",
    "maladie rare": "maladie_rare",
    "cancer": "cancer",
    "cancer du sein": "cancer",
    "cancer de la prostate": "cancer",
    "leucemie": "cancer",
    "lymphome": "cancer",
    "glioblastome": "cancer",
    "schizophrenie": "sante_mentale",
    "bipolaire": "sante_mentale",
    "depression": "sante_mentale",
    "anorexie": "sante_mentale",
    "toc": "sante_mentale",
    "burn out": "sante_mentale",
    "autisme": "handicap",
    "autiste": "handicap",
    "tdah": "handicap",
    "dyslexie": "handicap",
    "trisomie 21": "handicap",
    "paraplegique": "handicap",
    "sourd": "handicap",
    "aveugle": "handicap",
    "polyhandicap": "handicap",
    "alcool": "addiction",
    "alcoolique": "addiction",
    "cannabis": "addiction",
    "jeu pathologique": "addiction",
    "covid long": "autre",
}


def test_the_words_of_the_issue_are_understood(conditions: list[dict[str, Any]]) -> None:
    category = {word: entry["category"] for entry in conditions for word in entry["words"]}
    wrong = [
        f"{word!r}: expected {expected}, found {category.get(word)}"
        for word, expected in EXPECTED_CATEGORIES.items()
        if category.get(word) != expected
    ]
    assert not wrong, _problems(wrong)


# --- places -----------------------------------------------------------------------------------


def test_every_place_is_complete(places_file: dict[str, Any], territories: dict[str, Any]) -> None:
    sources = places_file["sources"]
    found: list[str] = []
    ids: set[str] = set()
    for number, entry in enumerate(places_file["places"], start=1):
        owner = f"place {entry.get('id', f'n° {number}')}"
        fields = DEPARTEMENT_FIELDS if entry.get("kind") == "departement" else PLACE_FIELDS
        if set(entry) != fields:
            found.append(f"{owner}: fields must be exactly {sorted(fields)}")
            continue
        if not re.fullmatch(r"[a-z0-9-]+", str(entry["id"])):
            found.append(f"{owner}: id is lower case letters, digits and - only")
        if entry["id"] in ids:
            found.append(f"{owner}: id used twice")
        ids.add(entry["id"])
        if entry["kind"] not in KINDS:
            found.append(f"{owner}: kind {entry['kind']!r} is not one of {sorted(KINDS)}")
        if entry["territory"] not in territories:
            found.append(f"{owner}: territory {entry['territory']!r} is not in territories.yaml")
        if entry["source"] not in sources:
            found.append(f"{owner}: source {entry['source']!r} is not a key of sources:")
        if not str(entry["at"]).startswith(PLACE_PREPOSITIONS):
            found.append(f"{owner}: at {entry['at']!r} must start with à, au, en, dans…")
        found += check_words(owner, entry["words"])
    assert not found, _problems(found)


def departements(places: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in places if p["kind"] == "departement"]


def test_all_101_departements(places: list[dict[str, Any]]) -> None:
    numbers = [str(p["number"]) for p in departements(places)]
    assert len(numbers) == len(set(numbers)), "a département number is used twice"
    assert set(numbers) == DEPARTEMENT_NUMBERS, (
        f"missing {sorted(DEPARTEMENT_NUMBERS - set(numbers))}, "
        f"unknown {sorted(set(numbers) - DEPARTEMENT_NUMBERS)}"
    )
    for place in departements(places):
        assert place["id"] == f"fr-dep-{str(place['number']).lower()}", place["id"]
        assert place["territory"].startswith("fr-"), place["id"]


def test_postal_prefixes_are_unique_and_cover_every_departement(
    places: list[dict[str, Any]],
) -> None:
    owner: dict[str, str] = {}
    for place in departements(places):
        postal = place["postal"]
        assert isinstance(postal, list) and postal, f"{place['id']}: postal must be a list"
        for prefix in postal:
            assert isinstance(prefix, str) and re.fullmatch(r"[0-9]{2,3}", prefix), (
                f"{place['id']}: postal prefix {prefix!r} must be 2 or 3 digits, in quotes"
            )
            assert prefix not in owner, f"postal {prefix} in {owner.get(prefix)} and {place['id']}"
            owner[prefix] = place["id"]
    for a in owner:
        for b in owner:
            assert a == b or not b.startswith(a), f"postal prefix {a} also starts {b}: ambiguous"


def departement_of_postcode(places: list[dict[str, Any]], code: str) -> str | None:
    for place in departements(places):
        if any(code.startswith(prefix) for prefix in place["postal"]):
            return str(place["id"])
    return None


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("29200", "fr-dep-29"),
        ("01000", "fr-dep-01"),
        ("75011", "fr-dep-75"),
        ("20000", "fr-dep-2a"),
        ("20137", "fr-dep-2a"),
        ("20200", "fr-dep-2b"),
        ("20600", "fr-dep-2b"),
        ("97100", "fr-dep-971"),
        ("97200", "fr-dep-972"),
        ("97300", "fr-dep-973"),
        ("97400", "fr-dep-974"),
        ("97600", "fr-dep-976"),
        ("95000", "fr-dep-95"),
    ],
)
def test_a_postcode_names_its_departement(
    places: list[dict[str, Any]], code: str, expected: str
) -> None:
    assert departement_of_postcode(places, code) == expected


def test_every_french_territory_has_its_region_departements_and_a_commune(
    places: list[dict[str, Any]],
) -> None:
    kinds: dict[str, set[str]] = defaultdict(set)
    for place in places:
        kinds[place["territory"]].add(place["kind"])
    missing = [
        f"{territory}: no {kind}"
        for territory in FRENCH_REGIONS
        for kind in ("region", "departement", "commune")
        if kind not in kinds[territory]
    ]
    assert not missing, _problems(missing)


def test_every_territory_outside_france_has_places(places: list[dict[str, Any]]) -> None:
    territories_found = {p["territory"] for p in places}
    for territory in ("lu", "be", "be-wallonie-bruxelles", "be-flandre", "ch", "qc"):
        assert territory in territories_found, territory


def test_a_word_names_one_place_or_is_ambiguous(places_file: dict[str, Any]) -> None:
    places = places_file["places"]
    ambiguous_words = {w for entry in places_file["ambiguous"] for w in entry["words"]}
    owners: dict[str, list[str]] = defaultdict(list)
    for place in places:
        for word in place["words"]:
            owners[word].append(place["id"])
    found = [
        f"{word!r} names {ids}: keep it in one place, or list it in ambiguous"
        for word, ids in sorted(owners.items())
        if len(ids) > 1
    ]
    found += [
        f"{word!r} is in ambiguous and also a word of {ids}: keep it only in ambiguous"
        for word, ids in sorted(owners.items())
        if word in ambiguous_words
    ]
    assert not found, _problems(found)


def test_every_ambiguity_names_places_of_different_territories(places_file: dict[str, Any]) -> None:
    by_id = {p["id"]: p for p in places_file["places"]}
    seen: set[str] = set()
    for entry in places_file["ambiguous"]:
        assert set(entry) == {"words", "places", "question"}, entry
        found = check_words(f"ambiguous {entry['words']}", entry["words"])
        assert not found, _problems(found)
        for word in entry["words"]:
            assert word not in seen, f"{word!r} is in two ambiguous entries"
            seen.add(word)
        assert len(entry["places"]) >= 2, entry
        unknown = [pid for pid in entry["places"] if pid not in by_id]
        assert not unknown, f"ambiguous {entry['words']}: unknown places {unknown}"
        territories = {by_id[pid]["territory"] for pid in entry["places"]}
        assert len(territories) == len(entry["places"]), (
            f"ambiguous {entry['words']}: its places must be of different territories"
        )
        assert str(entry["question"]).strip().endswith("?"), entry["question"]


def test_saint_denis_is_asked(places_file: dict[str, Any]) -> None:
    entry = next(e for e in places_file["ambiguous"] if "saint denis" in e["words"])
    assert set(entry["places"]) == {"saint-denis-reunion", "saint-denis-93"}


def test_no_word_is_both_a_condition_and_a_place(
    conditions: list[dict[str, Any]], places_file: dict[str, Any]
) -> None:
    condition_words = {w for entry in conditions for w in entry["words"]}
    place_words = {w for p in places_file["places"] for w in p["words"]}
    place_words |= {w for entry in places_file["ambiguous"] for w in entry["words"]}
    assert not condition_words & place_words, sorted(condition_words & place_words)


def test_the_lexicons_agree_with_the_choices_of_flow(
    conditions: list[dict[str, Any]], places_file: dict[str, Any], territories: dict[str, Any]
) -> None:
    """A word that is both a synonym of a choice and a lexicon entry means the same thing in both:
    « myopathie » is a rare disease for the question and for the lexicon, « liege » is Belgium."""
    flow = _load(CONTENUS / "flow.yaml")
    category = {w: entry["category"] for entry in conditions for w in entry["words"]}
    territory = {w: p["territory"] for p in places_file["places"] for w in p["words"]}
    ambiguous = {w for entry in places_file["ambiguous"] for w in entry["words"]}

    def ancestors(tid: str) -> set[str]:
        found = {tid}
        while territories.get(tid, {}).get("parent"):
            tid = territories[tid]["parent"]
            found.add(tid)
        return found

    wrong = []
    for qid, question in flow["questions"].items():
        for choice in question.get("choices", []):
            target = (choice.get("sets") or {}).get("territory")
            for word in (normalize(str(s)) for s in choice.get("synonyms", [])):
                meant = category.get(word, choice["id"])
                if question.get("fact") == "experience" and meant != choice["id"]:
                    wrong.append(f"{qid}/{choice['id']}: {word!r} is {meant} here")
                if target and word in territory and target not in ancestors(territory[word]):
                    wrong.append(f"{qid}/{choice['id']}: {word!r} is {territory[word]} here")
                if target and word in ambiguous:
                    wrong.append(f"{qid}/{choice['id']}: {word!r} is ambiguous here")
    assert not wrong, _problems(wrong)


# Everyday French that a lexicon word must never be on its own: « il aura », « ça dépend »,
# « à tour de rôle », « avec des cannes », « une goutte », « qu'il vienne », « c'est cher »…
# Such a name is written with its article or preposition instead (« le cher », « a tours »).
_EVERYDAY = """
    aura dependance tours cannes grasse goutte vienne cher lot somme manche digne romans bulle
    alma plaisir orange sens croix fontaine menton lourdes salon jeu jeux herbe joints casino
    cigarette medicaments morphine ecrans allergie allergies anxieux anxieuse angoisse dement
    demente premature prematuree poche charge les tag speed proto shit jette spa gaucher wilson
    still centre midi sud champagne saintes vitre dissociation melancolie
"""
EVERYDAY_WORDS = set(_EVERYDAY.split())


def test_no_everyday_word_stands_alone(
    conditions: list[dict[str, Any]], places_file: dict[str, Any]
) -> None:
    words = {w for entry in conditions for w in entry["words"]}
    words |= {w for place in places_file["places"] for w in place["words"]}
    words |= {w for entry in places_file["ambiguous"] for w in entry["words"]}
    assert not words & EVERYDAY_WORDS, sorted(words & EVERYDAY_WORDS)


def test_enough_communes(places: list[dict[str, Any]]) -> None:
    """The préfectures and the largest communes of France, Luxembourg's communes."""
    french = [p for p in places if p["kind"] == "commune" and p["territory"].startswith("fr-")]
    luxembourg = [p for p in places if p["kind"] == "commune" and p["territory"] == "lu"]
    assert len(french) >= 300
    assert len(luxembourg) >= 90
