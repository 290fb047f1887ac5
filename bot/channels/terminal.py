"""Terminal channel: an interactive chat (``passerelle chat``) and a JSON-lines machine interface.

Each line goes through :class:`bot.app.conversation.ConversationService` like any channel's
input, with the session kept in this process's memory only: nothing typed here is stored.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Coroutine, Iterable
from typing import TextIO

from bot.app.conversation import ConversationService, DirectTransaction, Result
from bot.app.identity import Identity
from bot.engine.flow import Engine, Turn
from bot.engine.replies import Choice
from bot.engine.session import Input
from bot.json_types import loads

QUIT_WORDS = frozenset({"/quit", "/exit", ":q"})
#: The one person at this terminal.
PERSON = Identity("terminal", "terminal")


class Terminal:
    """The service for one person at the terminal, turn by turn (synchronous, as the terminal
    reads its lines); nobody is asked for consent since nothing outlives the process."""

    def __init__(self, engine: Engine) -> None:
        self.service = ConversationService.in_memory(engine)
        self.tx = DirectTransaction(self.service.storage)
        self.loop = asyncio.new_event_loop()

    def start(self, context: str | None) -> Turn:
        return self._turn(self.service.start(PERSON, self.tx, context=context))

    def handle(self, event: Input) -> Turn:
        return self._turn(self.service.turn(PERSON, event, self.tx))

    def _turn(self, work: Coroutine[object, object, Result]) -> Turn:
        result = self.loop.run_until_complete(work)
        assert result.turn is not None  # no consent gate here: the engine always answers
        return result.turn

    def close(self) -> None:
        self.loop.close()


def render(turn: Turn) -> tuple[str, list[Choice]]:
    """The turn as terminal text; choices of the last reply with buttons are numbered."""
    lines: list[str] = []
    numbered: list[Choice] = []
    for reply in turn.replies:
        lines.append(reply.text)
        if reply.image is not None:
            lines.append(f"[image : {reply.image.alt}]")
        if reply.choices:
            numbered = list(reply.choices)
            lines += [f"  {i}. {c.label}" for i, c in enumerate(reply.choices, start=1)]
        lines.append("")
    return "\n".join(lines), numbered


def to_input(line: str, numbered: list[Choice], node: str) -> Input:
    stripped = line.strip()
    if stripped.isdigit() and any(choice.label.isdigit() for choice in numbered):
        # Buttons labelled by numbers (the barometer's 0–4): a typed number means the label,
        # never the position; the engine reads it.
        return Input.text(line)
    if stripped.isdigit() and 1 <= int(stripped) <= len(numbered):
        return Input.choice(numbered[int(stripped) - 1].id, node)
    return Input.text(line)


def run_interactive(
    engine: Engine, stdin: TextIO, stdout: TextIO, context: str | None = None
) -> int:
    terminal = Terminal(engine)
    try:
        turn = terminal.start(context)
        prompt = "> " if stdin.isatty() else ""
        while True:
            output, numbered = render(turn)
            stdout.write(output + "\n")
            stdout.flush()
            if prompt:
                stdout.write(prompt)
                stdout.flush()
            line = stdin.readline()
            if not line or line.strip() in QUIT_WORDS:
                return 0
            turn = terminal.handle(to_input(line.rstrip("\n"), numbered, turn.node))
    finally:
        terminal.close()


def parse_json_input(line: str) -> Input | str:
    """One JSON-lines input, or an error message explaining the expected shape."""
    try:
        data = loads(line)
    except json.JSONDecodeError as exc:
        return f"JSON invalide ({exc.msg}, colonne {exc.colno})"
    if not isinstance(data, dict):
        return 'un objet JSON est attendu : {"text": "..."} ou {"choice": "..."}'
    unknown = set(data) - {"text", "choice", "command", "node"}
    if unknown:
        return f"champ(s) inconnu(s) : {', '.join(sorted(unknown))}"
    for key in ("choice", "text", "command"):
        value = data.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            return f"« {key} » doit être une chaîne"
        node = data.get("node")
        if key == "choice":
            return Input.choice(value, node if isinstance(node, str) else None)
        return Input.text(value) if key == "text" else Input.command(value)
    return 'attendu : {"text": "..."} ou {"choice": "..."}'


def run_json(
    engine: Engine, lines: Iterable[str], stdout: TextIO, context: str | None = None
) -> int:
    terminal = Terminal(engine)
    try:
        turn = terminal.start(context)
        stdout.write(json.dumps(turn.to_dict(), ensure_ascii=False) + "\n")
        stdout.flush()
        for line in lines:
            if not line.strip():
                continue
            parsed = parse_json_input(line)
            if isinstance(parsed, str):
                stdout.write(json.dumps({"error": parsed}, ensure_ascii=False) + "\n")
            else:
                turn = terminal.handle(parsed)
                stdout.write(json.dumps(turn.to_dict(), ensure_ascii=False) + "\n")
            stdout.flush()
        return 0
    finally:
        terminal.close()


def main(engine: Engine, as_json: bool, context: str | None = None) -> int:
    if as_json:
        return run_json(engine, sys.stdin, sys.stdout, context)
    return run_interactive(engine, sys.stdin, sys.stdout, context)
