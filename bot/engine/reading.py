"""Applying what a typed message says (see :mod:`bot.engine.understanding`): answer the question,
keep the rest for later, replace an earlier answer a clearer one changes, ask when it is
ambiguous.

Functions of the :class:`~bot.engine.flow.Engine` (their ``self``), bound there as methods.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from bot.engine.base import (
    PLACE,
    Turn,
    choice_of,
    has_choice,
    reads_more,
)
from bot.engine.places import (
    country_of,
    next_target,
    offered,
)
from bot.engine.recommendation import facts_of
from bot.engine.replies import (
    Choice,
    Reply,
)
from bot.engine.session import (
    EXITED,
    UNKNOWN,
    Session,
    Undo,
)
from bot.engine.understanding import Reading
from bot.knowledge.model import RECOMMENDATION, Question, text

if TYPE_CHECKING:
    from bot.engine.flow import Engine


def understand(
    self: Engine, session: Session, raw: str, plain: str, undo: object | None = None
) -> Turn:
    """A typed message at a question: read it whole, answer what it answers, keep the rest."""
    question = self.kb.questions[session.node]
    reading = self.understanding.read(raw, session.node, self._country(session))
    if reading.wrong:
        return self._not_that(session, undo if isinstance(undo, Undo) else None)
    if reading.why:
        why = text(question.why, session.lang) if question.why else self.msg("why_default", session)
        return self.turn(session, Reply(why), self.prompt(session))
    if reading.skip:
        return self._skip(session, question)
    if reading.smalltalk is not None:
        if plain in self.matcher.yes or plain in self.matcher.no:
            # « ouais », « nan » answer a yes/no question (« oui », « non » choices).
            word = "oui" if plain in self.matcher.yes else "non"
            found = self.matcher.choice(session.node, word)
            if found is not None and found.exact:
                return self._answer(session, question, found.index, echo=True)
        exact = self.matcher.choice(session.node, plain)
        if exact is None or not exact.exact:
            return self._smalltalk(session, reading.smalltalk)
    elif plain in self.matcher.no and plain not in ("non",):
        found = self.matcher.choice(session.node, "non")
        if found is not None and found.exact:
            return self._answer(session, question, found.index, echo=True)
    place_number = (
        session.node in self.understanding.place_questions
        and reading.place is not None
        and plain.isdigit()
        and len(plain) >= 2
    )
    exact = None if place_number else self.matcher.exact_choice(session.node, plain)
    session = self._note_gender(session, plain)
    if exact is not None:
        index = self._shown_number(session, question, plain, exact.index)
        reading.answers[session.node] = [question.choices[index].id]
        return self._apply(
            session, reading, echo=not reading.empty and reads_more(reading, session.node)
        )
    if reading.unknown and reading.empty:
        return self._skip(session, question)
    close = None if place_number or not reading.empty else self.matcher.choice(session.node, plain)
    if close is not None and not reading.negated:
        index = self._shown_number(session, question, plain, close.index)
        return self._answer(session, question, index, echo=not close.exact)
    if reading.empty:
        return self._missed(session, question, plain)
    return self._apply(session, reading, echo=True)


def apply(self: Engine, session: Session, reading: Reading, echo: bool) -> Turn:
    """Keep what ``reading`` says (answer the question, remember the rest), say it back."""
    question_id = session.node
    question = self.kb.questions[question_id]
    before = self._snapshot(session)
    if reading.place is not None:
        for qid, choice_id in self._place_answers(reading.place).items():
            reading.answers[qid] = [choice_id]
    elif reading.ambiguous_place is not None and self.kb.places is not None:
        entry = self.kb.places.ambiguous[reading.ambiguous_place]
        choices = self._place_choices(
            [pid for pid in entry.places if pid in self.understanding.places], session
        )
        session, _ = self._keep(session, reading, exclude=())
        return self.turn(session, Reply(text(entry.question, session.lang), choices))
    elif reading.postal is not None and self.kb.places is not None:
        return self._which_country(session, reading)
    country = country_of(self.kb, facts_of(self.kb, session.answers))
    mine = [
        c
        for c in reading.answers.get(question_id, [])
        if has_choice(question, c) and offered(choice_of(question, c), country)
    ]
    ahead = question_id
    if mine:
        facts = facts_of(self.kb, (*session.answers, (question_id, mine[0])))
        ahead = next_target(question, choice_of(question, mine[0]), facts) or question_id
    answered = {q for q, _ in session.answers}
    reachable = self._reachable(ahead) | answered | {question_id}
    if reading.place is not None:
        reachable |= set(self._place_answers(reading.place))  # it may change the path
    for qid in [q for q in reading.answers if q not in reachable]:
        del reading.answers[qid]
    if len(mine) > 1 and not question.multiple:
        first, second = (choice_of(question, c) for c in mine[:2])
        session, _ = self._keep(session, reading, exclude=(question_id,))
        body = self.msg(
            "ambiguous",
            session,
            first=self._label(first, session),
            second=self._label(second, session),
        )
        choices = (
            Choice(first.id, self._label(first, session)),
            Choice(second.id, self._label(second, session)),
        )
        return self.turn(session, Reply(body, choices))
    kept, rerouted = self._keep(session, reading, exclude=(question_id,))
    for qid in list(reading.answers):
        # Say back only what was kept (not a fact already answered and left as it was).
        if qid == question_id:
            continue
        now = kept.prefill.get(qid)
        if now is None and (qid, reading.answers[qid][0]) not in set(kept.answers) - set(
            session.answers
        ):
            del reading.answers[qid]
    if rerouted:
        # A clearer answer on another path (« en fait je suis infirmière », « j'habite à
        # Liège » on the France path): the flow follows it, and the say-back tells it.
        said = self._said(kept, reading, question_id)
        line = " ".join(x for x in (said, self.msg("said_changed", session)) if x)
        prefill = {**kept.prefill, question_id: tuple(mine)} if mine else kept.prefill
        moved = replace(kept, undo=before, prefill=prefill, stopped_at=None)
        return self._advance(self._settled(moved), moved.node, [Reply(line)])
    if reading.place is not None:
        wanted = self._place_answers(reading.place)
        held = {
            **{q: c for q, c in kept.answers},
            **{q: c[0] for q, c in kept.prefill.items() if c},
        }
        if question_id in wanted:
            held[question_id] = wanted[question_id] if mine[:1] == [wanted[question_id]] else ""
        if any(held.get(q) != c for q, c in wanted.items()):
            # A place on another path (« en Belgique » once France is answered): not kept,
            # not said back; « retour » changes the country.
            reading.place = None
            kept = replace(kept, place=session.place)
    session = kept
    said = self._said(session, reading, question_id) if echo else ""
    if said:
        session = replace(session, undo=before)
    replies = [Reply(said)] if said else []
    if not mine:
        if question_id in session.prefill:
            # Answered by an earlier message (kept while a place was asked): go on.
            return self._advance(self._settled(session), question_id, replies)
        # Something else was understood, not the answer to this question: ask it again.
        return self.turn(session, *replies, self.prompt(session))
    session = replace(session.answered(question_id, mine[0]), stopped_at=None)
    for extra_choice in mine[1:]:
        session = session.answered(question_id, extra_choice)
    target = next_target(question, choice_of(question, mine[0]), facts_of(self.kb, session.answers))
    return self._advance(self._settled(session), target, replies)


def snapshot(session: Session) -> Undo:
    """What « Ce n'est pas ça » restores."""
    return Undo(
        session.node,
        session.answers,
        dict(session.prefill),
        session.condition,
        session.place,
        session.relative,
    )


def late(self: Engine, session: Session, reading: Reading) -> Turn | None:
    """After the recommendation, a clearer place or profile (« en fait j'habite à Genève »)
    is applied and the recommendation given again; None when the message changes nothing."""
    if reading.place is None and not reading.profile_said:
        return None
    if reading.place is not None:
        for qid, choice_id in self._place_answers(reading.place).items():
            reading.answers[qid] = [choice_id]
    before = self._snapshot(session)
    kept, rerouted = self._keep(session, reading, exclude=())
    if kept.answers == session.answers:
        return None
    said = self._said(kept, reading, "")
    line = " ".join(x for x in (said, self.msg("said_changed", session)) if x)
    moved = replace(kept, undo=before)
    target = moved.node if rerouted else RECOMMENDATION
    return self._advance(self._settled(moved), target, [Reply(line)])


def keep(
    self: Engine, session: Session, reading: Reading, exclude: tuple[str, ...]
) -> tuple[Session, bool]:
    """Remember facts for later questions; replace an earlier answer a clearer one changes.
    True when such a change puts the person on another path (the node is then the first
    question left to ask on it)."""
    rerouted = False
    prefill = dict(session.prefill)
    answers = list(session.answers)
    answered = {q for q, _ in answers}
    for qid, choices in reading.answers.items():
        question = self.kb.questions.get(qid)
        if qid in exclude or question is None:
            continue
        valid = [c for c in choices if has_choice(question, c)]
        if not valid:
            continue
        if qid in answered:
            old = [c for q, c in answers if q == qid]
            if old == valid[:1] or not self._named(reading, qid):
                continue
            facts = facts_of(self.kb, session.answers)
            after = next_target(question, choice_of(question, valid[0]), facts)
            if old[0] == UNKNOWN or after != next_target(
                question, choice_of(question, old[0]), facts
            ):
                rerouted = True  # another path: the flow follows it (see :meth:`_walk`)
            answers = [(q, valid[0] if q == qid else c) for q, c in answers]
            answers = [pair for i, pair in enumerate(answers) if pair not in answers[:i]]
            continue
        prefill[qid] = tuple(valid if question.multiple else valid[:1])
    kept = replace(
        session,
        answers=tuple(answers),
        prefill=prefill,
        condition=reading.condition or session.condition,
        place=reading.place or session.place,
        relative=reading.relative or session.relative,
    )
    if not rerouted:
        return kept, False
    walked, node = self._walk(kept.answers)
    ahead = self._reachable(node)
    later = {q: tuple(c for q2, c in kept.answers if q2 == q) for q, _ in kept.answers}
    prefill.update({q: cs for q, cs in later.items() if q in ahead and q not in dict(walked)})
    return replace(kept, answers=walked, node=str(node or EXITED), prefill=prefill), True


def which_country(self: Engine, session: Session, reading: Reading) -> Turn:
    """A four-digit postal code of several countries: ask which, never guess. Each button
    is the place the code means there, labelled with the country's name."""
    postal = self.kb.places.postal_codes if self.kb.places is not None else None
    assert reading.postal is not None and postal is not None
    code, place_ids = reading.postal
    choices = []
    for place_id in place_ids:
        place = self.understanding.places[place_id]
        country = self.kb.territories[place.territory].country
        named = self.understanding.places.get(country, place)
        choices.append(Choice(PLACE + place_id, text(named.name, session.lang)))
    session, _ = self._keep(session, reading, exclude=())
    body = text(postal.question, session.lang).format(code=code)
    return self.turn(session, Reply(body, tuple(choices)))


def named(self: Engine, reading: Reading, question_id: str) -> bool:
    """Is the fact for ``question_id`` backed by a named condition or place? Only those may
    replace an answer already given (« en fait c'est une sclérose en plaques »)."""
    if reading.condition and question_id == self.understanding.experience_question:
        return True
    if reading.profile_said and question_id == self.understanding.profile_question:
        return True
    return reading.place is not None and question_id in self._place_answers(reading.place)


def shown_number(self: Engine, session: Session, question: Question, norm: str, index: int) -> int:
    """A typed number counts the buttons shown, which leave out the choices that do not
    hold in the person's country (« 1 » in Luxembourg is the first button, « Oui »)."""
    if not norm.isdigit():
        return index
    country = country_of(self.kb, facts_of(self.kb, session.answers))
    shown = [i for i, c in enumerate(question.choices) if offered(c, country)]
    number = int(norm)
    return shown[number - 1] if 1 <= number <= len(shown) else index


def note_gender(self: Engine, session: Session, norm: str) -> Session:
    """Remember that the person spoke of herself in the feminine (« je suis aidante »,
    « formée ») so role titles agree; a word about someone else (« ma fille est guérie »)
    does not count: only the word alone, or after « suis »."""
    padded = f" {norm} "
    for word in self.kb.flow.feminine_words:
        if norm == word or any(
            f" suis {article}{word} " in padded for article in ("", "une ", "la ")
        ):
            return replace(session, gender="f")
    return session
