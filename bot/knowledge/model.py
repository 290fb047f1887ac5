"""Typed model of the knowledge base in ``contenus/``.

Each YAML file maps to one ``*File`` model; :class:`KnowledgeBase` gathers them. Every
user-facing string is a :data:`Text` (a mapping language -> text, French required) so that
a translation can be added beside the French later without touching the structure; an
editor may write a plain string, which is read as French.

Over 400 lines on purpose: it is the schema of every file of ``contenus/``, in the order of the
directory, and the one module the engine may import from the knowledge layer.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

DEFAULT_LANG = "fr"
ID_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
Identifier = Annotated[str, Field(pattern=ID_PATTERN, max_length=48)]

#: Special targets a choice may lead to besides a question id.
RECOMMENDATION = "recommendation"
EXIT = "exit"
SPECIAL_TARGETS = frozenset({RECOMMENDATION, EXIT})
#: The fact holding the country chosen in the ``pays`` question (the engine's places and the
#: validator's rules by country read it).
COUNTRY_FACT = "country"

_PUNCTUATION = re.compile(r"[^\w\s]|_", re.UNICODE)
_SPACES = re.compile(r"\s+")
_INVISIBLE = dict.fromkeys(
    [0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0xFEFF]
)


def normalize(value: str) -> str:
    """The form in which the base's words are compared, by the engine's matching and by the
    validator alike. Lower case, no accents, no punctuation, single spaces: « Représentant-des
    usagers ! » becomes ``representant des usagers``."""
    value = value.translate(_INVISIBLE)
    value = unicodedata.normalize("NFKD", value.casefold())
    value = "".join(ch for ch in value if not unicodedata.combining(ch))
    value = value.replace("œ", "oe").replace("æ", "ae").replace("’", "'")
    value = _PUNCTUATION.sub(" ", value)
    return _SPACES.sub(" ", value).strip()


def _as_text(value: object) -> object:
    if isinstance(value, str):
        return {DEFAULT_LANG: value}
    return value


def _as_words(value: object) -> object:
    if isinstance(value, list):
        return {DEFAULT_LANG: value}
    return value


def _check_text(value: dict[str, str]) -> dict[str, str]:
    for lang, text in value.items():
        if not re.fullmatch(r"[a-z]{2}", lang):
            raise ValueError(
                f"« {lang} » n'est pas un code de langue (fr, de, en…) : si c'est une phrase "
                "qui contient « : », mettez toute la phrase entre guillemets"
            )
        if not text.strip():
            raise ValueError(f"le texte « {lang} » est vide")
    if DEFAULT_LANG not in value:
        raise ValueError("le texte en français (clé « fr ») est obligatoire")
    return value


Text = Annotated[dict[str, str], BeforeValidator(_as_text), AfterValidator(_check_text)]
"""A user-facing string by language. ``"Bonjour"`` is read as ``{"fr": "Bonjour"}``."""

#: Longest short label of a button (``short``): one full-width button on a phone.
SHORT_LIMIT = 32


def _check_short(value: dict[str, str]) -> dict[str, str]:
    for lang, label in value.items():
        if len(label) > SHORT_LIMIT:
            raise ValueError(
                f"le libellé court « {label} » ({lang}) a {len(label)} caractères : "
                f"{SHORT_LIMIT} au plus, pour tenir sur un bouton de téléphone"
            )
    return value


ShortText = Annotated[Text, AfterValidator(_check_short)]
"""A button's short label (``short:``), at most :data:`SHORT_LIMIT` characters."""

Words = Annotated[dict[str, list[str]], BeforeValidator(_as_words)]
"""Free-text synonyms by language. A plain list is read as French."""

#: A condition on the person's answers: every fact named must hold one of the listed values.
Condition = dict[str, list[str]]

Sources = Annotated[list[str], Field(min_length=1)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Meta(Strict):
    version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")]
    date: dt.date
    languages: list[str] = [DEFAULT_LANG]
    description: str = ""


#: Country ids a statement holds in (``[fr]``: a French rule); empty = true everywhere.
Countries = list[Identifier]


class Requirement(Strict):
    """Something needed to start a role; ``met_when`` lets the engine say if it is in reach."""

    text: Text
    met_when: Condition | None = None
    how_to: Text | None = None
    #: Where this requirement holds (a French rule: ``[fr]``); shown only to those countries.
    countries: Countries = []


class Testimonial(Strict):
    quote: Text
    who: Text
    source: str


class CarerWording(Strict):
    """How a proche-aidant reads the role (seed 003: patient partenaire includes proche-aidant)."""

    title: Text | None = None
    #: The title for a person who spoke of herself in the feminine (« je suis aidante »).
    title_f: Text | None = None
    definition: Text | None = None
    does: list[Text] | None = None
    first_steps: list[Text] | None = None


class ConditionalSteps(Strict):
    """First steps added only when the answers meet ``when`` (e.g. the MSP job path only for
    mental health or addiction)."""

    when: Condition
    steps: Annotated[list[Text], Field(min_length=1)]


class LocalRules(Strict):
    """A role's requirements, first steps and caution in one country (or ``"*"``: any country
    the role's own statements do not hold in). Missing fields say nothing rather than borrow
    the rules of another country."""

    requirements: list[Requirement] = []
    first_steps: list[Text] = []
    steps_when: list[ConditionalSteps] = []
    caution: Text | None = None
    #: Contacts (ids of contacts.yaml) named in the honest « demandez à … » sentence.
    ask: list[Identifier] = []
    sources: list[str] = []


class Role(Strict):
    title: Text
    #: The title for a person who spoke of herself in the feminine (« je suis formée »).
    title_f: Text | None = None
    definition: Text
    does: Annotated[list[Text], Field(min_length=1)]
    requirements: list[Requirement] = []
    training: Text
    time_commitment: Text
    compensation: Text
    compensation_kinds: list[
        Literal["benevole", "defraiement", "indemnite", "remuneration", "salarie", "non_precise"]
    ] = []
    first_steps: Annotated[list[Text], Field(min_length=1)]
    testimonial: Testimonial | None = None
    caution: Text | None = None
    only_when: Condition | None = None
    show_guide: bool = False
    carer: CarerWording | None = None
    #: Where the requirements, training, compensation, first steps and caution hold; empty =
    #: everywhere. Elsewhere ``local`` gives that country's own rules.
    countries: Countries = []
    local: dict[str, LocalRules] = {}
    #: Extra first steps for some people only (where the role's own statements hold).
    steps_when: list[ConditionalSteps] = []
    sources: Sources


class RolesFile(Strict):
    roles: dict[Identifier, Role]


class ConditionalScores(Strict):
    """Points a choice gives only when the other answers meet ``when`` (e.g. the MSP job only
    for mental health or addiction), with the reason shown for them."""

    when: Condition
    scores: dict[Identifier, int]
    reason: Text | None = None
    carer_reason: Text | None = None


class Choice(Strict):
    id: Identifier
    label: Text
    #: Shown on narrow buttons (Telegram) instead of ``label``; the id stays the same.
    short: ShortText | None = None
    synonyms: Words = {}
    next: str | None = None
    sets: dict[Identifier, str] = {}
    scores: dict[Identifier, int] = {}
    reason: Text | None = None
    #: The reason in a proche-aidant's words (``reason`` is written for the person concerned).
    carer_reason: Text | None = None
    #: Offered only to people of these countries (e.g. « association agréée »: ``[fr]``).
    countries: Countries = []
    #: The label in one country (``fr: "Oui (non agréée…)"``), instead of ``label``.
    label_in: dict[Identifier, Text] = {}
    #: The short form of a country's own label (``label_in``), as ``short`` is of ``label``.
    short_in: dict[Identifier, ShortText] = {}
    scores_when: list[ConditionalScores] = []


class ConditionalNext(Strict):
    """``next_when``: go to ``next`` when the answers so far meet ``when``."""

    when: Condition
    next: str


class Question(Strict):
    text: Text
    help: Text | None = None
    #: Why the bot asks (answered to « pourquoi vous demandez ça ? »).
    why: Text | None = None
    #: A typical free-text answer, shown when the bot did not understand (« par exemple … »).
    example: Text | None = None
    #: Several answers may be kept at once (e.g. several wishes); all of them count.
    multiple: bool = False
    fact: Identifier
    next: str | None = None
    #: Checked in order before ``next`` (a choice's own ``next`` still comes first).
    next_when: list[ConditionalNext] = []
    #: The help in one country, instead of ``help`` (which must hold everywhere).
    help_in: dict[Identifier, Text] = {}
    choices: Annotated[list[Choice], Field(min_length=2)]
    sources: list[str] = []


class CommandWords(Strict):
    label: Text
    synonyms: Words = {}


COMMANDS = ("aide", "retour", "recommencer", "contacts", "glossaire", "stop")


class RecommendationRules(Strict):
    max_roles: Annotated[int, Field(ge=1, le=3)] = 3
    min_score: Annotated[int, Field(ge=1)] = 1


class FlowFile(Strict):
    start: Identifier
    recommendation: RecommendationRules = RecommendationRules()
    #: Answers that make the person a proche-aidant, who reads roles in carer wording.
    carer_when: Condition = {"profile": ["proche"]}
    #: The answer holding the person's territory, for contacts and crisis numbers.
    territory_fact: Identifier = "territory"
    #: Words by which a person speaks of herself in the feminine (« aidante », « formée »),
    #: written without accents; role titles then agree. Otherwise wording stays neutral.
    feminine_words: list[str] = []
    commands: dict[str, CommandWords]
    questions: dict[Identifier, Question]

    @field_validator("commands")
    @classmethod
    def _all_commands(cls, value: dict[str, CommandWords]) -> dict[str, CommandWords]:
        missing = [name for name in COMMANDS if name not in value]
        if missing:
            raise ValueError(f"commandes manquantes : {', '.join(missing)}")
        unknown = [name for name in value if name not in COMMANDS]
        if unknown:
            raise ValueError(
                f"commandes inconnues : {', '.join(unknown)} (attendu : {', '.join(COMMANDS)})"
            )
        return value


class Term(Strict):
    term: Text
    #: Shown on the glossary's buttons (Telegram) instead of ``term``.
    short: ShortText | None = None
    aliases: list[str] = []
    definition: Text
    #: Where the definition holds (``[fr]``: French institutions); labelled elsewhere.
    countries: Countries = []
    sources: Sources


class GlossaryFile(Strict):
    terms: dict[Identifier, Term]


class Territory(Strict):
    name: Text
    country: Identifier
    parent: Identifier | None = None


class TerritoriesFile(Strict):
    territories: dict[Identifier, Territory]
    #: Words naming rules or bodies of one country only (``fr: [ARS, CDU, …]``): any text using
    #: one must be marked for that country, and ``kb check`` fails if it can reach another.
    country_words: dict[Identifier, list[str]] = {}


class Contact(Strict):
    name: Text
    description: Text
    website: Annotated[str, Field(pattern=r"^https?://[^\s]+$")]
    territories: Annotated[list[str], Field(min_length=1)]
    roles: Annotated[list[Identifier], Field(min_length=1)]
    phone: str | None = None
    email: str | None = None
    establishment: Identifier | None = None
    #: Shown only to people whose answers meet one of these conditions (none: to everyone),
    #: e.g. a mental-health programme only to people with that experience.
    only_when: list[Condition] = []
    #: Ids of ``lexique/conditions.yaml`` this contact is for (an association for one disease):
    #: a person who named another condition is not shown it.
    conditions: list[Identifier] = []
    #: « Pourquoi ce contact », one line shown to the person under the contact.
    why: Text | None = None
    checked: dt.date
    sources: Sources


class ContactsFile(Strict):
    contacts: dict[Identifier, Contact]


class CrisisNumber(Strict):
    number: str
    label: Text
    sources: Sources


class CrisisCountry(Strict):
    name: Text
    numbers: Annotated[list[CrisisNumber], Field(min_length=1)]


class CrisisFile(Strict):
    intro: Text
    countries: dict[Identifier, CrisisCountry]


class SafetyFile(Strict):
    """Distress words answered first with crisis numbers, and medical-looking questions."""

    default_country: Identifier
    distress: Annotated[list[str], Field(min_length=1)]
    not_distress: list[str] = []
    crisis_title: Text
    crisis_other_countries: Text
    crisis_continue: Text
    medical: list[str] = []
    medical_reply: Text


class GuideSection(Strict):
    id: Identifier
    title: Text
    points: Annotated[list[Text], Field(min_length=1)]
    vigilance: list[Text] = []
    #: Shown only to people of these countries (empty: everywhere).
    countries: Countries = []
    sources: Sources


class GuideFile(Strict):
    title: Text
    intro: Text
    sections: Annotated[list[GuideSection], Field(min_length=1)]


#: Barometer scores go from 0 (not done with the other) to 4 (fully done together).
BAROMETER_LEVELS = ("0", "1", "2", "3", "4")
#: The two sides the seed's *mode d'emploi* compares.
BAROMETER_RATERS = ("professionnel", "usager")


#: Keys of ``messages.yaml`` the barometer uses; required once ``barometer.yaml`` is present.
BAROMETER_MESSAGES = (
    "barometre_button",
    "barometer_who",
    "barometer_who_again",
    "barometer_help",
    "barometer_criterion",
    "barometer_back",
    "barometer_not_a_score",
    "barometer_result_intro",
    "barometer_strongest",
    "barometer_weakest",
    "barometer_equal",
    "barometer_keep",
    "barometer_create",
    "barometer_join",
    "barometer_discard",
    "barometer_discarded",
    "barometer_code_ask",
    "barometer_code_invalid",
    "barometer_code_unknown",
    "barometer_compare",
    "barometer_quit",
    "barometer_left",
    "barometer_chart_caption",
    "barometer_group_created",
    "barometer_group_joined",
    "barometer_group_waiting",
    "barometer_not_member",
    "barometer_comparison_intro",
    "barometer_comparison_side",
    "barometer_one_side",
    "barometer_gaps",
    "barometer_gap_line",
    "barometer_no_gaps",
    "barometer_previous_round",
    "barometer_comparison_caption",
    "barometer_chart_failed",
    "barometer_groups_unavailable",
    "barometer_chart_subtitle",
    "barometer_previous_label",
)
#: Keys of ``messages.yaml`` the follow-up (relance) uses.
FOLLOWUP_MESSAGES = (
    "suivi_button",
    "followup_consent",
    "followup_yes",
    "followup_no",
    "followup_scheduled",
    "followup_declined",
    "followup_unavailable",
    "followup_question",
    "followup_reached",
    "followup_not_reached",
    "followup_glad",
    "followup_help",
    "followup_steps",
)
#: A radar chart needs at least three spokes.
BAROMETER_MIN_CRITERIA = 3


class BarometerCriterion(Strict):
    id: Identifier
    text: Text
    #: A few words for the chart, where the full text does not fit.
    short: Text
    #: For editors only (never shown): where the source is ambiguous.
    notes: str = ""


class BarometerDimension(Strict):
    label: Text
    criteria: list[BarometerCriterion] = []
    notes: str = ""


class BarometerRater(Strict):
    label: Text
    #: Shown on narrow buttons (Telegram) instead of ``label``.
    short: ShortText | None = None
    who: Text
    synonyms: Words = {}
    instruction: Text


class BarometerFile(Strict):
    """``barometer.yaml``: the seed's *Baromètre de la relation du partenariat en santé*."""

    title: Text
    intro: Text
    levels: dict[str, Text]
    raters: dict[Identifier, BarometerRater]
    dimensions: dict[Identifier, BarometerDimension]
    notes: str = ""
    sources: Sources

    @field_validator("levels")
    @classmethod
    def _levels(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        if tuple(sorted(value)) != BAROMETER_LEVELS:
            raise ValueError("les niveaux doivent être exactement 0, 1, 2, 3 et 4")
        return value

    @field_validator("raters")
    @classmethod
    def _raters(cls, value: dict[str, BarometerRater]) -> dict[str, BarometerRater]:
        if tuple(value) != BAROMETER_RATERS:
            raise ValueError(
                "deux évaluateurs sont attendus, dans cet ordre : " + ", ".join(BAROMETER_RATERS)
            )
        return value

    def criteria(self) -> list[tuple[str, BarometerCriterion]]:
        """Every criterion in order, with its dimension id."""
        return [(dim_id, c) for dim_id, dim in self.dimensions.items() for c in dim.criteria]


# --- Understanding free text (``contenus/lexique/``) ----------------------------------------


class LexiconCondition(Strict):
    """A condition a person may name; ``category`` is a choice id of the experience question."""

    id: Identifier
    name: Text
    #: Reads after « vous vivez avec … » (« un diabète de type 1 »).
    phrase: Text
    category: Identifier
    words: Annotated[list[str], Field(min_length=1)]
    source: Identifier


class ConditionsFile(Strict):
    """``lexique/conditions.yaml``: condition names and spellings -> experience category."""

    sources: dict[Identifier, str]
    conditions: list[LexiconCondition]


class Place(Strict):
    """A place a person may name; it answers the country and region questions at once."""

    id: Identifier
    name: Text
    kind: Literal[
        "pays", "region", "departement", "commune", "province", "canton", "region_qc", "ville"
    ]
    territory: Identifier
    #: Reads after « vous vivez … » (« à Quimper », « en Bretagne »).
    at: Text
    words: list[str] = []
    number: str | None = None
    postal: list[str] = []
    source: Identifier


class AmbiguousPlace(Strict):
    words: Annotated[list[str], Field(min_length=1)]
    places: Annotated[list[Identifier], Field(min_length=2)]
    question: Text


class PostalRange(Strict):
    """Four-digit codes ``first``..``last`` (inclusive) lie in ``place``."""

    first: Annotated[int, Field(ge=1000, le=9999)]
    last: Annotated[int, Field(ge=1000, le=9999)]
    place: Identifier
    source: Identifier


class PostalRule(Strict):
    """How one country's postal codes read: four-digit ``ranges``, or Canadian codes
    (« H2X 1Y4 ») by their first letter (``letters``)."""

    #: The place id of the country (``be``, ``ch``, ``lu``, ``qc``): its name labels the button
    #: when a code exists in several countries.
    country: Identifier
    #: Written before the code to name the country (« L-1234 », « B-1000 », « CH-1200 »).
    prefixes: list[str] = []
    ranges: list[PostalRange] = []
    letters: dict[str, Identifier] = {}
    letters_source: Identifier | None = None
    note: str = ""


class PostalCodes(Strict):
    """Postal codes outside France (French ones are the départements' ``postal`` prefixes)."""

    #: Words before a bare four-digit number that make it a postal code outside a place
    #: question (« code postal 1000 »); a year (« depuis 2010 ») is never read as one.
    cues: list[str] = []
    #: Asked when a four-digit code exists in several countries and none is known yet.
    question: Text
    rules: list[PostalRule]


class PlacesFile(Strict):
    """``lexique/lieux.yaml``: places by name, number and postal prefix -> territory."""

    sources: dict[Identifier, str]
    places: list[Place]
    ambiguous: list[AmbiguousPlace] = []
    postal_codes: PostalCodes | None = None


class SmallTalk(Strict):
    """Whole messages such as « bonjour » or « merci »: a kind reply, then the question again."""

    words: Annotated[list[str], Field(min_length=1)]
    reply: Text


class LanguageFile(Strict):
    """``lexique/langage.yaml``: how people write, read before anything is matched."""

    #: SMS and spoken contractions, expanded first (« jveux » -> « je veux »).
    contractions: dict[str, str] = {}
    #: Words that negate what follows them in the same part of a sentence (« pas », « jamais »).
    negation: list[str] = []
    #: Phrases with a negation word that do not negate (« pourquoi pas », « pas seulement »).
    not_negation: list[str] = []
    #: Words that start a new part of a sentence (« mais », « plutôt »): a negation stops there.
    clause_breaks: list[str] = []
    #: « je ne sais pas »: an answer at every question (unknown), not a misunderstanding.
    unknown: list[str] = []
    #: « pourquoi vous demandez ça ? »: the question's ``why`` is given.
    why: list[str] = []
    #: « ce n'est pas ça »: undo what was just understood.
    wrong: list[str] = []
    #: « passer »: skip the question (same as « je ne sais pas »).
    skip: list[str] = []
    #: Words put before a command that do not change it (« je veux », « on peut »).
    fillers: list[str] = []
    yes: list[str] = []
    no: list[str] = []
    #: « les deux », « autant l'un que l'autre »: several answers count the same.
    equal: list[str] = []
    smalltalk: list[SmallTalk] = []


class ProfileWords(Strict):
    """Words that tell who the person is; ``choice`` is a choice id of the profile question."""

    choice: Identifier
    #: Enough on their own (« aide-soignante », « je m'occupe de »).
    phrases: list[str] = []
    #: Family words, read as « proche » only with a cue (« mon fils », « la maman d'un … »).
    family: list[str] = []
    #: Words before a family word that make it a relative (« mon », « ma », « j'ai un »).
    before_family: list[str] = []
    #: Family words that also count when followed by « de »/« d' » (« la maman d'un garçon »).
    parent_of: list[str] = []
    #: Words that may stand between the cue and the family word (« mon PETIT frère »).
    between_family: list[str] = []
    #: Words just before a condition that say the person lives with it (« j'ai », « je suis »).
    self_cues: list[str] = []


class ProfilesFile(Strict):
    """``lexique/profils.yaml``: who the person is, read from anywhere in a message."""

    question: Identifier
    profiles: Annotated[list[ProfileWords], Field(min_length=1)]
    sources: list[str] = []


class FactsFile(Strict):
    """``lexique/faits.yaml``: phrases safe to read at any question, per question and choice.

    A question's own ``synonyms`` are read only while it is asked (« oui » answers the
    association question, not the others); the phrases here are read in every message.
    """

    questions: dict[Identifier, dict[Identifier, list[str]]]


#: Keys of ``messages.yaml`` the free-text understanding uses (required with the lexicon).
UNDERSTANDING_MESSAGES = (
    "said_intro",
    "recommendation_intro_named",
    "said_patient",
    "said_patient_condition",
    "said_proche",
    "said_proche_condition",
    "said_relative",
    "said_relative_condition",
    "said_pro",
    "said_condition",
    "said_place",
    "said_choice",
    "said_unknown",
    "not_that",
    "not_that_done",
    "not_that_nothing",
    "repair_first",
    "repair_first_plain",
    "repair_second",
    "repair_second_list",
    "repair_third",
    "repair_fourth",
    "skip_button",
    "skipped",
    "ambiguous",
    "why_default",
    "not_understood_again",
)


#: Keys of ``messages.yaml`` the engine relies on; the validator requires each of them.
REQUIRED_MESSAGES = (
    "welcome",
    "help",
    "not_understood",
    "understood_as",
    "stale_button",
    "back_at_start",
    "restart_confirm",
    "restarted",
    "stopped",
    "glossary_intro",
    "glossary_unknown",
    "contacts_intro",
    "contacts_none",
    "contacts_need_territory",
    "recommendation_intro",
    "recommendation_none",
    "reasons",
    "to_start",
    "not_yet",
    "first_steps",
    "caution",
    "guide_intro",
    "after_recommendation",
    "too_long",
    "yes",
    "no",
    "back_to_question",
    "kb_changed",
    "relation_button",
    "relation_consent",
    "relation_accept",
    "relation_refuse",
    "relation_how",
    "relation_confirm",
    "relation_send",
    "relation_sent",
    "relation_cancelled",
    "relation_unavailable",
    # chat channels (Telegram): consent, personal data, non-text messages, command menu
    "consent_question",
    "consent_yes",
    "consent_no",
    "consent_given",
    "consent_refused",
    "consent_reminder",
    "deeplink_unknown",
    "non_text",
    "kind_photo",
    "kind_voice",
    "kind_audio",
    "kind_video",
    "kind_sticker",
    "kind_document",
    "kind_location",
    "kind_contact",
    "kind_other",
    "edited_message",
    "mydata_none",
    "mydata_intro",
    "mydata_consent",
    "mydata_where",
    "mydata_answers",
    "mydata_retention",
    "forget_confirm",
    "forget_yes",
    "forget_no",
    "forget_done",
    "forget_cancelled",
    "telegram_cmd_aide",
    "telegram_cmd_retour",
    "telegram_cmd_recommencer",
    "telegram_cmd_contacts",
    "telegram_cmd_glossaire",
    "telegram_cmd_mesdonnees",
    "telegram_cmd_oubli",
    "telegram_cmd_stop",
    "telegram_answered",
    "telegram_prev",
    "telegram_next",
    "mydata_node_question",
    "mydata_node_recommended",
    "mydata_node_exited",
    "mydata_node_start",
    "mydata_node_mode",
    "mydata_context",
    "mydata_barometer",
    "mydata_followup",
    "mydata_pending",
)


class MessagesFile(Strict):
    messages: dict[Identifier, Text]

    @field_validator("messages")
    @classmethod
    def _required(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        missing = [key for key in REQUIRED_MESSAGES if key not in value]
        if missing:
            raise ValueError(f"messages manquants : {', '.join(missing)}")
        return value


@dataclass(frozen=True)
class Location:
    file: str
    line: int | None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass
class SourceMap:
    """Where each value came from, so checks can name a file and a line."""

    lines: dict[tuple[str, tuple[str | int, ...]], int] = field(default_factory=dict)

    def locate(self, file: str, path: tuple[str | int, ...]) -> Location:
        for cut in range(len(path), -1, -1):
            line = self.lines.get((file, path[:cut]))
            if line is not None:
                return Location(file, line)
        return Location(file, None)


@dataclass
class KnowledgeBase:
    meta: Meta
    roles: dict[str, Role]
    flow: FlowFile
    glossary: dict[str, Term]
    territories: dict[str, Territory]
    contacts: dict[str, Contact]
    crisis: CrisisFile
    guide: GuideFile
    messages: dict[str, dict[str, str]]
    safety: SafetyFile
    source_map: SourceMap = field(default_factory=SourceMap)
    files: dict[str, str] = field(default_factory=dict)
    origins: dict[tuple[str, str], str] = field(default_factory=dict)
    #: The optional files (lexicons, barometer) as validated, by file name.
    extra: dict[str, BaseModel] = field(default_factory=dict)
    #: ``territories.yaml`` ``country_words``: words naming one country's own rules.
    country_words: dict[str, list[str]] = field(default_factory=dict)

    def file(self, name: str, kind: str = "", key: str = "") -> str:
        """The label of the file an entry came from (an establishment's own file if merged)."""
        return self.origins.get((kind, key)) or self.files.get(name, name)

    @property
    def version(self) -> str:
        return self.meta.version

    @property
    def questions(self) -> dict[str, Question]:
        return self.flow.questions

    @property
    def conditions(self) -> ConditionsFile | None:
        value = self.extra.get("lexique/conditions.yaml")
        return value if isinstance(value, ConditionsFile) else None

    @property
    def places(self) -> PlacesFile | None:
        value = self.extra.get("lexique/lieux.yaml")
        return value if isinstance(value, PlacesFile) else None

    @property
    def language(self) -> LanguageFile:
        value = self.extra.get("lexique/langage.yaml")
        return value if isinstance(value, LanguageFile) else LanguageFile()

    @property
    def profiles(self) -> ProfilesFile | None:
        value = self.extra.get("lexique/profils.yaml")
        return value if isinstance(value, ProfilesFile) else None

    @property
    def fact_words(self) -> FactsFile | None:
        value = self.extra.get("lexique/faits.yaml")
        return value if isinstance(value, FactsFile) else None

    @property
    def barometer(self) -> BarometerFile | None:
        value = self.extra.get("barometer.yaml")
        return value if isinstance(value, BarometerFile) else None


def text(value: dict[str, str] | None, lang: str = DEFAULT_LANG) -> str:
    """The text in ``lang``, falling back to French."""
    if not value:
        return ""
    return value.get(lang) or value[DEFAULT_LANG]
