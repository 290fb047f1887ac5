"""Property tests: no input sequence breaks the engine, no mutated YAML breaks the loader."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.engine.flow import Engine
from bot.engine.session import EXITED, RECOMMENDED, Input, Session
from bot.knowledge.loader import load_with_problems
from bot.knowledge.model import KnowledgeBase
from tests.harness.paths import CONTENUS

COMMANDS = [
    "aide",
    "retour",
    "recommencer",
    "contacts",
    "glossaire",
    "stop",
    "relation",
    "inconnue",
]
BUTTONS = ["cmd:retour", "cmd:confirmer", "cmd:annuler", "cmd:reprendre", "cmd:relation",
           "term:ru", "term:inconnu", "patient", "zzz", "fr", "aucune", ""]  # fmt: skip
TEXTS = ["oui", "non", "2", "c'est quoi l'ETP", "je suis aidante", "\u202eabc", "<b>x</b>",
         "'; DROP TABLE sessions; --", "\x00\x07", "a" * 3000]  # fmt: skip


def inputs(kb: KnowledgeBase) -> st.SearchStrategy[Input]:
    choice_ids = sorted({c.id for q in kb.questions.values() for c in q.choices})
    nodes = [*kb.questions, RECOMMENDED, EXITED, None, "disparu"]
    return st.one_of(
        st.builds(Input.choice, st.sampled_from(choice_ids + BUTTONS), st.sampled_from(nodes)),
        st.builds(Input.text, st.one_of(st.sampled_from(TEXTS), st.text(max_size=80))),
        st.builds(Input.command, st.sampled_from(COMMANDS)),
    )


def reach_recommendation(engine: Engine, session: Session) -> bool:
    """From any state, pressing the first button of each question leads to a recommendation."""
    turn = engine.handle(session, Input.command("recommencer"))
    turn = engine.handle(turn.session, Input.choice("cmd:confirmer"))
    for _ in range(50):
        question = engine.kb.questions.get(turn.node)
        if question is None:
            break
        turn = engine.handle(turn.session, Input.choice(question.choices[0].id, turn.node))
    return turn.node == RECOMMENDED


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_input_sequence_is_safe(engine: Engine, data: st.DataObject) -> None:
    turn = engine.start()
    steps = data.draw(st.lists(inputs(engine.kb), max_size=25))
    for event in steps:
        turn = engine.handle(turn.session, event)
        assert turn.replies, event
        assert all(reply.text.strip() for reply in turn.replies), event
        assert turn.replies[-1].choices, f"no button offered after {event}"
        node = turn.session.node
        assert node in engine.kb.questions or node in (RECOMMENDED, EXITED)
        restored = Session.from_dict(json.loads(json.dumps(turn.session.to_dict())))
        assert restored == turn.session
    assert reach_recommendation(engine, turn.session)


MUTATIONS = st.sampled_from(["delete_line", "duplicate_line", "indent", "dedent", "colon",
                             "truncate", "bracket", "tab", "garbage"])  # fmt: skip


def mutate(text: str, how: str, position: int) -> str:
    lines = text.splitlines()
    if not lines:
        return text
    i = position % len(lines)
    if how == "delete_line":
        del lines[i]
    elif how == "duplicate_line":
        lines.insert(i, lines[i])
    elif how == "indent":
        lines[i] = "   " + lines[i]
    elif how == "dedent":
        lines[i] = lines[i].lstrip()
    elif how == "colon":
        lines[i] = lines[i] + ": x: y"
    elif how == "truncate":
        lines = lines[:i]
    elif how == "bracket":
        lines[i] = lines[i] + " [{"
    elif how == "tab":
        lines[i] = "\t" + lines[i]
    else:
        lines[i] = "\x00\ufffe%@`"
    return "\n".join(lines) + "\n"


FILE_NAMES = sorted(p.name for p in CONTENUS.glob("*.yaml"))


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(FILE_NAMES), how=MUTATIONS, position=st.integers(0, 10_000))
def test_mutated_yaml_gives_problems_never_a_traceback(name: str, how: str, position: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "contenus"
        shutil.copytree(CONTENUS, base)
        path = base / name
        path.write_text(mutate(path.read_text(encoding="utf-8"), how, position), "utf-8")
        kb, problems = load_with_problems(base)
        if kb is None:
            assert problems
            assert all(str(p).startswith(str(base)) for p in problems)
