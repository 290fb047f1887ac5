"""Scripted conversations: the "test channel". A YAML script of inputs and expectations is
played against the engine and printed as a transcript (``passerelle replay``, ``kb test``, pytest).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from bot.engine.flow import Engine, Turn
from bot.engine.session import Input


class Expect(BaseModel):
    model_config = ConfigDict(extra="forbid")

    node: str | None = None
    #: ``true``/``false``: the bot said back what it understood (or not); a mapping: the facts
    #: the bot holds after this step (``{profile: proche, place: quimper}``; ``null``: absent).
    understood: bool | dict[str, str | None] | None = None
    reply_contains: list[str] = []
    reply_excludes: list[str] = []
    roles_first: str | None = None
    roles_include: list[str] = []
    roles_exclude: list[str] = []
    reasons_include: list[str] = []
    not_yet_for: list[str] = []
    contacts_include: list[str] = []
    contacts_first: str | None = None
    choices_include: list[str] = []


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    choice: str | None = None
    text: str | None = None
    command: str | None = None
    node: str | None = None
    expect: Expect | None = None


class Script(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    context: str | None = None
    steps: list[Step]
    expect: Expect


@dataclass
class Outcome:
    name: str
    transcript: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    final: Turn | None = None

    @property
    def ok(self) -> bool:
        return not self.failures


def load_script(path: Path) -> Script:
    data: object = yaml.safe_load(path.read_text(encoding="utf-8"))
    try:
        return Script.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"{path}: script invalide : {exc}") from exc


def _to_input(step: Step) -> Input:
    if step.choice is not None:
        return Input.choice(step.choice, step.node)
    if step.command is not None:
        return Input.command(step.command)
    return Input.text(step.text or "")


def check(expect: Expect, turn: Turn, understood_as: bool) -> list[str]:
    """Unmet expectations, in words a content editor understands."""
    failures: list[str] = []
    everything = "\n".join(reply.text for reply in turn.replies)
    if expect.node is not None and turn.node != expect.node:
        failures.append(f"attendu à l'étape « {expect.node} », arrivé à « {turn.node} »")
    if isinstance(expect.understood, bool) and understood_as != expect.understood:
        failures.append("réponse comprise" if understood_as else "réponse non comprise")
    if isinstance(expect.understood, dict):
        for fact, value in expect.understood.items():
            held = turn.understood.get(fact)
            if held != value:
                wanted = "rien" if value is None else f"« {value} »"
                failures.append(f"« {fact} » : attendu {wanted}, compris « {held} »")
    for fragment in expect.reply_contains:
        if fragment.lower() not in everything.lower():
            failures.append(f"la réponse ne contient pas « {fragment} »")
    for fragment in expect.reply_excludes:
        if fragment.lower() in everything.lower():
            failures.append(f"la réponse contient « {fragment} » alors qu'elle ne devrait pas")
    offered = {c.id for reply in turn.replies for c in reply.choices}
    for choice in expect.choices_include:
        if choice not in offered:
            failures.append(f"le bouton « {choice} » n'est pas proposé")
    reco = turn.recommendation
    wants_reco = (
        expect.roles_first or expect.roles_include or expect.roles_exclude
        or expect.contacts_include or expect.contacts_first or expect.not_yet_for
        or expect.reasons_include
    )  # fmt: skip
    if wants_reco and reco is None:
        return [*failures, "aucune recommandation n'a été faite"]
    if reco is None:
        return failures
    roles = [role.id for role in reco.roles]
    if expect.roles_first and (not roles or roles[0] != expect.roles_first):
        failures.append(f"premier rôle attendu « {expect.roles_first} », obtenu {roles}")
    for role in expect.roles_include:
        if role not in roles:
            failures.append(f"le rôle « {role} » manque dans {roles}")
    for role in expect.roles_exclude:
        if role in roles:
            failures.append(f"le rôle « {role} » ne devrait pas être recommandé")
    for role_id in expect.not_yet_for:
        match = next((r for r in reco.roles if r.id == role_id), None)
        if match is None or not match.not_yet:
            failures.append(f"« {role_id} » devrait dire ce qui n'est pas encore à portée")
    all_reasons = " ".join(reason for role in reco.roles for reason in role.reasons).lower()
    for fragment in expect.reasons_include:
        if fragment.lower() not in all_reasons:
            failures.append(f"aucune raison ne contient « {fragment} »")
    contacts = [contact.id for contact in reco.contacts]
    for contact in expect.contacts_include:
        if contact not in contacts:
            failures.append(f"le contact « {contact} » manque dans {contacts}")
    if expect.contacts_first and (not contacts or contacts[0] != expect.contacts_first):
        failures.append(f"premier contact attendu « {expect.contacts_first} », obtenu {contacts}")
    return failures


def play(engine: Engine, script: Script) -> Outcome:
    outcome = Outcome(script.name)
    turn = engine.start(script.context)
    outcome.transcript += [f"bot: {reply.text}" for reply in turn.replies]
    last_reco = turn.recommendation
    for number, step in enumerate(script.steps, start=1):
        event = _to_input(step)
        outcome.transcript.append(f"vous ({event.kind}): {event.value}")
        turn = engine.handle(turn.session, event)
        last_reco = turn.recommendation or last_reco
        understood_as = any(
            reply.text.startswith(engine.msg("understood_as", turn.session, label="").split("«")[0])
            for reply in turn.replies
        )
        for reply in turn.replies:
            outcome.transcript.append(f"bot: {reply.text}")
            if reply.choices:
                outcome.transcript.append(
                    "     [" + " | ".join(f"{c.label} ({c.id})" for c in reply.choices) + "]"
                )
        if step.expect is not None:
            outcome.failures += [
                f"étape {number} : {f}" for f in check(step.expect, turn, understood_as)
            ]
    final = turn if turn.recommendation else Turn(turn.replies, turn.session, last_reco)
    outcome.final = final
    outcome.failures += [f"fin : {f}" for f in check(script.expect, final, False)]
    return outcome


def play_file(engine: Engine, path: Path) -> Outcome:
    return play(engine, load_script(path))
