"""Engine benchmark: per-step latency and free-text matching time.

Runs random conversations (buttons, then free text with typos) on the shipped base and on a
generated base 20x larger, in the same run, and prints p50/p99 with the large/small ratios.
Targets: p99 under 1 ms per step on the shipped base; growth no worse than linear in size.

    python bench/engine.py [--conversations 300] [--factor 20]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from copy import deepcopy
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.engine.flow import Engine  # noqa: E402
from bot.engine.session import Input  # noqa: E402
from bot.knowledge.loader import load  # noqa: E402
from bot.knowledge.model import KnowledgeBase  # noqa: E402

CONTENUS = ROOT / "contenus"


def _read(name: str) -> Any:
    return yaml.safe_load((CONTENUS / name).read_text(encoding="utf-8"))


def _suffix_scores(choice: dict[str, Any], k: int) -> None:
    choice["scores"] = {f"{role}_{k}": pts for role, pts in (choice.get("scores") or {}).items()}


def generate_base(target: Path, factor: int) -> None:
    """Write a base ``factor`` times larger: the flow chained ``factor`` times, roles, contacts
    and glossary copied ``factor`` times (copy 0 keeps the original ids)."""
    for path in [*CONTENUS.glob("*.yaml"), CONTENUS / "lexique" / "conditions.yaml"]:
        # The conditions lexicon: contacts name conditions. The others name questions, whose
        # ids the copies suffix: without them the engine reads buttons' labels only.
        copy = target / path.relative_to(CONTENUS)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    roles = _read("roles.yaml")["roles"]
    flow = _read("flow.yaml")
    glossary = _read("glossary.yaml")["terms"]
    contacts = _read("contacts.yaml")["contacts"]

    big_roles: dict[str, Any] = {}
    big_terms: dict[str, Any] = {}
    big_contacts: dict[str, Any] = {}
    big_questions: dict[str, Any] = {}
    for k in range(factor):
        for role_id, role in roles.items():
            big_roles[f"{role_id}_{k}"] = role
        for term_id, term in glossary.items():
            copy = deepcopy(term)
            copy["term"] = f"{term['term']} {k}" if isinstance(term["term"], str) else term["term"]
            copy["aliases"] = [f"{alias} {k}" for alias in term.get("aliases", [])]
            big_terms[f"{term_id}_{k}"] = copy
        for contact_id, contact in contacts.items():
            copy = deepcopy(contact)
            copy["roles"] = [f"{role}_{k}" for role in contact["roles"]]
            big_contacts[f"{contact_id}_{k}"] = copy
        following = f"{flow['start']}_{k + 1}" if k + 1 < factor else "recommendation"
        for qid, question in flow["questions"].items():
            copy = deepcopy(question)
            copy["fact"] = f"{question['fact']}_{k}" if k else question["fact"]
            if copy.get("next") == "recommendation":
                copy["next"] = following
            elif copy.get("next"):
                copy["next"] = f"{copy['next']}_{k}"
            for branch in copy.get("next_when", []):
                goal = branch["next"]
                branch["next"] = following if goal == "recommendation" else f"{goal}_{k}"
            for choice in copy["choices"]:
                _suffix_scores(choice, k)
                for extra in choice.get("scores_when", []):
                    _suffix_scores(extra, k)
                if choice.get("next") == "recommendation":
                    choice["next"] = following
                elif choice.get("next") and choice["next"] != "exit":
                    choice["next"] = f"{choice['next']}_{k}"
            big_questions[f"{qid}_{k}"] = copy
    for role in big_roles.values():
        for key in ("only_when", "steps_when"):
            role.pop(key, None)
        for local in role.get("local", {}).values():
            local.pop("ask", None)  # contact ids are suffixed in the copies
        role["requirements"] = [
            {k: v for k, v in req.items() if k != "met_when"}
            for req in role.get("requirements", [])
        ]
    flow["start"] = f"{flow['start']}_0"
    flow["questions"] = big_questions
    flow.pop("carer_when", None)
    dump = {
        "roles.yaml": {"roles": big_roles},
        "flow.yaml": flow,
        "glossary.yaml": {"terms": big_terms},
        "contacts.yaml": {"contacts": big_contacts},
    }
    for name, data in dump.items():
        (target / name).write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def typo(label: str, rng: random.Random) -> str:
    """Drop accents' luck aside, remove one inner letter of the longest word."""
    words = label.split()
    longest = max(range(len(words)), key=lambda i: len(words[i]))
    word = words[longest]
    if len(word) > 5:
        cut = rng.randrange(1, len(word) - 1)
        words[longest] = word[:cut] + word[cut + 1 :]
    return " ".join(words).lower()


def run(kb: KnowledgeBase, conversations: int, seed: int) -> dict[str, list[float]]:
    engine = Engine(kb)
    rng = random.Random(seed)
    steps: list[float] = []
    texts: list[float] = []
    matches: list[float] = []
    understood = 0
    for n in range(conversations):
        turn = engine.start()
        by_text = n % 2 == 1
        for _ in range(500):
            question = kb.questions.get(turn.node)
            if question is None:
                break
            choice = rng.choice(question.choices)
            if by_text:
                label = typo(next(iter(choice.label.values())), rng)
                started = time.perf_counter()
                matched = engine.matcher.choice(turn.node, label)
                matches.append(time.perf_counter() - started)
                event = Input.text(label)
            else:
                event = Input.choice(choice.id, turn.node)
            started = time.perf_counter()
            after = engine.handle(turn.session, event)
            elapsed = time.perf_counter() - started
            (texts if by_text else steps).append(elapsed)
            if by_text:
                understood += matched is not None and after.node != turn.node
                if after.node == turn.node:
                    after = engine.handle(turn.session, Input.choice(choice.id, turn.node))
            turn = after
    return {"button": steps, "text": texts, "match": matches, "understood": [understood]}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--conversations", type=int, default=300)
    parser.add_argument("--factor", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    small = load(CONTENUS)
    with tempfile.TemporaryDirectory() as tmp:
        generate_base(Path(tmp), args.factor)
        started = time.perf_counter()
        large = load(Path(tmp))
        load_large = time.perf_counter() - started
    started = time.perf_counter()
    load(CONTENUS)
    load_small = time.perf_counter() - started

    results = {}
    for name, kb in (("shipped", small), (f"x{args.factor}", large)):
        results[name] = run(kb, args.conversations, args.seed)
        r = results[name]
        size = len(kb.questions) + len(kb.roles) + len(kb.glossary) + len(kb.contacts)
        typed = len(r["match"])
        print(f"== base {name}: {len(kb.questions)} questions, {len(kb.roles)} roles, "
              f"{len(kb.glossary)} terms, {len(kb.contacts)} contacts (size {size})")  # fmt: skip
        for label, key in (("step by button", "button"), ("step by text", "text"),
                           ("matching only", "match")):  # fmt: skip
            print(f"   {label:<16} p50 {pct(r[key], 0.5):.3f} ms   p99 {pct(r[key], 0.99):.3f} ms"
                  f"   ({len(r[key])} samples)")  # fmt: skip
        print(f"   understood {r['understood'][0]}/{typed} typed answers with a typo")
    big = f"x{args.factor}"
    print(f"== load time: shipped {load_small * 1000:.0f} ms, {big} {load_large * 1000:.0f} ms "
          f"(ratio {load_large / load_small:.1f} for a base {args.factor}x larger)")  # fmt: skip
    for kind in ("button", "text"):
        ratio = statistics.median(results[big][kind]) / statistics.median(results["shipped"][kind])
        print(f"== per-step {kind} p50 ratio {big}/shipped: {ratio:.2f} "
              f"(linear growth would be {args.factor}; target: <= {args.factor})")  # fmt: skip
    p99 = pct(results["shipped"]["button"] + results["shipped"]["text"], 0.99)
    print(f"== target p99 < 1 ms per step on the shipped base: {p99:.3f} ms "
          f"{'MET' if p99 < 1 else 'NOT MET'}")  # fmt: skip


if __name__ == "__main__":
    main()
