"""True for their place: every territory gets contacts of its own, every country its own
rules, and the bot promises a call-back only when an establishment will receive the request."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from bot.adapters.webhooks import route
from bot.engine.flow import Engine, Turn
from bot.engine.session import Input
from bot.knowledge.establishments import Establishment
from bot.knowledge.loader import load_with_problems
from bot.knowledge.model import KnowledgeBase

#: The answers that lead to each territory: 13 metropolitan regions, 5 overseas regions (some
#: through the « Outre-mer » alias), Luxembourg, Belgium (both communities), Switzerland, Québec.
PLACES = {
    "fr-ara": ("fr", "ara"),
    "fr-bfc": ("fr", "bfc"),
    "fr-bretagne": ("fr", "bretagne"),
    "fr-cvl": ("fr", "cvl"),
    "fr-corse": ("fr", "corse"),
    "fr-grand-est": ("fr", "grand_est"),
    "fr-hdf": ("fr", "hdf"),
    "fr-idf": ("fr", "idf"),
    "fr-normandie": ("fr", "normandie"),
    "fr-nouvelle-aquitaine": ("fr", "nouvelle_aquitaine"),
    "fr-occitanie": ("fr", "occitanie"),
    "fr-pdl": ("fr", "pdl"),
    "fr-paca": ("fr", "paca"),
    "fr-guadeloupe": ("fr", "outre_mer", "guadeloupe"),
    "fr-martinique": ("fr", "outre_mer", "martinique"),
    "fr-guyane": ("fr", "guyane"),
    "fr-reunion": ("fr", "reunion"),
    "fr-mayotte": ("fr", "outre_mer", "mayotte"),
    "lu": ("lu",),
    "be-wallonie-bruxelles": ("be", "wallonie_bruxelles"),
    "be-flandre": ("be", "flandre"),
    "ch": ("ch",),
    "qc": ("qc",),
}
ABROAD = {t: p for t, p in PLACES.items() if not t.startswith("fr-")} | {"autre": ("autre",)}
WISHES = ("partager", "ameliorer_soins", "former", "recherche", "qualite_gouvernance",
          "representer", "soutenir_pairs", "ma_sante")  # fmt: skip


def choose(engine: Engine, *choices: str, turn: Turn | None = None) -> Turn:
    turn = turn or engine.start()
    for choice in choices:
        turn = engine.handle(turn.session, Input.choice(choice, turn.node))
        assert "message précédent" not in texts(turn), (choice, texts(turn))
    return turn


def texts(turn: Turn) -> str:
    return "\n".join(reply.text for reply in turn.replies)


def choice_ids(turn: Turn) -> list[str]:
    return [c.id for reply in turn.replies for c in reply.choices]


def patient(place: tuple[str, ...], wish: str = "representer", **kw: str) -> tuple[str, ...]:
    """A patient's answers, in the order the flow asks them."""
    return (kw.get("profile", "patient"), kw.get("experience", "chronique"), "stabilise", wish,
            *place, "aucune", "aucune", kw.get("availability", "mensuel"))  # fmt: skip


def french_words(kb: KnowledgeBase) -> re.Pattern[str]:
    words = sorted(kb.country_words["fr"], key=len, reverse=True)
    parts = [re.escape(w) if w.isupper() else f"(?i:{re.escape(w)})" for w in words]
    return re.compile(r"(?<!\w)(" + "|".join(parts) + r")(?!\w)")


# -- 1. contacts for every territory -------------------------------------------------------


@pytest.mark.parametrize("territory", PLACES)
def test_every_territory_gets_a_contact_of_its_own(engine: Engine, territory: str) -> None:
    turn = choose(engine, *patient(PLACES[territory]))
    reco = turn.recommendation
    assert reco is not None and turn.node == "recommendation"
    assert reco.territory == territory
    own = [c for c in reco.contacts if territory in c.territories]
    assert own, [c.id for c in reco.contacts]
    assert all(c.website.startswith(("https://", "http://")) for c in own)
    shown = texts(turn)
    assert own[0].name in shown and own[0].website in shown
    assert "Pourquoi ce contact" in shown


def test_outre_mer_is_only_an_alias_that_asks_which_one(engine: Engine) -> None:
    turn = choose(engine, "patient", "chronique", "stabilise", "partager", "fr", "outre_mer")
    assert turn.node == "outre_mer"
    assert {"guadeloupe", "martinique", "guyane", "reunion", "mayotte"} <= set(choice_ids(turn))


def test_each_contact_names_its_page_date_and_why(kb: KnowledgeBase) -> None:
    for contact_id, contact in kb.contacts.items():
        assert any(s.startswith(("https://", "http://")) for s in contact.sources), contact_id
        assert contact.why, contact_id
        assert contact.checked.isoformat() == "2026-12-01", contact_id


def test_seed_systems_are_contacts(kb: KnowledgeBase) -> None:
    seeds = {
        "fhl": "lu",
        "hcl_peps": "fr-ara",
        "partenariat_en_sante_occitanie": "fr-occitanie",
        "france_assos_sante_occitanie": "fr-occitanie",
        "dactiv_etp": "fr-bretagne",
    }
    for contact_id, territory in seeds.items():
        assert territory in kb.contacts[contact_id].territories


def test_agreee_only_where_the_source_says_so(kb: KnowledgeBase) -> None:
    """Only the associations whose stored page says « agréée » are called so."""
    called = {
        cid
        for cid, c in kb.contacts.items()
        if "agréée" in c.description["fr"].lower() and c.only_when  # associations by condition
    }
    assert called == {"federation_diabetiques", "afa_crohn_rch"}


# -- relevance to the project and the condition ---------------------------------------------


def test_father_of_an_autistic_boy_hears_nothing_of_the_mental_health_job(engine: Engine) -> None:
    turn = choose(engine, *patient(("fr", "idf"), "soutenir_pairs", profile="proche",
                                   experience="handicap", availability="metier"))  # fmt: skip
    assert turn.recommendation is not None
    ids = {c.id for c in turn.recommendation.contacts}
    assert not ids & {"ccoms_msp", "psycom", "aqrp_pairs_aidants"}
    assert "unapei" in ids, "an association for his son's condition"
    said = texts(turn)
    assert "médiateur" not in said.lower() and "salarié" not in said
    assert "de l'intérieur" not in said and "vos propres soins" not in said


def test_mental_health_job_is_told_to_the_person_concerned(engine: Engine) -> None:
    turn = choose(engine, *patient(("fr", "hdf"), "soutenir_pairs", experience="sante_mentale",
                                   availability="metier"))  # fmt: skip
    assert turn.recommendation is not None
    assert "ccoms_msp" in {c.id for c in turn.recommendation.contacts}
    said = texts(turn)
    assert "offre de poste" in said and "On ne s'inscrit" in said


def test_etp_wish_gets_the_regional_etp_platform(engine: Engine) -> None:
    turn = choose(engine, *patient(("fr", "bretagne"), "ameliorer_soins"))
    assert turn.recommendation is not None
    ids = [c.id for c in turn.recommendation.contacts]
    assert "dactiv_etp" in ids
    assert "ars_bretagne_agreees" not in ids, "an RU route is not an ETP resource"


def test_ru_wish_gets_the_ru_route_of_the_region(engine: Engine) -> None:
    turn = choose(engine, *patient(("fr", "bretagne"), "representer"))
    assert turn.recommendation is not None
    ids = [c.id for c in turn.recommendation.contacts]
    assert "ars_bretagne_agreees" in ids
    assert "etp29" not in ids


def test_condition_associations_follow_the_condition_and_the_country(engine: Engine) -> None:
    rare_fr = choose(engine, *patient(("fr", "paca"), "partager", experience="maladie_rare"))
    rare_ch = choose(engine, *patient(("ch",), "partager", experience="maladie_rare"))
    cancer_fr = choose(engine, *patient(("fr", "paca"), "partager", experience="cancer"))
    assert rare_fr.recommendation and rare_ch.recommendation and cancer_fr.recommendation
    assert "alliance_maladies_rares" in {c.id for c in rare_fr.recommendation.contacts}
    assert "proraris" in {c.id for c in rare_ch.recommendation.contacts}
    assert "alliance_maladies_rares" not in {c.id for c in rare_ch.recommendation.contacts}
    assert "alliance_maladies_rares" not in {c.id for c in cancer_fr.recommendation.contacts}


def test_a_named_condition_keeps_only_its_own_disease_associations(engine: Engine) -> None:
    """« j'ai la maladie de Crohn » gets afa, not the diabetes or Parkinson associations."""
    turn = engine.handle(engine.start().session, Input.text("j'ai la maladie de Crohn"))
    assert turn.understood.get("condition") == "crohn"
    turn = choose(engine, "stabilise", "soutenir_pairs", "fr", "bretagne", "aucune", "aucune",
                  "ponctuel", turn=turn)  # fmt: skip
    assert turn.recommendation
    shown = {c.id for c in turn.recommendation.contacts}
    assert "afa_crohn_rch" in shown
    assert not shown & {"federation_diabetiques", "france_parkinson", "france_avc", "aides"}
    by_button = choose(engine, *patient(("fr", "bretagne"), "soutenir_pairs"))
    assert by_button.recommendation
    # Without a named condition, the category's associations stay on offer.
    assert "federation_diabetiques" in {c.id for c in by_button.recommendation.contacts}


def test_no_empty_list_falls_back_and_says_so(engine: Engine) -> None:
    """Normandie has no ETP resource of its own: national ones, a regional contact, and a note."""
    turn = choose(engine, *patient(("fr", "normandie"), "ameliorer_soins"))
    assert turn.recommendation is not None
    assert turn.recommendation.contacts
    assert turn.recommendation.contacts_note
    assert "Normandie" in turn.recommendation.contacts_note
    assert turn.recommendation.contacts_note in texts(turn)


# -- 2. each country's own rules -----------------------------------------------------------


@pytest.mark.parametrize("territory", ABROAD)
def test_abroad_no_french_rule_is_told(engine: Engine, kb: KnowledgeBase, territory: str) -> None:
    french = french_words(kb)
    for profile, experience in (("patient", "chronique"), ("proche", "sante_mentale"),
                                ("patient", "sante_mentale")):  # fmt: skip
        for wish in WISHES:
            steps = patient(ABROAD[territory], wish, profile=profile, experience=experience,
                            availability="metier")  # fmt: skip
            turn = engine.start()
            told = []
            for step in steps:
                turn = engine.handle(turn.session, Input.choice(step, turn.node))
                told.append(texts(turn))
                told += [c.label for r in turn.replies for c in r.choices]
                helped = engine.handle(turn.session, Input.command("aide"))
                told.append(texts(helped))
            told.append(texts(engine.handle(turn.session, Input.command("contacts"))))
            glossary = engine.handle(turn.session, Input.command("glossaire"))
            told += [c.label for r in glossary.replies for c in r.choices]
            told.append(texts(engine.handle(turn.session, Input.choice("cmd:relation"))))
            found = french.search("\n".join(told))
            assert found is None, (territory, profile, wish, found and found.group(0))
    pro = choose(engine, "professionnel", "lancer_demarche", *ABROAD[territory])
    found = french.search(texts(pro))
    assert found is None, (territory, found and found.group(0))


def test_abroad_the_french_only_answers_are_not_offered(engine: Engine) -> None:
    turn = choose(engine, "patient", "chronique", "stabilise", "representer", "qc")
    assert turn.node == "association"
    assert "agreee" not in choice_ids(turn)
    training = choose(engine, "aucune", turn=turn)
    assert not {"ru_en_avant", "licence_msp"} & set(choice_ids(training))
    france = choose(engine, "patient", "chronique", "stabilise", "representer", "fr", "idf")
    assert "agreee" in choice_ids(france)


def test_abroad_the_honest_sentence_names_whom_to_ask(engine: Engine) -> None:
    turn = choose(engine, *patient(("qc",), "representer"))
    assert turn.recommendation is not None
    ru = next(r for r in turn.recommendation.roles if r.id == "representant_usagers")
    steps = " ".join(ru.first_steps)
    assert "comité des usagers" in steps
    assert "Les conditions dépendent de votre pays ; demandez à RPCU" in steps
    other = choose(engine, *patient(("autre",), "representer"))
    assert other.recommendation is not None
    ru = next(r for r in other.recommendation.roles if r.id == "representant_usagers")
    assert any("Les conditions dépendent de votre pays" in s for s in ru.first_steps)


def test_in_france_the_french_rules_are_told(engine: Engine) -> None:
    turn = choose(engine, *patient(("fr", "occitanie"), "representer"))
    said = texts(turn)
    assert "association agréée" in said and "RU En avant" in said


def test_a_french_term_says_it_is_french(engine: Engine) -> None:
    turn = choose(engine, *patient(("be", "wallonie_bruxelles"), "representer"))
    answer = engine.handle(turn.session, Input.text("c'est quoi l'ARS ?"))
    assert "France" in texts(answer) and "ne s'applique pas dans votre pays" in texts(answer)


def test_crisis_numbers_of_quebec_and_luxembourg(engine: Engine, kb: KnowledgeBase) -> None:
    quebec = [n.number for n in kb.crisis.countries["qc"].numbers]
    assert quebec[0].startswith("1 866 APPELLE") and quebec[1] == "535353"
    assert quebec[-1] == "988", "988 comes last, as the Canada-wide fallback"
    assert "suicide.ca" in kb.crisis.countries["qc"].numbers[0].label["fr"]
    turn = choose(engine, "patient", "chronique", "stabilise", "partager", "qc")
    crisis = texts(engine.handle(turn.session, Input.text("je veux mourir")))
    assert crisis.index("1 866 APPELLE") < crisis.index("988")
    (sos,) = [n for n in kb.crisis.countries["lu"].numbers if n.number == "45 45 45"]
    assert not re.search(r"\d+ ?h|heure", sos.label["fr"]), "SOS Détresse: never its hours"


# -- 3. content corrections ----------------------------------------------------------------


@pytest.mark.parametrize("experience", ["chronique", "maladie_rare", "cancer", "sante_mentale",
                                        "handicap", "addiction", "autre"])  # fmt: skip
def test_carers_read_their_own_wording(engine: Engine, experience: str) -> None:
    for wish in WISHES:
        for recul in ("stabilise", "en_cours"):
            turn = choose(engine, "proche", experience, recul, wish, "fr", "idf", "aucune",
                          "aucune", "ponctuel")  # fmt: skip
            said = texts(turn)
            for patient_words in ("de l'intérieur", "vos propres soins", "votre propre parcours"):
                assert patient_words not in said, (experience, wish, recul, patient_words)


def test_metier_gives_the_peer_job_only_for_mental_health_or_addiction(engine: Engine) -> None:
    rare = choose(engine, *patient(("fr", "idf"), "partager", experience="maladie_rare",
                                   availability="metier"))  # fmt: skip
    mental = choose(engine, *patient(("fr", "idf"), "partager", experience="sante_mentale",
                                     availability="metier"))  # fmt: skip
    assert rare.recommendation and mental.recommendation
    rare_peer = [r for r in rare.recommendation.roles if r.id == "pair_aidant"]
    assert not any("métier" in reason for r in rare_peer for reason in r.reasons)
    mental_peer = next(r for r in mental.recommendation.roles if r.id == "pair_aidant")
    assert any("métier" in reason for reason in mental_peer.reasons)


def test_ru_en_avant_is_told_as_training_after_appointment(engine: Engine) -> None:
    turn = choose(engine, *patient(("fr", "idf"), "representer")[:6], "aucune", "ru_en_avant",
                  "mensuel")  # fmt: skip
    said = texts(turn)
    assert "après leur première désignation" in said


# -- 4. an honest hand-off -----------------------------------------------------------------


def establishment(
    est_id: str,
    name: str,
    *,
    territories: tuple[str, ...] = (),
    contexts: tuple[str, ...] = (),
    webhook: bool = True,
) -> Establishment:
    return Establishment(
        est_id, name, contexts=contexts, territories=territories,
        webhook_url=f"https://{est_id}.example/hook" if webhook else None,
        secret=b"s" * 32 if webhook else None,
    )  # fmt: skip


TRAINER_OCCITANIE = patient(("fr", "occitanie"), "former")


def test_without_establishment_no_call_back_is_promised(kb: KnowledgeBase) -> None:
    elsewhere = establishment("chu-paris", "CHU de Paris", territories=("fr-idf",))
    silent = establishment("mdu-occ", "Maison des usagers", territories=("fr-occitanie",),
                           webhook=False)  # fmt: skip
    for engine in (Engine(kb), Engine(kb, receivers=(elsewhere, silent))):
        done = choose(engine, *TRAINER_OCCITANIE)
        assert "cmd:relation" not in choice_ids(done)
        asked = engine.handle(done.session, Input.choice("cmd:relation"))
        said = texts(asked)
        assert not asked.events and asked.session.pending is None
        assert "Rien n'est envoyé" in said
        assert "recontacter" not in said.lower() and "recontactera" not in said.lower()
        assert "Premiers pas" in said and "https://" in said, "the contacts' own details instead"


def test_with_one_establishment_the_request_reaches_its_webhook_only(kb: KnowledgeBase) -> None:
    chu = establishment("chu-toulouse", "CHU de Toulouse", territories=("fr-occitanie",))
    paris = establishment("chu-paris", "CHU de Paris", territories=("fr-idf",))
    silent = establishment("mdu-occ", "Maison des usagers", territories=("fr-occitanie",),
                           webhook=False)  # fmt: skip
    receivers = {e.id: e for e in (chu, paris, silent)}
    engine = Engine(kb, receivers=tuple(receivers.values()))
    done = choose(engine, *TRAINER_OCCITANIE)
    assert "cmd:relation" in choice_ids(done)
    asked = engine.handle(done.session, Input.choice("cmd:relation"))
    consent = texts(asked)
    assert "CHU de Toulouse" in consent
    assert "CHU de Paris" not in consent and "Maison des usagers" not in consent
    assert "COPS" not in consent, "third-party contacts are not named as receivers"
    how = engine.handle(asked.session, Input.choice("cmd:confirmer"))
    typed = engine.handle(how.session, Input.text("au 06 00 00 00 00 le soir"))
    sent = engine.handle(typed.session, Input.choice("cmd:confirmer"))
    (event,) = [e for e in sent.events if e.kind == "contact.requested"]
    entries = route(event, receivers, territories=["fr-occitanie", "fr"])
    assert [e.establishment for e in entries] == ["chu-toulouse"]
    said = texts(sent)
    assert "CHU de Toulouse" in said and "ne peut pas vous le promettre" in said


def test_the_establishment_of_the_context_or_the_api_key_is_named(kb: KnowledgeBase) -> None:
    chu = establishment("chu-a", "CHU A", contexts=("chu-a-web",))
    clinic = establishment("clinique-b", "Clinique B")
    engine = Engine(kb, receivers=(chu, clinic))
    by_context = choose(engine, *TRAINER_OCCITANIE, turn=engine.start("chu-a-web"))
    consent = texts(engine.handle(by_context.session, Input.choice("cmd:relation")))
    assert "CHU A" in consent and "Clinique B" not in consent
    by_key = choose(engine, *TRAINER_OCCITANIE, turn=engine.start(owner="clinique-b"))
    consent = texts(engine.handle(by_key.session, Input.choice("cmd:relation")))
    assert "Clinique B" in consent and "CHU A" not in consent
    nobody = choose(engine, *TRAINER_OCCITANIE)
    assert "cmd:relation" not in choice_ids(nobody)


# -- kb check ------------------------------------------------------------------------------


def errors_of(directory: Path) -> list[str]:
    _, problems = load_with_problems(directory)
    return [str(p) for p in problems if p.severity == "error"]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_kb_check_catches_a_french_rule_that_can_reach_another_country(base_copy: Path) -> None:
    roles = base_copy / "roles.yaml"
    caution = "        caution: Vérifiez votre AAH avant d'accepter.\n"
    edit(roles, "        ask: [rpcu]\n", "        ask: [rpcu]\n" + caution)
    found = errors_of(base_copy)
    assert any("roles.yaml:" in e and "« AAH »" in e and "qc" in e for e in found), found


def test_kb_check_catches_an_unmarked_french_term(base_copy: Path) -> None:
    glossary = base_copy / "glossary.yaml"
    data = yaml.safe_load(glossary.read_text(encoding="utf-8"))
    del data["terms"]["ars"]["countries"]
    glossary.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    found = errors_of(base_copy)
    french = [e for e in found if "glossary.yaml:" in e and "ne vaut qu'en fr" in e]
    assert any("be" in e for e in french), found


def test_kb_check_wants_the_country_before_a_french_only_choice(base_copy: Path) -> None:
    flow = base_copy / "flow.yaml"
    edit(flow, "    fact: wish\n    next: pays", "    fact: wish\n    next: association")
    edit(flow, "    fact: availability\n    next: recommendation",
         "    fact: availability\n    next: pays")  # fmt: skip
    edit(flow, "    next: association\n    next_when:", "    next: recommendation\n    next_when:")
    found = errors_of(base_copy)
    assert any("agreee" in e and "pays plus tôt" in e for e in found), found


def test_kb_check_refuses_a_contact_without_page_or_date(base_copy: Path) -> None:
    contacts = base_copy / "contacts.yaml"
    data = yaml.safe_load(contacts.read_text(encoding="utf-8"))
    data["contacts"]["fhl"]["sources"] = ["seed:000_e372d27c9126fcbb.txt"]
    del data["contacts"]["luss"]["checked"]
    del data["contacts"]["ceppp"]["sources"]
    del data["contacts"]["osp"]["why"]
    contacts.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    found = errors_of(base_copy)
    assert any("checked" in e and "contacts.yaml:" in e for e in found), found
    assert any("sources" in e and "contacts.yaml:" in e for e in found), found
    # Once the schema errors are fixed, the page and the « why » are required too.
    data["contacts"]["luss"]["checked"] = "2026-12-01"
    data["contacts"]["ceppp"]["sources"] = ["https://ceppp.ca/en/about-us/"]
    contacts.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    found = errors_of(base_copy)
    assert any("« fhl »" in e and "page publique" in e for e in found), found
    assert any("« osp »" in e and "why" in e for e in found), found


def test_kb_check_wants_a_contact_of_its_own_for_each_territory(base_copy: Path) -> None:
    contacts = base_copy / "contacts.yaml"
    data = yaml.safe_load(contacts.read_text(encoding="utf-8"))
    for contact in data["contacts"].values():
        contact["territories"] = [t for t in contact["territories"] if t != "fr-corse"] or ["fr"]
    contacts.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    found = errors_of(base_copy)
    assert any("fr-corse" in e and "aucun contact" in e for e in found), found


def test_titles_agree_with_a_person_who_speaks_in_the_feminine(engine: Engine) -> None:
    said = engine.handle(engine.start().session, Input.text("je suis aidante"))
    assert said.node == "experience"
    turn = choose(engine, "chronique", "stabilise", "former", "fr", "idf", "aucune", "aucune",
                  "mensuel", turn=said)  # fmt: skip
    assert turn.recommendation is not None
    assert turn.recommendation.roles[0].title == "Proche-aidante partenaire formatrice"
    buttons = choose(engine, "proche", "chronique", "stabilise", "former", "fr", "idf", "aucune",
                     "aucune", "mensuel")  # fmt: skip
    assert buttons.recommendation is not None
    assert buttons.recommendation.roles[0].title == "Proche-aidant partenaire formateur"


def test_a_word_about_someone_else_does_not_set_the_feminine(engine: Engine) -> None:
    said = engine.handle(engine.start().session, Input.text("ma fille est handicapee"))
    assert said.session.gender is None


def test_a_french_term_is_not_labelled_for_a_person_in_france(engine: Engine) -> None:
    turn = choose(engine, *patient(("fr", "idf"), "representer"))
    answer = texts(engine.handle(turn.session, Input.text("c'est quoi l'ARS ?")))
    assert "Agence régionale de santé" in answer and "Ce mot désigne" not in answer


def test_a_reload_keeps_the_receivers(kb: KnowledgeBase) -> None:
    """``serve`` builds its engines with the establishments; a reload must not forget them."""
    import functools

    from bot.app.engines import build_engine
    from bot.app.reload import EngineHolder

    chu = establishment("chu-toulouse", "CHU de Toulouse", territories=("fr-occitanie",))
    factory = functools.partial(build_engine, receivers=(chu,))
    holder = EngineHolder(factory(kb), factory)
    assert holder.factory(kb).receivers == (chu,)
    default = EngineHolder(Engine(kb, receivers=(chu,)))
    assert default.factory(kb).receivers == (chu,)


def test_each_why_fits_the_people_it_is_shown_to(kb: KnowledgeBase) -> None:
    """A « why » that says « vous accompagnez un proche » is shown only to carers."""
    for contact_id, contact in kb.contacts.items():
        why = (contact.why or {}).get("fr", "")
        if why.startswith("Parce que vous accompagnez"):
            assert contact.only_when, contact_id
            assert all(c.get("profile") == ["proche"] for c in contact.only_when), contact_id
        if "vous-même" in why:
            assert all(c.get("profile") == ["patient"] for c in contact.only_when), contact_id


def test_a_typed_number_counts_the_buttons_shown(engine: Engine) -> None:
    turn = choose(engine, "patient", "chronique", "stabilise", "partager", "lu")
    assert turn.node == "association"
    first = engine.handle(turn.session, Input.text("1"))
    assert first.session.answers[-1] == ("association", "non_agreee")
    second = engine.handle(turn.session, Input.text("2"))
    assert second.session.answers[-1] == ("association", "aucune")


def test_a_session_of_the_older_flow_is_asked_its_country_first(engine: Engine) -> None:
    """Before 2.0.0 the country came last: a conversation in progress at « formation » must
    not be offered French-only answers without knowing where the person lives."""
    from dataclasses import replace

    turn = choose(engine, "patient", "chronique", "stabilise", "partager", "fr", "idf", "aucune")
    answers = tuple(a for a in turn.session.answers if a[0] not in ("pays", "region"))
    old = replace(turn.session, kb_version="1.2.0", node="formation", answers=answers)
    resumed = engine.handle(old, Input.text("aide"))
    assert resumed.node == "pays"
    assert "mis à jour" in texts(resumed)
    kept = choose(engine, "fr", "idf", turn=resumed)
    assert kept.node == "association"
