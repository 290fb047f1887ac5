"""Load ``contenus/`` into a :class:`KnowledgeBase`, naming file and line for every problem.

Editors are not developers: any broken file gives :class:`KnowledgeBaseError` with a list of
``file:line: what to fix`` messages, never a traceback.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import pickle
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from bot.knowledge.checks import check
from bot.knowledge.checks.changelog import check_changelog
from bot.knowledge.model import (
    BarometerFile,
    ConditionsFile,
    ContactsFile,
    CrisisFile,
    FactsFile,
    FlowFile,
    GlossaryFile,
    GuideFile,
    KnowledgeBase,
    LanguageFile,
    Location,
    MessagesFile,
    Meta,
    PlacesFile,
    ProfilesFile,
    RolesFile,
    SafetyFile,
    SourceMap,
    TerritoriesFile,
)
from bot.knowledge.problems import Problem

Path_ = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


class KnowledgeBaseError(Exception):
    """The base is invalid; ``problems`` says where and what to fix."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


#: file name -> (model, required). Extra files (e.g. from later features) register here.
FILES: dict[str, tuple[type[BaseModel], bool]] = {
    "meta.yaml": (Meta, True),
    "roles.yaml": (RolesFile, True),
    "flow.yaml": (FlowFile, True),
    "glossary.yaml": (GlossaryFile, True),
    "territories.yaml": (TerritoriesFile, True),
    "contacts.yaml": (ContactsFile, True),
    "crisis.yaml": (CrisisFile, True),
    "guide.yaml": (GuideFile, True),
    "messages.yaml": (MessagesFile, True),
    "barometer.yaml": (BarometerFile, True),
    "safety.yaml": (SafetyFile, True),
    # Free-text understanding (optional: a base without them understands its own words only).
    "lexique/conditions.yaml": (ConditionsFile, False),
    "lexique/lieux.yaml": (PlacesFile, False),
    "lexique/langage.yaml": (LanguageFile, False),
    "lexique/profils.yaml": (ProfilesFile, False),
    "lexique/faits.yaml": (FactsFile, False),
}

#: Files an establishment may provide in its own directory (``PASSERELLE_CONTENUS_EXTRA``).
EXTRA_FILES = ("contacts.yaml", "glossary.yaml")

#: The C parser when PyYAML has it (the lexicons are long); both give the same nodes and lines.
_LOADER: type[yaml.SafeLoader | yaml.CSafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: What one file's text parses to, without its label: the data, the line of every value (by
#: path) and the problems (line, message).
Parsed = tuple[object, dict[Path_, int], list[tuple[int | None, str]]]

#: Recent parses by content digest, pickled (each load gets its own fresh objects). Reloading a
#: base, or a base where one file changed, parses only what changed; bounded to a few bases.
_PARSED: dict[bytes, bytes] = {}
_PARSED_MAX = 64
_PARSED_LOCK = threading.Lock()


def _to_python(
    node: yaml.Node,
    path: Path_,
    lines: dict[Path_, int],
    problems: list[tuple[int | None, str]],
    constructor: yaml.constructor.SafeConstructor,
) -> object:
    """The raw YAML value of ``node`` (unvalidated: the models check it)."""
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[object, object] = {}
        for key_node, value_node in node.value:
            key = constructor.construct_object(key_node)
            if isinstance(key, dt.date | int | float | bool) or key is None:
                key = str(key_node.value)
            if key in result:
                problems.append(
                    (
                        key_node.start_mark.line + 1,
                        f"la clé « {key} » apparaît deux fois : gardez-en une seule",
                    )
                )
                continue
            result[key] = _to_python(value_node, (*path, key), lines, problems, constructor)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _to_python(item, (*path, index), lines, problems, constructor)
            for index, item in enumerate(node.value)
        ]
    return constructor.construct_object(node)


def _parse(raw: str) -> Parsed:
    """Parse one file's text (a pure function of it: see :data:`_PARSED`)."""
    lines: dict[Path_, int] = {}
    problems: list[tuple[int | None, str]] = []
    try:
        node = yaml.compose(raw, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = exc.problem or exc.context or "syntaxe invalide"
        message = (
            f"YAML illisible ({what}) : vérifiez l'indentation, les deux-points "
            "et les guillemets autour des textes qui contiennent « : » ou « # »"
        )
        return None, lines, [(mark.line + 1 if mark else None, message)]
    except yaml.YAMLError as exc:
        return None, lines, [(None, f"YAML illisible : {exc}")]
    if node is None:
        return None, lines, [(1, "le fichier est vide")]
    # A constructor per parse: it remembers every node it built (PyYAML clears that memory
    # only in construct_document, which is not used here), so a shared one kept them all.
    constructor = yaml.constructor.SafeConstructor()
    try:
        data = _to_python(node, (), lines, problems, constructor)
    except yaml.YAMLError as exc:
        return None, {}, [(None, f"valeur YAML invalide : {exc}")]
    return data, lines, problems


def _parsed(raw: str) -> Parsed:
    key = hashlib.blake2b(raw.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    with _PARSED_LOCK:
        cached = _PARSED.get(key)
    if cached is not None:
        result: Parsed = pickle.loads(cached)
        return result
    result = _parse(raw)
    frozen = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
    with _PARSED_LOCK:
        _PARSED[key] = frozen
        while len(_PARSED) > _PARSED_MAX:
            del _PARSED[next(iter(_PARSED))]  # the oldest
    return result


def read_yaml(path: Path, file: str, source_map: SourceMap) -> tuple[object, list[Problem]]:
    """Parse one YAML file, recording the line of every value in ``source_map``."""
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return None, [
            Problem(Location(file, None), f"le fichier n'est pas en UTF-8 ({exc.reason})")
        ]
    data, lines, found = _parsed(raw)
    source_map.lines.update({(file, where): line for where, line in lines.items()})
    return data, [Problem(Location(file, line), message) for line, message in found]


_MESSAGES: dict[str, Callable[[ErrorDetails], str]] = {
    "missing": lambda e: f"champ obligatoire manquant : « {e['loc'][-1]} »",
    "extra_forbidden": lambda e: f"champ inconnu « {e['loc'][-1]} » (faute de frappe ?)",
    "string_type": lambda e: "un texte est attendu ici",
    "dict_type": lambda e: "une liste de clés (« nom: valeur ») est attendue ici",
    "list_type": lambda e: "une liste (lignes commençant par « - ») est attendue ici",
    "int_type": lambda e: "un nombre entier est attendu ici",
    "int_parsing": lambda e: "un nombre entier est attendu ici",
    "bool_type": lambda e: "oui/non attendu ici (true ou false)",
    "bool_parsing": lambda e: "oui/non attendu ici (true ou false)",
    "date_type": lambda e: "une date au format AAAA-MM-JJ est attendue ici",
    "date_from_datetime_parsing": lambda e: "une date au format AAAA-MM-JJ est attendue ici",
    "date_parsing": lambda e: "une date au format AAAA-MM-JJ est attendue ici",
    "too_short": lambda e: "cette liste ne peut pas être vide",
    "string_too_long": lambda e: "identifiant trop long (48 caractères au plus)",
    "literal_error": lambda e: f"valeur non reconnue : {e['ctx'].get('expected', '')} attendu",
}


def _explain(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind in _MESSAGES:
        return _MESSAGES[kind](error)
    if kind == "string_pattern_mismatch":
        pattern = error.get("ctx", {}).get("pattern", "")
        if "a-z0-9" in pattern:
            return (
                f"identifiant « {error['input']} » invalide : minuscules sans accent, chiffres, "
                "« _ » ou « - » seulement"
            )
        if "http" in pattern:
            return "adresse de site invalide : elle doit commencer par https://"
        return f"format invalide pour « {error['input']} »"
    if kind == "value_error":
        return str(error.get("ctx", {}).get("error", error["msg"]))
    return str(error["msg"])


def validate_file(
    model: type[M], data: object, file: str, source_map: SourceMap
) -> tuple[M | None, list[Problem]]:
    """Validate parsed YAML against ``model``; problems point at the offending line."""
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(
                part for part in error["loc"] if not (isinstance(part, str) and "[" in part)
            )
            if error["type"] == "missing":
                where = source_map.locate(file, loc[:-1])
            else:
                where = source_map.locate(file, loc)
            field = ".".join(str(p) for p in loc)
            problems.append(
                Problem(where, f"{_explain(error)}" + (f" (dans {field})" if field else ""))
            )
        return None, problems


def load_directory(
    directory: Path,
    names: Iterable[str],
    source_map: SourceMap,
    labels: dict[str, str],
    *,
    required: bool = True,
) -> tuple[dict[str, BaseModel], list[Problem]]:
    """Parse and validate the named files of ``directory``; ``labels`` gets each file's label."""
    parsed: dict[str, BaseModel] = {}
    problems: list[Problem] = []
    for name in names:
        model, is_required = FILES[name]
        path = directory / name
        label = str(path)
        labels[name] = label
        if not path.is_file():
            if is_required and required:
                problems.append(
                    Problem(Location(label, None), "fichier manquant dans la base de contenus")
                )
            continue
        data, found = read_yaml(path, label, source_map)
        problems += found
        if data is None:
            continue
        value, found = validate_file(model, data, label, source_map)
        problems += found
        if value is not None:
            parsed[name] = value
    return parsed, problems


def load(directory: str | Path, extra: str | Path | None = None) -> KnowledgeBase:
    """Load, validate and cross-check a base; raise :class:`KnowledgeBaseError` if invalid."""
    kb, problems = load_with_problems(directory, extra)
    errors = [p for p in problems if p.severity == "error"]
    if errors or kb is None:
        raise KnowledgeBaseError(errors)
    return kb


def load_with_problems(
    directory: str | Path, extra: str | Path | None = None
) -> tuple[KnowledgeBase | None, list[Problem]]:
    """Like :func:`load` but return every problem, warnings included, instead of raising."""

    root = Path(directory)
    if not root.is_dir():
        return None, [Problem(Location(str(root), None), "dossier de contenus introuvable")]
    source_map = SourceMap()
    labels: dict[str, str] = {}
    parsed, problems = load_directory(root, FILES, source_map, labels)
    if problems:
        return None, problems
    territories = _file(parsed, "territories.yaml", TerritoriesFile)
    kb = KnowledgeBase(
        meta=_file(parsed, "meta.yaml", Meta),
        roles=dict(_file(parsed, "roles.yaml", RolesFile).roles),
        flow=_file(parsed, "flow.yaml", FlowFile),
        glossary=dict(_file(parsed, "glossary.yaml", GlossaryFile).terms),
        territories=dict(territories.territories),
        contacts=dict(_file(parsed, "contacts.yaml", ContactsFile).contacts),
        crisis=_file(parsed, "crisis.yaml", CrisisFile),
        guide=_file(parsed, "guide.yaml", GuideFile),
        messages=dict(_file(parsed, "messages.yaml", MessagesFile).messages),
        safety=_file(parsed, "safety.yaml", SafetyFile),
        source_map=source_map,
        files=labels,
        extra={name: value for name, value in parsed.items() if name not in _CORE},
        country_words=dict(territories.country_words),
    )
    if extra is not None:
        problems += merge_extra(kb, Path(extra))
        if any(p.severity == "error" for p in problems):
            return None, problems
    problems += check(kb)
    problems += check_changelog(root / "CHANGELOG.md", kb.version)
    if any(p.severity == "error" for p in problems):
        return None, problems
    return kb, problems


def _file(parsed: dict[str, BaseModel], name: str, model: type[M]) -> M:
    """The validated file ``name`` (validated against ``model`` by :data:`FILES`)."""
    value = parsed[name]
    if not isinstance(value, model):
        raise TypeError(f"{name} was validated as {type(value).__name__}, not {model.__name__}")
    return value


_CORE = frozenset(
    {
        "meta.yaml",
        "roles.yaml",
        "flow.yaml",
        "glossary.yaml",
        "territories.yaml",
        "contacts.yaml",
        "crisis.yaml",
        "guide.yaml",
        "messages.yaml",
        "safety.yaml",
    }
)


def merge_extra(kb: KnowledgeBase, directory: Path) -> list[Problem]:
    """Merge an establishment's own contacts and glossary entries (theirs win on same id)."""
    if not directory.is_dir():
        return [Problem(Location(str(directory), None), "dossier de contenus locaux introuvable")]
    labels: dict[str, str] = {}
    parsed, problems = load_directory(directory, EXTRA_FILES, kb.source_map, labels, required=False)
    if "contacts.yaml" in parsed:
        for key, contact in _file(parsed, "contacts.yaml", ContactsFile).contacts.items():
            kb.contacts[key] = contact
            kb.origins[("contacts", key)] = labels["contacts.yaml"]
    if "glossary.yaml" in parsed:
        for key, term in _file(parsed, "glossary.yaml", GlossaryFile).terms.items():
            kb.glossary[key] = term
            kb.origins[("terms", key)] = labels["glossary.yaml"]
    return problems
