# Over 400 lines on purpose: the barometer is one self-contained mode (steps, scores, groups).
"""The partnership barometer as an engine :class:`~bot.engine.flow.Mode` (seed 003).

Pure like the rest of the engine: no IO, no plotting, no storage. The person says who is rating
(professional, or patient / carer / RU), then rates each criterion of ``barometer.yaml`` from 0 to
4. At the end the mode emits ``barometer.completed`` with the scores; keeping the rating for a
group (with consent) is asked for with ``barometer.keep`` and a comparison with
``barometer.compare``. Channels hand these events to :mod:`bot.app.barometer`, which draws the
charts and talks to storage.

State lives in ``session.mode_state["barometer"]`` (JSON-safe) while ``session.mode`` is
``"barometre"``; leaving the mode removes both, and the orientation flow resumes where it was.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from bot.engine import events
from bot.engine.normalize import normalize
from bot.engine.replies import Choice, Event, Reply
from bot.engine.session import GROUPS_KEY, Input, Session
from bot.json_types import JsonObject, JsonValue, as_int, as_object
from bot.knowledge.model import BAROMETER_LEVELS, BarometerFile, KnowledgeBase, text

if TYPE_CHECKING:
    from bot.engine.flow import Engine, Turn

NAME = "barometre"
STATE = "barometer"
#: Codes of the groups this person joined in this session (set by the group service).
GROUPS = GROUPS_KEY

PREFIX = "baro:"
RATER = PREFIX + "rater:"
CREATE = PREFIX + "create"
JOIN = PREFIX + "join"
DISCARD = PREFIX + "discard"
COMPARE = PREFIX + "compare"
QUIT = PREFIX + "quit"
BACK = "cmd:retour"

#: Kept as the mode's names for its events (see :mod:`bot.engine.events`).
COMPLETED = events.BAROMETER_COMPLETED
KEEP = events.BAROMETER_KEEP
COMPARE_EVENT = events.BAROMETER_COMPARE

#: Group codes: 8 characters without look-alikes (no O/0, I/1), shown as ``ABCD-2345``.
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8

_NUMBER_WORDS = {
    "0": 0,
    "zero": 0,
    "1": 1,
    "un": 1,
    "une": 1,
    "2": 2,
    "deux": 2,
    "3": 3,
    "trois": 3,
    "4": 4,
    "quatre": 4,
}
#: Typed answers longer than this are not read as a score ("une" inside a sentence…).
MAX_SCORE_WORDS = 6


def new_code() -> str:
    """A fresh random group code (the caller checks it is not taken)."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def format_code(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


def parse_code(raw: str) -> str | None:
    """A typed group code in canonical form, or ``None`` if it cannot be one."""
    cleaned = re.sub(r"[\s\-_.]", "", raw).upper()
    if len(cleaned) != CODE_LENGTH or any(ch not in CODE_ALPHABET for ch in cleaned):
        return None
    return cleaned


def parse_score(raw: str, barometer: BarometerFile, lang: str = "fr") -> int | None:
    """``"3"``, ``"trois"``, ``"3/4"``, ``"3 sur 4"`` or a level's name (« souvent ») -> 3."""
    raw = re.sub(r"(\d)\s*/\s*4\b", r"\1", raw)
    norm = normalize(raw)
    norm = re.sub(r"\b(\w+) sur (?:4|quatre)$", r"\1", norm)
    if not norm:
        return None
    for level in BAROMETER_LEVELS:
        name = normalize(text(barometer.levels[level], lang).split(":")[0])
        if norm == name:
            return int(level)
    words = norm.split()
    if len(words) > MAX_SCORE_WORDS:
        return None
    values = {_NUMBER_WORDS[word] for word in words if word in _NUMBER_WORDS}
    return values.pop() if len(values) == 1 else None


@dataclass(frozen=True)
class DimensionScore:
    id: str
    label: str
    mean: float


@dataclass(frozen=True)
class Summary:
    """A rating read against ``barometer.yaml``: per criterion and per dimension."""

    criteria: tuple[tuple[str, str, str, int], ...]  # (dimension id, criterion id, text, score)
    dimensions: tuple[DimensionScore, ...]

    @property
    def strongest(self) -> tuple[DimensionScore, ...]:
        best = max(d.mean for d in self.dimensions)
        return tuple(d for d in self.dimensions if d.mean == best)

    @property
    def weakest(self) -> tuple[DimensionScore, ...]:
        worst = min(d.mean for d in self.dimensions)
        return tuple(d for d in self.dimensions if d.mean == worst)


def summarize(barometer: BarometerFile, scores: dict[str, int], lang: str = "fr") -> Summary:
    """Scores by criterion and dimension means; criteria without a score are left out."""
    rows: list[tuple[str, str, str, int]] = []
    dimensions: list[DimensionScore] = []
    for dim_id, dimension in barometer.dimensions.items():
        values = [scores[c.id] for c in dimension.criteria if c.id in scores]
        rows += [
            (dim_id, c.id, text(c.text, lang), scores[c.id])
            for c in dimension.criteria
            if c.id in scores
        ]
        if values:
            mean = round(sum(values) / len(values), 1)
            dimensions.append(DimensionScore(dim_id, text(dimension.label, lang), mean))
    return Summary(tuple(rows), tuple(dimensions))


def fmt_score(value: float) -> str:
    """``2.5`` -> ``"2,5"``; ``3.0`` -> ``"3"`` (French decimal comma)."""
    rounded = round(value, 1)
    if rounded == int(rounded):
        return str(int(rounded))
    return f"{rounded:.1f}".replace(".", ",")


class BarometerMode:
    """Rate each criterion of the barometer, one at a time, then decide what to keep."""

    name = NAME
    words = frozenset(
        {
            "barometre",
            "le barometre",
            "barometre du partenariat",
            "barometre de la relation",
            "auto evaluation",
            "autoevaluation",
            "evaluer notre partenariat",
        }
    )

    # -- entry -----------------------------------------------------------------------------
    def handle(self, engine: Engine, session: Session, event: Input) -> Turn:
        barometer = engine.kb.barometer
        if barometer is None or not barometer.criteria():
            return engine.turn(
                self._leave(session),
                Reply(engine.msg("not_understood", session)),
                engine.prompt(self._leave(session)),
            )
        state = session.mode_state.get(STATE)
        if session.mode != NAME or not isinstance(state, dict):
            return self._enter(engine, session)
        step = str(state.get("step", "rater"))
        if event.kind == "command":
            return self._command(engine, session, event.value.lstrip("/").strip().lower())
        if event.kind == "choice":
            return self._choice(engine, session, step, event.value)
        return self._text(engine, session, step, event.value)

    def _enter(self, engine: Engine, session: Session) -> Turn:
        entered = self._with_state(session, {"step": "rater"})
        barometer = engine.kb.barometer
        assert barometer is not None
        intro = f"{text(barometer.title, session.lang)}\n\n{text(barometer.intro, session.lang)}"
        return engine.turn(entered, Reply(intro), self.prompt(engine, entered))

    # -- what to show ----------------------------------------------------------------------
    def prompt(self, engine: Engine, session: Session) -> Reply:
        """The question for where the person stands in the barometer."""
        barometer = engine.kb.barometer
        assert barometer is not None
        state = self._state(session)
        step = state.get("step")
        lang = session.lang
        if step == "rating":
            criteria = barometer.criteria()
            index = as_int(state.get("index", 0))
            dim_id, criterion = criteria[index]
            levels = "\n".join(
                f"{level} — {text(barometer.levels[level], lang)}" for level in BAROMETER_LEVELS
            )
            body = engine.msg(
                "barometer_criterion",
                session,
                number=str(index + 1),
                total=str(len(criteria)),
                dimension=text(barometer.dimensions[dim_id].label, lang),
                criterion=text(criterion.text, lang),
                levels=levels,
            )
            buttons = [Choice(f"{PREFIX}{criterion.id}:{lvl}", lvl) for lvl in BAROMETER_LEVELS]
            buttons.append(Choice(BACK, engine.msg("barometer_back", session)))
            return Reply(body, tuple(buttons))
        if step == "keep":
            return Reply(
                engine.msg("barometer_keep", session),
                (
                    Choice(CREATE, engine.msg("barometer_create", session)),
                    Choice(JOIN, engine.msg("barometer_join", session)),
                    Choice(DISCARD, engine.msg("barometer_discard", session)),
                ),
            )
        if step == "code":
            return Reply(
                engine.msg("barometer_code_ask", session),
                (Choice(DISCARD, engine.msg("barometer_discard", session)),),
            )
        choices = [
            Choice(
                RATER + rater_id,
                text(rater.label, lang),
                text(rater.short, lang) if rater.short else None,
            )
            for rater_id, rater in barometer.raters.items()
        ]
        if session.groups:
            choices.append(Choice(COMPARE, engine.msg("barometer_compare", session)))
        choices.append(Choice(QUIT, engine.msg("barometer_quit", session)))
        return Reply(engine.msg("barometer_who", session), tuple(choices))

    # -- inputs ----------------------------------------------------------------------------
    def _command(self, engine: Engine, session: Session, name: str) -> Turn:
        if name in ("retour", "back"):
            return self._back(engine, session)
        if name in ("aide", "help", NAME):
            return self._again(engine, session, "barometer_help")
        if name == "stop":
            return self._quit(engine, session)
        # Every other command (recommencer, contacts…) leaves the barometer first.
        return engine.handle(self._leave(session), Input.command(name))

    def _choice(self, engine: Engine, session: Session, step: str, value: str) -> Turn:
        if value == BACK:
            return self._back(engine, session)
        if value.startswith("cmd:"):
            return self._command(engine, session, value[len("cmd:") :])
        if value == QUIT:
            return self._quit(engine, session)
        if value == COMPARE and step == "rater":
            return engine.turn(
                session, self.prompt(engine, session), events=(Event(COMPARE_EVENT, {}),)
            )
        if value.startswith(RATER) and step == "rater":
            return self._rater(engine, session, value[len(RATER) :])
        if step == "rating" and value.startswith(PREFIX):
            criterion_id, _, level = value[len(PREFIX) :].rpartition(":")
            if criterion_id == self._current_criterion(engine, session) and level.isdigit():
                return self._score(engine, session, int(level))
        if step in ("keep", "code"):
            if value == CREATE and step == "keep":
                return self._keep(engine, session, "create", None)
            if value == JOIN and step == "keep":
                asking = self._with_state(session, {**self._state(session), "step": "code"})
                return engine.turn(asking, self.prompt(engine, asking))
            if value == DISCARD:
                left = self._leave(session)
                return engine.turn(
                    left, Reply(engine.msg("barometer_discarded", session)), engine.prompt(left)
                )
        return self._again(engine, session, "stale_button")

    def _text(self, engine: Engine, session: Session, step: str, raw: str) -> Turn:
        barometer = engine.kb.barometer
        assert barometer is not None
        if len(raw) > 2000:
            return self._again(engine, session, "too_long")
        norm = normalize(raw)
        command = engine.matcher.command(norm) if norm else None
        if command is not None and not (step == "code" and parse_code(raw)):
            return self._command(engine, session, command)
        asked, term_id = engine.matcher.glossary_question(engine.understanding.plain(raw))
        if asked and not (step == "code" and parse_code(raw)):
            # « c koi un RU » is a question about a word, never a score (« un » is not 1).
            definition = engine.definition(term_id, session) if term_id else None
            body = definition or engine.msg("glossary_unknown", session)
            return engine.turn(session, Reply(body), self.prompt(engine, session))
        if norm in self.words:
            return self._again(engine, session, None)
        if step == "rating":
            score = parse_score(raw, barometer, session.lang)
            if score is not None:
                return self._score(engine, session, score)
            return self._again(engine, session, "barometer_not_a_score")
        if step == "rater":
            found = [
                rater_id
                for rater_id, rater in barometer.raters.items()
                if any(
                    re.search(rf"\b{re.escape(normalize(word))}\b", norm)
                    for word in [*rater.label.values(), rater_id]
                    + [w for words in rater.synonyms.values() for w in words]
                )
            ]
            if len(found) == 1:
                return self._rater(engine, session, found[0])
            if norm in ("comparer", "comparaison", "voir la comparaison") and session.groups:
                return self._choice(engine, session, step, COMPARE)
            return self._again(engine, session, "barometer_who_again")
        if step == "keep":
            if engine.matcher.confirmation(norm) is False:
                return self._choice(engine, session, step, DISCARD)
            code = parse_code(raw)
            if code is not None:
                return self._keep(engine, session, "join", code)
            return self._again(engine, session, "not_understood")
        # step == "code"
        if engine.matcher.confirmation(norm) is False:
            return self._choice(engine, session, step, DISCARD)
        code = parse_code(raw)
        if code is None:
            return self._again(engine, session, "barometer_code_invalid")
        return self._keep(engine, session, "join", code)

    # -- steps -----------------------------------------------------------------------------
    def _rater(self, engine: Engine, session: Session, rater_id: str) -> Turn:
        barometer = engine.kb.barometer
        assert barometer is not None
        if rater_id not in barometer.raters:
            return self._again(engine, session, "stale_button")
        rating = self._with_state(
            session, {"step": "rating", "rater": rater_id, "index": 0, "scores": {}}
        )
        instruction = text(barometer.raters[rater_id].instruction, session.lang)
        return engine.turn(rating, Reply(instruction), self.prompt(engine, rating))

    def _score(self, engine: Engine, session: Session, score: int) -> Turn:
        barometer = engine.kb.barometer
        assert barometer is not None
        state = self._state(session)
        criteria = barometer.criteria()
        index = as_int(state.get("index", 0))
        scores = {**scores_of(state), criteria[index][1].id: score}
        if index + 1 < len(criteria):
            nxt = self._with_state(session, {**state, "index": index + 1, "scores": dict(scores)})
            return engine.turn(nxt, self.prompt(engine, nxt))
        rater = str(state.get("rater"))
        done = self._with_state(session, {"step": "keep", "rater": rater, "scores": dict(scores)})
        event = Event(
            COMPLETED,
            {
                "rater": rater,
                "scores": dict(scores),
                "context": session.context,
                "kb_version": engine.kb.version,
            },
        )
        return engine.turn(
            done,
            Reply(self.result_text(engine, session, rater, scores)),
            self.prompt(engine, done),
            events=(event,),
        )

    def _keep(self, engine: Engine, session: Session, action: str, code: str | None) -> Turn:
        state = self._state(session)
        left = self._leave(session)
        event = Event(
            KEEP,
            {
                "action": action,
                "code": code,
                "rater": state.get("rater"),
                "scores": dict(scores_of(state)),
                "consent": True,
                "context": session.context,
                "kb_version": engine.kb.version,
            },
        )
        return engine.turn(left, engine.prompt(left), events=(event,))

    def code_unknown(self, engine: Engine, session: Session, data: Mapping[str, JsonValue]) -> Turn:
        """For the group service: the code typed matches no group; ask for it again.

        ``session`` is the one returned with the ``barometer.keep`` event (already out of the
        mode); the scores come back from the event so nothing typed so far is lost.
        """
        asking = self._with_state(
            session,
            {"step": "code", "rater": data.get("rater"), "scores": dict(scores_of(data))},
        )
        return engine.turn(
            asking,
            Reply(engine.msg("barometer_code_unknown", session)),
            self.prompt(engine, asking),
        )

    def _back(self, engine: Engine, session: Session) -> Turn:
        state = self._state(session)
        step = state.get("step")
        if step == "rating" and as_int(state.get("index", 0)) > 0:
            back = self._with_state(session, {**state, "index": as_int(state["index"]) - 1})
            return engine.turn(back, self.prompt(engine, back))
        if step == "rating":
            back = self._with_state(session, {"step": "rater"})
            return engine.turn(back, self.prompt(engine, back))
        if step == "code":
            back = self._with_state(session, {**state, "step": "keep"})
            return engine.turn(back, self.prompt(engine, back))
        if step == "keep":
            criteria = engine.kb.barometer.criteria() if engine.kb.barometer else []
            back = self._with_state(
                session, {**state, "step": "rating", "index": len(criteria) - 1}
            )
            return engine.turn(back, self.prompt(engine, back))
        return self._quit(engine, session)

    def _quit(self, engine: Engine, session: Session) -> Turn:
        left = self._leave(session)
        return engine.turn(left, Reply(engine.msg("barometer_left", session)), engine.prompt(left))

    def _again(self, engine: Engine, session: Session, key: str | None) -> Turn:
        """Ask again, never with the same sentence as the turn before: a second miss in a
        row gets ``barometer_again_other`` instead (and a third the first one again)."""
        if not key:
            return engine.turn(session, self.prompt(engine, session))
        state = as_object(session.mode_state.get(STATE))
        repeated = state.get("missed") == [key, session.turns - 1]
        body = engine.msg("barometer_again_other" if repeated else key, session)
        state["missed"] = None if repeated else [key, session.turns]
        session = replace(session, mode_state={**session.mode_state, STATE: state})
        return engine.turn(session, Reply(body), self.prompt(engine, session))

    # -- result ----------------------------------------------------------------------------
    def result_text(
        self, engine: Engine, session: Session, rater: str, scores: dict[str, int]
    ) -> str:
        """The text alternative of the chart: every score, the strongest and weakest dimension."""
        barometer = engine.kb.barometer
        assert barometer is not None
        lang = session.lang
        summary = summarize(barometer, scores, lang)
        who = text(barometer.raters[rater].who, lang) if rater in barometer.raters else rater
        lines = [engine.msg("barometer_result_intro", session, who=who)]
        for dimension in summary.dimensions:
            lines += ["", f"{dimension.label} — {fmt_score(dimension.mean)}/4"]
            lines += [
                f"• {criterion} : {score}/4"
                for dim_id, _, criterion, score in summary.criteria
                if dim_id == dimension.id
            ]
        lines.append("")
        lines += strongest_weakest(engine, session, summary)
        return "\n".join(lines)

    # -- state helpers ---------------------------------------------------------------------
    @staticmethod
    def _state(session: Session) -> JsonObject:
        return as_object(session.mode_state.get(STATE))

    @staticmethod
    def _with_state(session: Session, state: JsonObject) -> Session:
        return replace(
            session, pending=None, mode=NAME, mode_state={**session.mode_state, STATE: state}
        )

    @staticmethod
    def _leave(session: Session) -> Session:
        states = {k: v for k, v in session.mode_state.items() if k != STATE}
        return replace(session, mode=None, mode_state=states)

    def _current_criterion(self, engine: Engine, session: Session) -> str | None:
        barometer = engine.kb.barometer
        if barometer is None:
            return None
        criteria = barometer.criteria()
        index = as_int(self._state(session).get("index", 0))
        return criteria[index][1].id if 0 <= index < len(criteria) else None


def scores_of(state: Mapping[str, JsonValue]) -> dict[str, int]:
    """The scores given so far, by criterion id, from a mode state or a ``keep`` event."""
    return {k: as_int(v) for k, v in as_object(state.get("scores")).items()}


def strongest_weakest(engine: Engine, session: Session, summary: Summary) -> list[str]:
    """One line each for the strongest and weakest dimensions (or one line if all equal)."""
    if not summary.dimensions:
        return []
    strongest, weakest = summary.strongest, summary.weakest
    if strongest == weakest:
        return [engine.msg("barometer_equal", session, score=fmt_score(strongest[0].mean))]
    return [
        engine.msg(
            "barometer_strongest",
            session,
            dimension=" et ".join(d.label for d in strongest),
            score=fmt_score(strongest[0].mean),
        ),
        engine.msg(
            "barometer_weakest",
            session,
            dimension=" et ".join(d.label for d in weakest),
            score=fmt_score(weakest[0].mean),
        ),
    ]


def remember_group(session: Session, code: str) -> Session:
    """The session, knowing this person is a member of group ``code`` (shows « compare »)."""
    groups = [c for c in session.groups if c != code]
    return replace(session, groups=(*groups, code))


def barometer_of(kb: KnowledgeBase) -> BarometerFile:
    if kb.barometer is None:
        raise LookupError("barometer.yaml is not loaded")
    return kb.barometer


def choice_ids(kb: KnowledgeBase) -> list[str]:
    """Every button id the barometer can show (for channels that map callback data to ids)."""
    ids = [CREATE, JOIN, DISCARD, COMPARE, QUIT]
    if kb.barometer is not None:
        ids += [RATER + rater for rater in kb.barometer.raters]
        ids += [
            f"{PREFIX}{criterion.id}:{level}"
            for _, criterion in kb.barometer.criteria()
            for level in BAROMETER_LEVELS
        ]
    return ids
