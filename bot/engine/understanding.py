# Over 400 lines on purpose: one reader (segmenting, indexes, negation, profile cues) kept whole.
"""Reading a whole message for every fact the flow may need, from the lexicons of ``contenus/``.

The contract: :meth:`Understanding.read` takes the raw text and the question being asked and
returns a :class:`Reading` — which answers (question id -> choice ids), which condition, which
place were named, and whether the message is a « je ne sais pas », a « pourquoi ? », a
« ce n'est pas ça » or small talk. It never decides what the conversation does next: the engine
does, and it always says back what it took from a message.

How a message is read (no language model, only rules editors can read):
1. split at punctuation into segments, normalise (accents, case), expand SMS contractions;
2. scan each segment left to right, longest phrase first, so one span of text fills one fact
   (« sage-femme » is a profession before « femme » can be read as a family word); a word may
   match by its exact form, its stem (« diabétique » ~ « diabète ») or, when long enough, a
   close spelling (« schizofrénie »);
3. drop the spans a negation cue governs (« je ne veux pas témoigner »), up to the next clause
   break (« mais », « plutôt », a comma);
4. resolve who the person is from profession words, family words with a cue (« mon fils »,
   « la maman d'un … ») and « je »-cues before a condition (« j'ai un cancer »).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

import snowballstemmer
from rapidfuzz import fuzz, process

from bot.engine.matching import STOPWORDS
from bot.engine.normalize import normalize
from bot.knowledge.model import KnowledgeBase, LanguageFile, Place, PostalRule, text

#: Segments are cut at these characters before normalisation (normalisation drops them).
_SEGMENT = re.compile(r"[,.;:!?()\[\]\n\r/]+|\s-\s|…")
#: Words skipped when looking for a « je »-cue before a condition (« j'ai UNE sclérose »).
_ARTICLES = frozenset("un une le la les l des du de d mon ma mes son sa ses deux".split())  # noqa: SIM905
#: Cues before a bare number that make it a département (« dans le 29 », « je suis du 35 »).
_NUMBER_CUES = frozenset({"departement", "departements", "dept", "dep", "du", "le"})
_DEPARTEMENT = re.compile(r"^(?:0?[1-9]|[1-8]\d|9[0-5]|2a|2b|97[1-6])$")
_POSTAL = re.compile(r"^\d{5}$")
_FOUR = re.compile(r"^\d{4}$")
#: A Canadian postal code, whole (« h2x1y4 ») or in its two halves (« h2x », « 1y4 »).
_CANADA = re.compile(r"^([a-z])\d[a-z](\d[a-z]\d)?$")
_CANADA_END = re.compile(r"^\d[a-z]\d$")
#: Words allowed between a postal cue and the code (« code postal : c'est le 1000 »).
_POSTAL_GAP = frozenset({"c", "est", "le", "mon", "notre", "a", "en", "de"})
#: A stem must be this long to be matched on: « aid » (aidante, aide) is too vague.
MIN_STEM = 5
#: Shortest typed word matched by spelling closeness, and the closeness it needs.
MIN_FUZZY = 6
#: Misspellings remembered per index (a bound, so odd input cannot grow memory forever).
CACHE_SIZE = 50_000
#: Shortest misspelt word that may be read as a place.
MIN_FUZZY_PLACE = 7
#: The fact conditions fill (``category`` is one of its choice ids).
EXPERIENCE_FACT = "experience"

_stemmer = snowballstemmer.stemmer("french")


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    if len(word) < MIN_STEM or word.isdigit():
        return word
    stem = str(_stemmer.stemWord(word))
    return stem if len(stem) >= MIN_STEM else word


def _fuzzy_cutoff(word: str) -> float:
    return 83.0 if len(word) <= 7 else 85.0


@dataclass(frozen=True)
class Target:
    """What a phrase means. ``kind`` is ``fact`` (key = question id, value = choice id),
    ``condition`` / ``place`` (key = id), ``ambiguous`` (key = index in ``lieux.yaml``),
    ``postal`` (key = a four-digit code of several countries, value = their place ids),
    ``profile`` (key = choice id of the profile question, value = ``phrase`` or ``family``)."""

    kind: str
    key: str
    value: str = ""


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    targets: tuple[Target, ...]
    segment: int
    negated: bool = False
    how: str = "exact"  # exact | stem | fuzzy | number


@dataclass
class Reading:
    """What one message says. Empty when nothing was recognised."""

    answers: dict[str, list[str]] = field(default_factory=dict)
    condition: str | None = None
    place: str | None = None
    ambiguous_place: int | None = None
    #: A four-digit postal code found in several countries: (code, one place id per country).
    postal: tuple[str, tuple[str, ...]] | None = None
    relative: str | None = None
    profile_conflict: tuple[str, str] | None = None
    #: The profile was stated by the person about themselves (« je suis infirmière », « j'ai un
    #: cancer », « je suis la maman de… »): clear enough to replace an earlier answer.
    profile_said: bool = False
    unknown: bool = False
    why: bool = False
    wrong: bool = False
    skip: bool = False
    smalltalk: str | None = None
    #: Some words were matched only by a close spelling (say it back even if exact elsewhere).
    approximate: bool = False
    #: Something was recognised but negated (« pas beaucoup »): do not guess around it.
    negated: bool = False

    @property
    def empty(self) -> bool:
        return not (
            self.answers
            or self.condition
            or self.place
            or self.ambiguous_place is not None
            or self.postal is not None
        )

    def add(self, question_id: str, choice_id: str) -> None:
        values = self.answers.setdefault(question_id, [])
        if choice_id not in values:
            values.append(choice_id)


class _Index:
    """Phrases (tuples of words) -> targets, with a stem index and a one-word fuzzy list."""

    def __init__(self) -> None:
        self.exact: dict[tuple[str, ...], list[Target]] = {}
        self.stems: dict[tuple[str, ...], list[Target]] = {}
        self.longest = 1
        self.single: list[str] = []
        self.single_stems: list[str] = []
        self.known: frozenset[str] = frozenset()
        self.by_letter: dict[str, tuple[list[str], list[str]]] = {}
        self.cache: dict[str, list[Target]] = {}

    def add(self, phrase: str, target: Target, language: LanguageFile | None = None) -> None:
        words = tuple(expand(normalize(phrase), language).split())
        if not words:
            return
        for index, key in ((self.exact, words), (self.stems, tuple(_stem(w) for w in words))):
            targets = index.setdefault(key, [])
            if target not in targets:
                targets.append(target)
        self.longest = max(self.longest, len(words))

    def freeze(self) -> None:
        """Build the misspelling lists, by first letter (a typo rarely hits the first one)."""
        self.known = frozenset(w for key in self.exact for w in key)
        self.single = sorted(
            {k[0] for k in self.exact if len(k) == 1 and len(k[0]) >= MIN_FUZZY and k[0].isalpha()}
        )
        self.single_stems = sorted(
            {k[0] for k in self.stems if len(k) == 1 and len(k[0]) >= MIN_FUZZY and k[0].isalpha()}
        )
        self.by_letter = {}
        for word in self.single:
            self.by_letter.setdefault(word[0], ([], []))[0].append(word)
        for word in self.single_stems:
            self.by_letter.setdefault(word[0], ([], []))[1].append(word)
        self.cache = {}

    def at(
        self, words: list[str], stems: list[str], start: int, end: int
    ) -> tuple[int, list[Target], str]:
        """The longest phrase starting at ``start`` (not beyond ``end``): (length, targets, how)."""
        for size in range(min(self.longest, end - start), 0, -1):
            key = tuple(words[start : start + size])
            if key in self.exact:
                return size, self.exact[key], "exact"
            stem_key = tuple(stems[start : start + size])
            if stem_key in self.stems:
                return size, self.stems[stem_key], "stem"
        return 0, [], ""

    def close(self, word: str) -> list[Target]:
        """Targets of the one known word closest in spelling to ``word``, if close enough."""
        if len(word) < MIN_FUZZY or not word.isalpha() or word in self.known:
            return []
        if word in STOPWORDS:
            return []
        cached = self.cache.get(word)
        if cached is not None:
            return cached
        singles, stems = self.by_letter.get(word[0], ([], []))
        cutoff = _fuzzy_cutoff(word)
        found = process.extractOne(word, singles, scorer=fuzz.ratio, score_cutoff=cutoff)
        result: list[Target] = []
        if found:
            result = self.exact[(found[0],)]
        else:
            found = process.extractOne(word, stems, scorer=fuzz.ratio, score_cutoff=cutoff)
            result = self.stems[(found[0],)] if found else []
        if len(self.cache) < CACHE_SIZE:
            self.cache[word] = result
        return result


def expand(norm: str, language: LanguageFile | None) -> str:
    """Normalised text with SMS contractions expanded (« jveux » -> « je veux »)."""
    if language is None or not language.contractions:
        return norm
    table = _contraction_table(language)
    return " ".join(table.get(word, word) for word in norm.split())


_TABLES: dict[int, dict[str, str]] = {}


def _contraction_table(language: LanguageFile) -> dict[str, str]:
    table = _TABLES.get(id(language))
    if table is None:
        table = {normalize(k): normalize(v) for k, v in language.contractions.items()}
        _TABLES[id(language)] = table
    return table


def _phrases(values: Iterable[str], language: LanguageFile) -> frozenset[str]:
    return frozenset(p for p in (expand(normalize(v), language) for v in values) if p)


class Understanding:
    """Lexicon indexes of one knowledge base, built once; :meth:`read` is pure and fast."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self.kb = kb
        self.language = language = kb.language
        self.breaks = _phrases(language.clause_breaks, language)
        self.negation = _phrases(language.negation, language)
        self.not_negation = [tuple(p.split()) for p in _phrases(language.not_negation, language)]
        self.unknown = _phrases(language.unknown, language)
        self.why = _phrases(language.why, language)
        self.wrong = _phrases(language.wrong, language)
        self.skip = _phrases(language.skip, language)
        self.equal = _phrases(language.equal, language)
        self.fillers = sorted(_phrases(language.fillers, language), key=len, reverse=True)
        self.smalltalk: dict[str, str] = {}
        for index, talk in enumerate(language.smalltalk):
            for phrase in _phrases(talk.words, language):
                self.smalltalk.setdefault(phrase, str(index))
        self.index = _Index()
        self.places: dict[str, Place] = {}
        self.by_number: dict[str, str] = {}
        self.by_postal: dict[str, str] = {}
        self.postal_rules: tuple[PostalRule, ...] = ()
        self.postal_cues: list[tuple[str, ...]] = []
        self.conditions = {c.id: c for c in (kb.conditions.conditions if kb.conditions else [])}
        for condition in self.conditions.values():
            for phrase in condition.words:  # words only: editors keep banal words out
                self.index.add(phrase, Target("condition", condition.id), language)
        if kb.places is not None:
            for place in kb.places.places:
                self.places[place.id] = place
                for phrase in place.words:
                    self.index.add(phrase, Target("place", place.id), language)
                if place.number:
                    self.by_number.setdefault(place.number.lower().lstrip("0"), place.id)
                for prefix in place.postal:
                    self.by_postal.setdefault(prefix.lower(), place.id)
            postal = kb.places.postal_codes
            if postal is not None:
                self.postal_rules = tuple(postal.rules)
                self.postal_cues = [tuple(c.split()) for c in _phrases(postal.cues, language)]
            for number, entry in enumerate(kb.places.ambiguous):
                for phrase in entry.words:
                    self.index.add(phrase, Target("ambiguous", str(number)), language)
        self.profile_question = kb.profiles.question if kb.profiles else None
        #: The question whose choices are the experience categories conditions map to.
        self.experience_question = next(
            (qid for qid, q in kb.questions.items() if q.fact == EXPERIENCE_FACT), None
        )
        self.before_family: list[tuple[str, ...]] = []
        self.parent_of: frozenset[str] = frozenset()
        self.between_family: frozenset[str] = frozenset()
        self.self_cues: list[tuple[str, ...]] = []
        if kb.profiles is not None:
            for words in kb.profiles.profiles:
                for phrase in words.phrases:
                    self.index.add(phrase, Target("profile", words.choice, "phrase"), language)
                for phrase in words.family:
                    self.index.add(phrase, Target("profile", words.choice, "family"), language)
                self.before_family += [
                    tuple(p.split()) for p in _phrases(words.before_family, language)
                ]
                self.parent_of |= _phrases(words.parent_of, language)
                self.between_family |= _phrases(words.between_family, language)
                self.self_cues += [tuple(p.split()) for p in _phrases(words.self_cues, language)]
        self.self_cues.sort(key=len, reverse=True)
        self.before_family.sort(key=len, reverse=True)
        if kb.fact_words is not None:
            for question_id, choices in kb.fact_words.questions.items():
                for choice_id, phrases in choices.items():
                    for phrase in phrases:
                        self.index.add(phrase, Target("fact", question_id, choice_id), language)
        self.index.freeze()
        #: The asked question's own synonyms and labels, read only while it is asked.
        self.asked: dict[str, _Index] = {}
        for question_id, question in kb.questions.items():
            own = _Index()
            by_choice = {
                choice.id: [
                    normalize(p)
                    for p in [
                        *choice.label.values(),
                        *(w for ws in choice.synonyms.values() for w in ws),
                    ]
                ]
                for choice in question.choices
            }
            for choice in question.choices:
                target = Target("fact", question_id, choice.id)
                # A word that ends another choice's phrase (« soins » in « qualité des soins »)
                # is too vague inside a sentence: only the whole message may be that word.
                shared = {
                    text_.split()[-1]
                    for other, texts in by_choice.items()
                    if other != choice.id
                    for text_ in texts
                    if " " in text_
                }
                for phrase in by_choice[choice.id]:
                    # « du », « pro », « oui » inside a sentence mean nothing: only the whole
                    # message (matched before reading) may be such a word.
                    if all(w in STOPWORDS for w in phrase.split()) or phrase in shared:
                        continue
                    own.add(phrase, target, language)
            own.freeze()
            self.asked[question_id] = own
        self.place_questions = frozenset(
            qid for qid, q in kb.questions.items() if any("territory" in c.sets for c in q.choices)
        ) | frozenset(
            qid
            for qid, q in kb.questions.items()
            for c in q.choices
            if c.next and c.next in kb.questions
            and any("territory" in cc.sets for cc in kb.questions[c.next].choices)
        )  # fmt: skip

    # -- text preparation ---------------------------------------------------------------
    def segments(self, raw: str) -> list[list[str]]:
        """Words of each part of the message, normalised and with contractions expanded."""
        parts = []
        for piece in _SEGMENT.split(raw[:2000]):
            words = expand(normalize(piece), self.language).split()
            if words:
                parts.append(words)
        return parts

    def expand(self, norm: str) -> str:
        """Normalised text with this base's contractions expanded."""
        return expand(norm, self.language)

    def plain(self, raw: str) -> str:
        """The whole message as one normalised, expanded string (for whole-message phrases)."""
        return " ".join(" ".join(words) for words in self.segments(raw))

    def strip_fillers(self, norm: str) -> str:
        """« je veux les contacts svp » -> « les contacts »: for commands and whole phrases."""
        changed = True
        while changed and norm:
            changed = False
            for filler in self.fillers:
                if norm.startswith(filler + " "):
                    norm, changed = norm[len(filler) + 1 :], True
                elif norm.endswith(" " + filler):
                    norm, changed = norm[: -len(filler) - 1], True
        return norm

    # -- reading ------------------------------------------------------------------------
    def read(self, raw: str, asked: str | None = None, country: str | None = None) -> Reading:
        """``country``: the person's country when known, to read a four-digit postal code."""
        reading = Reading()
        whole = self.plain(raw)
        core = self.strip_fillers(whole)
        if not whole:
            return reading
        if whole in self.wrong or core in self.wrong:
            reading.wrong = True
            return reading
        if whole in self.skip or core in self.skip:
            reading.skip = True
            return reading
        if whole in self.unknown or core in self.unknown:
            reading.unknown = True
            return reading
        if (
            whole in self.why
            or core in self.why
            or whole.startswith("pourquoi ")
            or any(f" {p} " in f" {whole} " for p in self.why if len(p.split()) >= 3)
        ) and not whole.startswith("pourquoi pas"):
            reading.why = True
            return reading
        talk = self._smalltalk(whole)
        if talk is not None:
            reading.smalltalk = talk
            return reading
        spans = self._spans(raw, asked, country)
        self._resolve(spans, reading, asked)
        if reading.empty and not reading.unknown:
            for phrase in self.unknown:
                if f" {phrase} " in f" {whole} ":
                    reading.unknown = True
                    break
        return reading

    def _smalltalk(self, whole: str) -> str | None:
        """The small-talk reply when the whole message is made of small-talk phrases only."""
        if whole in self.smalltalk:
            return self.smalltalk[whole]
        words = whole.split()
        first: str | None = None
        i = 0
        while i < len(words):
            for size in range(min(4, len(words) - i), 0, -1):
                phrase = " ".join(words[i : i + size])
                if phrase in self.smalltalk or (size == 1 and phrase in self.fillers):
                    first = first or self.smalltalk.get(phrase)
                    i += size
                    break
            else:
                return None
        return first

    def _spans(
        self, raw: str, asked: str | None, country: str | None = None
    ) -> list[tuple[list[str], list[Span]]]:
        own = self.asked.get(asked) if asked else None
        if asked is not None and asked == self.profile_question:
            # Who the person is comes from profils.yaml (family cues, professions, « je »);
            # the question's own words are matched on the whole message only, by the engine.
            own = None
        place_expected = asked in self.place_questions
        result = []
        for number, words in enumerate(self.segments(raw)):
            stems = [_stem(w) for w in words]
            spans: list[Span] = []
            i = 0
            while i < len(words):
                size, targets, how = self.index.at(words, stems, i, len(words))
                if own is not None:
                    own_size, own_targets, own_how = own.at(words, stems, i, len(words))
                    if own_size > size or (own_size == size and own_size and how == "stem"):
                        size, targets, how = own_size, own_targets, own_how
                    elif own_size == size and own_size:
                        targets = [*targets, *own_targets]
                if not size:
                    place = self._number(words, i, place_expected)
                    if place is not None:
                        size, targets, how = 1, [Target("place", place)], "number"
                if not size:
                    size, targets = self._foreign_postal(words, i, place_expected, country)
                    how = "number"
                if not size:
                    close = self.index.close(words[i])
                    if not close and own is not None:
                        close = own.close(words[i])
                    if close:
                        size, targets, how = 1, close, "fuzzy"
                if size:
                    spans.append(Span(i, i + size, tuple(targets), number, how=how))
                    i += size
                else:
                    i += 1
            result.append((words, [self._negate(words, s) for s in spans]))
        return result

    def _number(self, words: list[str], i: int, place_expected: bool) -> str | None:
        word = words[i]
        if _POSTAL.match(word):
            for size in (3, 2):
                found = self.by_postal.get(word[:size])
                if found:
                    return found
            return None
        if not _DEPARTEMENT.match(word):
            return None
        cue = i > 0 and words[i - 1] in _NUMBER_CUES
        if not (cue or (place_expected and len(word) >= 2)):
            return None
        return self.by_number.get(word.lstrip("0"))

    def _foreign_postal(
        self, words: list[str], i: int, place_expected: bool, country: str | None
    ) -> tuple[int, list[Target]]:
        """A Belgian, Swiss, Luxembourg (four digits) or Québec (« H2X 1Y4 ») postal code at
        ``i``: (words used, targets). A code of several countries, none known or named by a
        prefix, gives a ``postal`` target (the engine asks which country)."""
        word = words[i]
        canada = _CANADA.match(word)
        if canada is not None:
            size = 1 if canada.group(2) else 2
            if size == 2 and not (i + 1 < len(words) and _CANADA_END.match(words[i + 1])):
                return 0, []
            for rule in self.postal_rules:
                place = rule.letters.get(canada.group(1))
                if place is not None:
                    return size, [Target("place", place)]
            return 0, []
        if not _FOUR.match(word):
            return 0, []
        before = words[i - 1] if i > 0 else ""
        named = [r for r in self.postal_rules if before in r.prefixes]
        cue = self._cue_before(words, i, self.postal_cues, _POSTAL_GAP) is not None
        if not (named or cue or place_expected):
            return 0, []
        number = int(word)
        found: list[tuple[str, str]] = []  # (country, place)
        for rule in named or self.postal_rules:
            for band in rule.ranges:
                if band.first <= number <= band.last:
                    found.append((rule.country, band.place))
                    break
        mine = [place for owner, place in found if owner == country]
        if mine:
            return 1, [Target("place", mine[0])]
        if len(found) == 1:
            return 1, [Target("place", found[0][1])]
        if found:
            return 1, [Target("postal", word, " ".join(place for _, place in found))]
        return 0, []

    def _negate(self, words: list[str], span: Span) -> Span:
        start = span.start
        while start > 0 and words[start - 1] not in self.breaks:
            start -= 1
        before = words[start : span.start]
        masked = list(before)  # « pourquoi pas », « pas seulement » negate nothing
        for phrase in self.not_negation:
            size = len(phrase)
            for k in range(len(before) - size + 1):
                if tuple(before[k : k + size]) == phrase:
                    masked[k : k + size] = [""] * size
        if any(w in self.negation for w in masked):
            return Span(span.start, span.end, span.targets, span.segment, True, span.how)
        return span

    def _cue_before(
        self,
        words: list[str],
        start: int,
        cues: list[tuple[str, ...]],
        skip: frozenset[str] = _ARTICLES,
    ) -> tuple[str, ...] | None:
        """The cue ending just before ``start`` (``skip`` words in between), if any."""
        end = start
        for _ in range(3):
            for cue in cues:
                if end >= len(cue) and tuple(words[end - len(cue) : end]) == cue:
                    return cue
            if end > 0 and words[end - 1] in skip:
                end -= 1
            else:
                break
        return None

    def _resolve(
        self, parts: list[tuple[list[str], list[Span]]], reading: Reading, asked: str | None
    ) -> None:
        profiles: list[str] = []
        said: set[str] = set()
        kin: set[str] = set()
        weak: list[str] = []
        experience_self: list[bool] = []
        experience_spans = 0
        conditions: list[str] = []
        places: list[str] = []
        ambiguous: list[int] = []
        postal: tuple[str, tuple[str, ...]] | None = None
        experience_q = self.experience_question
        for words, spans in parts:
            for span in spans:
                if span.how == "fuzzy":
                    reading.approximate = True
                if span.negated:
                    reading.negated = True
                    continue
                ambiguous_span = any(t.kind == "ambiguous" for t in span.targets)
                for target in span.targets:
                    if target.kind == "place" and (
                        ambiguous_span
                        or (span.how == "fuzzy" and not self._close_place(words, span))
                    ):
                        continue  # « Saint-Denis » alone: ask which one, never pick
                    if target.kind == "fact" and target.key == self.profile_question:
                        # The profile question's own words (« malade ») are weaker than a
                        # family, profession or « je »-cue: they count only if nothing else does.
                        if target.value not in weak:
                            weak.append(target.value)
                    elif target.kind == "fact":
                        reading.add(target.key, target.value)
                        if target.key == experience_q:
                            experience_spans += 1
                            experience_self.append(self._is_self(words, span))
                    elif target.kind == "condition":
                        if target.key not in conditions:
                            conditions.append(target.key)
                        experience_spans += 1
                        experience_self.append(self._is_self(words, span))
                    elif target.kind == "place":
                        if target.key not in places:
                            places.append(target.key)
                    elif target.kind == "ambiguous":
                        ambiguous.append(int(target.key))
                    elif target.kind == "postal" and postal is None:
                        postal = (target.key, tuple(target.value.split()))
                    elif target.kind == "profile":
                        stated = self._is_self(words, span)  # « je suis la maman »
                        if target.value == "family":
                            relative = self._relative(words, span)
                            if relative is None and not stated:
                                continue
                            if relative and reading.relative is None:
                                reading.relative = relative
                            if relative:  # « mon fils »: clear if someone is ill (below)
                                kin.add(target.key)
                        if target.key not in profiles:
                            profiles.append(target.key)
                        if stated:
                            said.add(target.key)
        if conditions:
            reading.condition = conditions[0]
            if experience_q:
                for condition_id in conditions:
                    reading.add(experience_q, self.conditions[condition_id].category)
        if places:
            reading.place = self._most_precise(places)
        elif ambiguous:
            reading.ambiguous_place = ambiguous[0]
        elif postal is not None:
            reading.postal = postal
        question = self.profile_question
        if question is None:
            return
        patient = self._patient_choice()
        if any(experience_self) and patient:
            said.add(patient)
            if patient not in profiles:
                profiles.append(patient)
        if experience_spans and not profiles and not weak and asked == question and patient:
            profiles.append(patient)
        if not profiles:
            profiles = weak
        own: list[str] = []
        for choice in profiles:
            if choice not in own:
                own.append(choice)
        if own:
            reading.answers[question] = own
        if len(own) > 1:
            reading.profile_conflict = (own[0], own[1])
        if experience_spans or weak:
            said |= kin  # « c'est mon fils qui est malade », « ma mère a un cancer »
        reading.profile_said = len(own) == 1 and own[0] in said

    def _most_precise(self, places: list[str]) -> str:
        """« en France, à Marseille »: the place inside all the others named; the first named
        when they do not nest (two different regions)."""
        for place_id in places:
            chain: list[str] = []
            territory: str | None = self.places[place_id].territory
            while territory and territory in self.kb.territories and territory not in chain:
                chain.append(territory)
                territory = self.kb.territories[territory].parent
            if all(self.places[other].territory in chain for other in places):
                return place_id
        return places[0]

    def _patient_choice(self) -> str | None:
        if self.kb.profiles is None:
            return None
        for words in self.kb.profiles.profiles:
            if words.self_cues:
                return words.choice
        return None

    @staticmethod
    def _close_place(words: list[str], span: Span) -> bool:
        """A place read from a misspelling needs a long word (« Toulouze »): short everyday
        words are too close to place names (« heures » ~ Hyères)."""
        word = " ".join(words[span.start : span.end])
        return len(word) >= MIN_FUZZY_PLACE

    def _is_self(self, words: list[str], span: Span) -> bool:
        return self._cue_before(words, span.start, self.self_cues) is not None

    def _relative(self, words: list[str], span: Span) -> str | None:
        """How to say the relative back (« votre fils »), "" if unsaid, None if not a relative."""
        word = " ".join(words[span.start : span.end])
        cue = self._cue_before(words, span.start, self.before_family, self.between_family)
        if cue is not None:
            possessive = {
                "mon": "votre",
                "ma": "votre",
                "mes": "vos",
                "notre": "votre",
                "nos": "vos",
            }
            owner = possessive.get(cue[-1])
            if owner and span.start > 0 and words[span.start - 1] == cue[-1]:
                return f"{owner} {word}"
            return ""
        after = words[span.end] if span.end < len(words) else ""
        if word in self.parent_of and after in ("de", "d", "du", "des"):
            return ""
        return None

    # -- helpers for the engine ----------------------------------------------------------
    def place_text(self, place_id: str, lang: str) -> str:
        place = self.places.get(place_id)
        return text(place.at, lang) if place else place_id

    def condition_text(self, condition_id: str, lang: str) -> str:
        condition = self.conditions.get(condition_id)
        return text(condition.phrase, lang) if condition else condition_id
