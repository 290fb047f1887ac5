"""Telegram rendering: the engine's replies as HTML messages, buttons laid out as good bots lay
them out, and callback data that fits Telegram's 64 bytes (with a fingerprint of the question a
button was shown with, so a stale tap is recognised). Pure functions: no PTB, no I/O.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from bot.engine.flow import CMD, NOT_THAT, RESUME, SKIP, TERM
from bot.engine.replies import CONTACTS, GUIDE, ROLE, STALE, Choice, Image, Reply

#: Telegram refuses messages over 4096 characters; keep a margin.
MESSAGE_LIMIT = 4000
CAPTION_LIMIT = 1000
CALLBACK_LIMIT = 64
#: Buttons that go on last rows of their own (back, resume, « not that », « skip »).
NAVIGATION = frozenset({CMD + "retour", RESUME, NOT_THAT, SKIP})
#: A scale (0–4) fits on one row: labels this short, this many buttons at most.
SCALE_WIDTH, SCALE_MAX = 3, 6
#: Labels up to this many characters go two per row on a phone.
TWO_COLUMNS_WIDTH = 20
#: Glossary terms shown per page (the rest behind « Suivant »).
GLOSSARY_PAGE = 8
#: Our own glossary paging buttons: ``p:g:<page>``.
PAGE_PREFIX = "p:g:"


# -- callback data --------------------------------------------------------------------------
def node_tag(node: str) -> str:
    """Short fingerprint of the question a button was shown with (for stale detection)."""
    return hashlib.blake2s(node.encode(), digest_size=4).hexdigest()


def choice_hash(choice_id: str) -> str:
    return hashlib.blake2s(choice_id.encode(), digest_size=8).hexdigest()


def encode_choice(node: str, choice_id: str) -> str:
    """``tag|choice`` when it fits Telegram's 64 bytes, else ``tag#hash-of-choice``."""
    data = f"{node_tag(node)}|{choice_id}"
    if len(data.encode()) <= CALLBACK_LIMIT:
        return data
    return f"{node_tag(node)}#{choice_hash(choice_id)}"


@dataclass(frozen=True)
class Outgoing:
    """One Telegram message: HTML text (or a photo with its caption) and its buttons."""

    text: str
    choices: tuple[Choice, ...] = ()
    image: Image | None = None


def esc(value: str) -> str:
    """Text for Telegram's HTML parse mode: whatever a person or a content file holds is shown
    as typed, never read as markup."""
    return html.escape(value, quote=False)


def split_text(body: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Cut ``body`` into pieces of at most ``limit`` characters, at paragraph, line or word
    boundaries when there is one."""
    pieces: list[str] = []
    rest = body
    while len(rest) > limit:
        window = rest[:limit]
        cut = max(window.rfind("\n\n"), window.rfind("\n"), window.rfind(" "))
        if cut < limit // 2:
            cut = limit
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest or not pieces:
        pieces.append(rest)
    return pieces


def _is_heading(line: str) -> bool:
    stripped = line.strip()
    return stripped.endswith(":") and not stripped.startswith(("•", "⚠", "-"))


def format_text(body: str, kind: str, *, first: bool = True, headings: Collection[str] = ()) -> str:
    """One reply's plain text as HTML: escaped everywhere; for roles, contacts and the guide,
    the title, the section headings and the contacts' names in bold."""
    if kind not in (ROLE, CONTACTS, GUIDE):
        return esc(body)
    out: list[str] = []
    previous = ""
    for index, line in enumerate(body.split("\n")):
        indent = line[: len(line) - len(line.lstrip())]
        prefix = next((h for h in headings if h and line.lstrip().startswith(h + " ")), None)
        if line and (
            (first and index == 0)
            or _is_heading(line)
            or (kind == GUIDE and not previous and not line.startswith(("•", "⚠")))
        ):
            out.append(f"<b>{esc(line)}</b>")
        elif kind == CONTACTS and line.startswith("• ") and " — " in line:
            name, rest = line[2:].split(" — ", 1)
            out.append(f"• <b>{esc(name)}</b> — {esc(rest)}")
        elif prefix is not None:
            rest = line.lstrip()[len(prefix) + 1 :]
            out.append(f"{indent}<b>{esc(prefix)}</b> {esc(rest)}")
        else:
            out.append(esc(line))
        previous = line
    return "\n".join(out)


def render(
    replies: Sequence[Reply], limit: int = MESSAGE_LIMIT, headings: Collection[str] = ()
) -> list[Outgoing]:
    """The engine's replies as Telegram messages (HTML). Plain consecutive texts are joined;
    each role, the contacts and the guide get a message of their own with bold headings;
    buttons go on the last piece. A picture is shown with its text alternative once: as its
    caption when it fits, otherwise as the message just before it (the reply announcing the
    picture is then redundant). Stale-button notes are dropped: the question is asked again."""
    messages: list[Outgoing] = []
    buffer: list[str] = []  # plain texts waiting to be joined

    def flush(choices: tuple[Choice, ...] = ()) -> None:
        if not buffer and not choices:
            return
        pieces = split_text("\n\n".join(buffer) or "…", limit)
        messages.extend(Outgoing(esc(piece)) for piece in pieces[:-1])
        messages.append(Outgoing(esc(pieces[-1]), choices))
        buffer.clear()

    for reply in replies:
        if reply.kind == STALE:
            continue
        if reply.image is not None:
            alt = reply.image.alt
            said = bool(buffer) and buffer[-1] == alt
            caption = ""
            if len(alt) <= CAPTION_LIMIT:
                caption = esc(alt)
                if said:
                    buffer.pop()
            elif not said:
                buffer.append(alt)
            flush()
            messages.append(Outgoing(caption, reply.choices, reply.image))
            continue
        if reply.kind in (ROLE, CONTACTS, GUIDE):
            flush()
            pieces = split_text(reply.text, limit - 200)  # room for the markup
            for index, piece in enumerate(pieces):
                body = format_text(piece, reply.kind, first=index == 0, headings=headings)
                last = index == len(pieces) - 1
                messages.append(Outgoing(body, reply.choices if last else ()))
            continue
        if buffer and len("\n\n".join([*buffer, reply.text])) > limit:
            flush()
        buffer.append(reply.text)
        if reply.choices:
            flush(reply.choices)
    flush()
    return messages


def label(choice: Choice) -> str:
    return choice.short or choice.label


def _columns(widest: int) -> int:
    return 3 if widest <= 12 else 2 if widest <= TWO_COLUMNS_WIDTH else 1


def layout(
    choices: Sequence[Choice], navigation: Collection[str] = NAVIGATION
) -> list[list[Choice]]:
    """Rows of buttons as good bots lay them out: a 0–4 scale on one row, short labels in three
    or two columns, long ones alone; « back », « resume », « skip » and « not that » last."""
    main = [c for c in choices if c.id not in navigation]
    nav = [c for c in choices if c.id in navigation]
    rows: list[list[Choice]] = []
    if main:
        widest = max(len(label(c)) for c in main)
        if widest <= SCALE_WIDTH and len(main) <= SCALE_MAX:
            rows = [main]
        elif widest <= TWO_COLUMNS_WIDTH:  # even columns, as a question reads best
            columns = _columns(widest)
            rows = [main[i : i + columns] for i in range(0, len(main), columns)]
        else:  # some labels are long: those alone, the short ones side by side, in order
            rows = _packed(main)
    return [*rows, *_packed(nav)]


def _packed(choices: Sequence[Choice]) -> list[list[Choice]]:
    """Rows in order: a long label alone, short ones side by side (two, or three if tiny)."""
    rows: list[list[Choice]] = []
    row: list[Choice] = []
    for choice in choices:
        trial = [*row, choice]
        if row and len(trial) <= _columns(max(len(label(c)) for c in trial)):
            row = trial
            continue
        if row:
            rows.append(row)
        row = [choice]
    if row:
        rows.append(row)
    return rows


def keyboard_rows(
    choices: Sequence[Choice], page: int = 0, pager: tuple[str, str] = ("◀", "▶")
) -> list[list[Choice]]:
    """The rows of a keyboard (see :func:`layout`); a long glossary is paged: ``page`` of it,
    with « previous » / « next » buttons (labels ``pager``) that edit the keyboard in place."""
    terms = [c for c in choices if c.id.startswith(TERM)]
    if len(terms) <= GLOSSARY_PAGE:
        return layout(choices)
    pages = -(-len(terms) // GLOSSARY_PAGE)
    page = min(max(page, 0), pages - 1)
    turns = []
    if page > 0:
        turns.append(Choice(f"{PAGE_PREFIX}{page - 1}", pager[0]))
    if page < pages - 1:
        turns.append(Choice(f"{PAGE_PREFIX}{page + 1}", pager[1]))
    shown = terms[page * GLOSSARY_PAGE : (page + 1) * GLOSSARY_PAGE]
    others = [c for c in choices if not c.id.startswith(TERM)]
    return [*layout(shown), *([turns] if turns else []), *layout(others)]
