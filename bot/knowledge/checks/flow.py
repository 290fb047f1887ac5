"""The question graph of ``flow.yaml`` and the roles' conditions: every target exists, every
question is reachable and leads to a recommendation or an exit, every choice is scored with
a reason."""

from __future__ import annotations

from bot.knowledge.checks.common import (
    check_condition,
    known_facts,
    problem,
    unknown_role,
)
from bot.knowledge.model import SPECIAL_TARGETS, KnowledgeBase, normalize
from bot.knowledge.problems import Problem


def check_flow(kb: KnowledgeBase) -> list[Problem]:
    problems: list[Problem] = []
    flow = kb.flow
    problems += check_condition(kb, flow.carer_when, known_facts(kb), "flow.yaml", ("carer_when",))
    questions = flow.questions
    if flow.start not in questions:
        problems.append(
            problem(
                kb, "flow.yaml", ("start",), f"la question de départ « {flow.start} » n'existe pas"
            )
        )
        return problems
    edges: dict[str, set[str]] = {}
    for qid, question in questions.items():
        targets: set[str] = set()
        seen_ids: set[str] = set()
        seen_words: dict[str, str] = {}
        for index, choice in enumerate(question.choices):
            path = ("questions", qid, "choices", index)
            if choice.id in seen_ids:
                problems.append(
                    problem(
                        kb, "flow.yaml", (*path, "id"), f"deux choix portent l'id « {choice.id} »"
                    )
                )
            seen_ids.add(choice.id)
            target = choice.next or question.next
            if target is None and question.next_when:
                target = question.next_when[0].next
            if target is None:
                problems.append(
                    problem(
                        kb,
                        "flow.yaml",
                        path,
                        f"le choix « {choice.id} » ne mène nulle part : ajoutez « next » au choix "
                        "ou à la question",
                    )
                )
            elif target not in questions and target not in SPECIAL_TARGETS:
                problems.append(
                    problem(
                        kb,
                        "flow.yaml",
                        (*path, "next") if choice.next else ("questions", qid, "next"),
                        f"« {target} » n'est ni une question ni « recommendation » ni « exit »",
                    )
                )
            else:
                targets.add(target)
            for role_id in choice.scores:
                problems += unknown_role(kb, "flow.yaml", (*path, "scores", role_id), role_id)
            if any(points > 0 for points in choice.scores.values()) and choice.reason is None:
                problems.append(
                    problem(
                        kb,
                        "flow.yaml",
                        path,
                        f"le choix « {choice.id} » donne des points sans « reason » : "
                        "ajoutez la raison montrée à la personne",
                    )
                )
            if choice.sets.get("territory") and choice.sets["territory"] not in kb.territories:
                problems.append(
                    problem(
                        kb,
                        "flow.yaml",
                        (*path, "sets", "territory"),
                        f"le territoire « {choice.sets['territory']} » n'existe pas dans "
                        "territories.yaml",
                    )
                )
            words = [normalize(label) for label in choice.label.values()]
            for synonyms in choice.synonyms.values():
                words += [normalize(word) for word in synonyms]
            for word in dict.fromkeys(words):
                if not word:
                    continue
                other = seen_words.get(word)
                if other is not None and other != choice.id:
                    problems.append(
                        problem(
                            kb,
                            "flow.yaml",
                            (*path, "synonyms"),
                            f"« {word} » désigne à la fois « {other} » et « {choice.id} » : "
                            "gardez-le pour un seul choix",
                        )
                    )
                seen_words[word] = choice.id
        for number, branch in enumerate(question.next_when):
            where = ("questions", qid, "next_when", number)
            problems += check_condition(kb, branch.when, known_facts(kb), "flow.yaml", where)
            if branch.next not in questions and branch.next not in SPECIAL_TARGETS:
                problems.append(
                    problem(
                        kb,
                        "flow.yaml",
                        where,
                        f"« {branch.next} » n'est ni une question ni « recommendation » "
                        "ni « exit »",
                    )
                )
            elif any(not c.next for c in question.choices):
                targets.add(branch.next)
        edges[qid] = targets

    reachable: set[str] = set()
    todo = [flow.start]
    while todo:
        current = todo.pop()
        if current in reachable or current not in questions:
            continue
        reachable.add(current)
        todo += [t for t in edges.get(current, ()) if t in questions]
    for qid in questions:
        if qid not in reachable:
            problems.append(
                problem(
                    kb,
                    "flow.yaml",
                    ("questions", qid),
                    f"la question « {qid} » n'est jamais posée : aucun choix n'y mène depuis "
                    f"« {flow.start} »",
                )
            )

    ends: set[str] = set()
    changed = True
    while changed:
        changed = False
        for qid, targets in edges.items():
            if qid not in ends and any(t in SPECIAL_TARGETS or t in ends for t in targets):
                ends.add(qid)
                changed = True
    for qid in sorted(reachable - ends):
        problems.append(
            problem(
                kb,
                "flow.yaml",
                ("questions", qid),
                f"depuis « {qid} », aucun chemin ne mène à une recommandation ni à une sortie "
                "(boucle sans issue ou impasse)",
            )
        )
    return problems


def check_roles(kb: KnowledgeBase, facts: dict[str, set[str]]) -> list[Problem]:
    problems = []
    for role_id, role in kb.roles.items():
        base = ("roles", role_id)
        problems += check_condition(kb, role.only_when, facts, "roles.yaml", (*base, "only_when"))
        for index, requirement in enumerate(role.requirements):
            problems += check_condition(
                kb,
                requirement.met_when,
                facts,
                "roles.yaml",
                (*base, "requirements", index, "met_when"),
            )
            if requirement.met_when and not requirement.how_to:
                problems.append(
                    problem(
                        kb,
                        "roles.yaml",
                        (*base, "requirements", index),
                        "ajoutez « how_to » : comment remplir cette condition quand elle manque",
                    )
                )
    return problems
