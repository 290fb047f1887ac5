"""What changed between two versions of the knowledge base, in words for the changelog."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel

from bot.knowledge.model import KnowledgeBase, text


def _dump(value: object) -> object:
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def _changed_fields(old: BaseModel, new: BaseModel) -> list[str]:
    before, after = old.model_dump(mode="json"), new.model_dump(mode="json")
    return sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))


def _compare(kind: str, old: Mapping[str, BaseModel], new: Mapping[str, BaseModel]) -> list[str]:
    lines = [f"+ {kind} « {key} » ajouté" for key in new if key not in old]
    lines += [f"- {kind} « {key} » supprimé" for key in old if key not in new]
    for key in old:
        if key in new and _dump(old[key]) != _dump(new[key]):
            fields = _changed_fields(old[key], new[key])
            lines.append(f"~ {kind} « {key} » modifié ({', '.join(fields)})")
    return lines


def diff(old: KnowledgeBase, new: KnowledgeBase) -> list[str]:
    """One line per change: ``+`` added, ``-`` removed, ``~`` modified (with the fields)."""
    lines = [f"version {old.version} -> {new.version}"]
    lines += _compare("rôle", old.roles, new.roles)
    lines += _compare("question", old.questions, new.questions)
    for qid in old.questions.keys() & new.questions.keys():
        before = {c.id: c for c in old.questions[qid].choices}
        after = {c.id: c for c in new.questions[qid].choices}
        for change in _compare("choix", before, after):
            lines.append(f"{change[:2]}[{qid}] {change[2:]}")
        for cid in before.keys() & after.keys():
            if text(before[cid].label) != text(after[cid].label):
                lines.append(
                    f"~ [{qid}] libellé de « {cid} » : « {text(before[cid].label)} » -> "
                    f"« {text(after[cid].label)} »"
                )
    if old.flow.start != new.flow.start:
        lines.append(f"~ question de départ : {old.flow.start} -> {new.flow.start}")
    lines += _compare("contact", old.contacts, new.contacts)
    lines += _compare("terme", old.glossary, new.glossary)
    lines += _compare("territoire", old.territories, new.territories)
    return lines
