"""Understanding free text: choices, commands and glossary questions.

Matching works word by word: a label or synonym matches when each of its meaningful words is
found in what the person typed, allowing typos (rapidfuzz) and missing accents (normalisation).
Below the thresholds, or when two choices match equally, nothing is returned: the engine then
asks again rather than guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rapidfuzz import fuzz, process

from bot.engine.normalize import normalize
from bot.knowledge.model import COMMANDS, KnowledgeBase, Question

#: Longer inputs are not matched: nobody answers a button question with a page of text.
MAX_MATCH_LENGTH = 300

STOPWORDS = frozenset(
    """
    je j tu il elle on nous vous ils elles me m moi te t se s le la les l un une des du de d a
    au aux et ou en dans pour par sur avec que qu qui ce c ca cela mon ma mes ton ta tes son sa
    ses notre nos votre vos leur leurs est suis es sommes etes sont ai as avons avez ont y ne
    voudrais veux voulais aimerais aime souhaite souhaiterais bien tres plutot alors euh bah
    ben hum merci svp stp peut etre
    """.split()  # noqa: SIM905
)

NUMBER_WORDS = {
    "un": 1, "une": 1, "premier": 1, "premiere": 1, "deux": 2, "deuxieme": 2, "trois": 3,
    "troisieme": 3, "quatre": 4, "quatrieme": 4, "cinq": 5, "cinquieme": 5, "six": 6,
    "sixieme": 6, "sept": 7, "septieme": 7, "huit": 8, "huitieme": 8, "neuf": 9, "neuvieme": 9,
    "dix": 10, "dixieme": 10,
}  # fmt: skip

_GLOSSARY_PREFIX = re.compile(
    r"^(?:c est quoi|c quoi|cest quoi|qu est ce que c est|qu est ce qu|qu est ce que|"
    r"que veut dire|que signifie|ca veut dire quoi|definition de|definition d|definition|"
    r"definir|glossaire|sens de|c est qui|qui sont|qui est|explique moi|expliquez moi|"
    r"expliquer|signification de|signification)\s+(.+)$"
)
_GLOSSARY_SUFFIX = re.compile(
    r"^(.+?)\s+(?:c est quoi|c quoi|ca veut dire quoi|veut dire quoi|ca signifie quoi)$"
)
_ARTICLES = re.compile(r"^(?:(?:un|une|le|la|les|l|d|de|des|du|mot|terme|sigle)\s+)+")

#: Similarity a typed word needs with a known word, by the known word's length: short words
#: must be exact, long ones may carry a typo or two ("chronik" for "chronique").
TOKEN_CUTOFF = 75.0
WHOLE_CUTOFF = 88.0


def content_words(normalized: str) -> list[str]:
    return [word for word in normalized.split() if word not in STOPWORDS]


@dataclass(frozen=True)
class Match:
    index: int
    exact: bool


@dataclass(frozen=True)
class _Candidate:
    choice: int
    words: tuple[str, ...]
    whole: str


class _QuestionIndex:
    def __init__(self, question: Question) -> None:
        self.size = len(question.choices)
        self.exact: dict[str, int] = {}
        self.candidates: list[_Candidate] = []
        for index, choice in enumerate(question.choices):
            phrases = list(choice.label.values())
            for synonyms in choice.synonyms.values():
                phrases += synonyms
            phrases.append(choice.id.replace("_", " "))
            for phrase in phrases:
                norm = normalize(phrase)
                if not norm:
                    continue
                self.exact.setdefault(norm, index)
                words = tuple(dict.fromkeys(content_words(norm))) or tuple(norm.split())
                self.exact.setdefault(" ".join(words), index)
                self.candidates.append(_Candidate(index, words, norm))
        self.vocabulary = sorted({w for c in self.candidates for w in c.words})
        owners: dict[str, set[int]] = {}
        for candidate in self.candidates:
            for word in candidate.words:
                owners.setdefault(word, set()).add(candidate.choice)
        #: Words found in one choice only: they decide between choices ("aucune" does,
        #: "association" — in several choices of the same question — does not).
        self.distinctive = frozenset(w for w, choices in owners.items() if len(choices) == 1)

    def exact_match(self, norm: str) -> Match | None:
        """Only an exact synonym, label or number (cheap: no spelling closeness)."""
        if norm in self.exact:
            return Match(self.exact[norm], True)
        number = int(norm) if norm.isdigit() and len(norm) < 3 else NUMBER_WORDS.get(norm)
        if number is not None and 1 <= number <= self.size:
            return Match(number - 1, True)
        joined = " ".join(content_words(norm))
        if joined in self.exact:
            return Match(self.exact[joined], True)
        number = NUMBER_WORDS.get(joined)
        if number is not None and 1 <= number <= self.size:
            return Match(number - 1, True)
        return None

    def match(self, norm: str) -> Match | None:
        if norm in self.exact:
            return Match(self.exact[norm], True)
        number = int(norm) if norm.isdigit() and len(norm) < 3 else NUMBER_WORDS.get(norm)
        if number is not None and 1 <= number <= self.size:
            return Match(number - 1, True)
        typed = content_words(norm)
        if not typed:
            return None
        joined = " ".join(typed)
        if joined in self.exact:
            return Match(self.exact[joined], True)
        number = NUMBER_WORDS.get(joined)
        if number is not None and 1 <= number <= self.size:
            return Match(number - 1, True)
        found = _found_words(typed, self.vocabulary)
        best: dict[int, tuple[int, int, float]] = {}
        for candidate in self.candidates:
            scores = [found.get(word, 0.0) for word in candidate.words]
            hits = sum(1 for s in scores if s > 0)
            decisive = sum(
                1 for w, s in zip(candidate.words, scores, strict=True)
                if s > 0 and w in self.distinctive
            )  # fmt: skip
            if hits == len(scores) or (hits >= 2 and hits / len(scores) >= 0.6):
                rank = (decisive, hits, sum(scores) / len(scores))
            elif fuzz.ratio(joined, candidate.whole) >= WHOLE_CUTOFF:
                rank = (1, 1, fuzz.ratio(joined, candidate.whole))
            else:
                continue
            if rank > best.get(candidate.choice, (0, 0, 0.0)):
                best[candidate.choice] = rank
        if not best:
            return None
        ordered = sorted(best.items(), key=lambda item: item[1], reverse=True)
        if len(ordered) > 1:
            (_, first), (_, second) = ordered[0], ordered[1]
            if first[:2] == second[:2] and first[2] - second[2] < 5:
                return None
        return Match(ordered[0][0], False)


def _found_words(typed: list[str], vocabulary: list[str]) -> dict[str, float]:
    """For each vocabulary word, the best similarity with a typed word (0 if none is close)."""
    found: dict[str, float] = {}
    for word in typed:
        for candidate, score, _ in process.extract(
            word, vocabulary, scorer=fuzz.ratio, score_cutoff=TOKEN_CUTOFF, limit=None
        ):
            if len(candidate) <= 3 and candidate != word:
                continue
            if len(candidate) == 4 and score < 85:
                continue
            if len(candidate) in (5, 6) and score < 80:
                continue
            if score > found.get(candidate, 0.0):
                found[candidate] = score
    return found


class Matcher:
    """Indexes of one knowledge base, built once; all lookups take normalised text."""

    def __init__(self, kb: KnowledgeBase) -> None:
        self.questions = {qid: _QuestionIndex(q) for qid, q in kb.questions.items()}
        self.commands: dict[str, str] = {}
        for name in COMMANDS:
            words = kb.flow.commands[name]
            phrases = [name, *words.label.values()]
            for synonyms in words.synonyms.values():
                phrases += synonyms
            for phrase in phrases:
                norm = normalize(phrase)
                if norm:
                    self.commands.setdefault(norm, name)
        self.command_words = sorted(self.commands)
        self.terms: dict[str, str] = {}
        for term_id, term in kb.glossary.items():
            for name in [*term.term.values(), *term.aliases, term_id.replace("_", " ")]:
                norm = normalize(name)
                if norm:
                    self.terms.setdefault(norm, term_id)
        self.term_names = sorted(self.terms)
        language = kb.language
        yes = language.yes or ["oui", "o", "ok", "d'accord", "daccord", "yes", "confirmer"]
        no = language.no or ["non", "n", "no", "annuler", "pas maintenant", "non merci"]
        self.yes = {normalize(w) for w in yes} - {""}
        self.no = {normalize(w) for w in no} - {""}

    def choice(self, question_id: str, norm: str) -> Match | None:
        if len(norm) > MAX_MATCH_LENGTH or question_id not in self.questions:
            return None
        return self.questions[question_id].match(norm)

    def exact_choice(self, question_id: str, norm: str) -> Match | None:
        if len(norm) > MAX_MATCH_LENGTH or question_id not in self.questions:
            return None
        return self.questions[question_id].exact_match(norm)

    def command(self, norm: str) -> str | None:
        if norm in self.commands:
            return self.commands[norm]
        if " " in norm or len(norm) < 5:
            return None
        found = process.extractOne(norm, self.command_words, scorer=fuzz.ratio, score_cutoff=85)
        return self.commands[found[0]] if found else None

    def term(self, norm: str) -> str | None:
        if norm in self.terms:
            return self.terms[norm]
        if len(norm) < 4:
            return None
        found = process.extractOne(norm, self.term_names, scorer=fuzz.ratio, score_cutoff=85)
        return self.terms[found[0]] if found else None

    def glossary_question(self, norm: str) -> tuple[bool, str | None]:
        """(is it a question about a word?, which glossary term if known)."""
        if len(norm) > MAX_MATCH_LENGTH:
            return False, None
        found = _GLOSSARY_PREFIX.match(norm) or _GLOSSARY_SUFFIX.match(norm)
        if not found:
            return False, None
        subject = _ARTICLES.sub("", found.group(1)).strip()
        return True, self.term(subject) if subject else None

    def confirmation(self, norm: str) -> bool | None:
        if norm in self.yes:
            return True
        if norm in self.no:
            return False
        return None
