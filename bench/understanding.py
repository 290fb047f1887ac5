"""Understanding benchmark: how much of what people type is understood, and how fast.

Prints, on the shipped base:
- the understanding rate of the corpus (``tests/understanding/*.yaml``) per question and overall,
  the answers taken wrongly (said back, so the person can undo them) and *silently* wrongly;
  then the same for the held-out set (``holdout*.yaml``), apart;
- turns to a recommendation for the people who tell their story by free text
  (``tests/conversations/*_texte_*.yaml``), against the number of questions the same people
  would answer by buttons;
- per-message latency (p50, p99, in CPU time) on the shipped base and on a base whose lexicons
  are 20 times larger, measured in the same run, with the ratio (growth no worse than linear).

Targets (issue 9): >= 95 % understood, 0 silently wrong, p99 < 2 ms per message.

    python bench/understanding.py [--factor 20] [--repeat 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.channels.corpus import Result, load_corpus, play_corpus, reach  # noqa: E402
from bot.channels.script import load_script, play  # noqa: E402
from bot.engine.flow import Engine  # noqa: E402
from bot.engine.session import Input  # noqa: E402
from bot.knowledge.loader import load  # noqa: E402
from bot.knowledge.model import KnowledgeBase  # noqa: E402

CONTENUS = ROOT / "contenus"
#: The corpus its authors tuned the lexicons on, and the held-out set written afterwards by
#: an outsider's hand (``holdout*.yaml``), reported apart: the honest figure.
CORPUS = sorted(
    p for p in (ROOT / "tests" / "understanding").glob("*.yaml") if not p.name.startswith("holdout")
)
HOLDOUT = sorted((ROOT / "tests" / "understanding").glob("holdout*.yaml"))
STORIES = sorted((ROOT / "tests" / "conversations").glob("*_texte_*.yaml"))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def understanding(engine: Engine, paths: list[Path], title: str) -> list[Result]:
    results: list[Result] = []
    for path in paths:
        results += play_corpus(engine, path).results
    by_question: dict[str, list[Result]] = defaultdict(list)
    for result in results:
        by_question[result.at].append(result)
    print(title)
    for question, items in sorted(by_question.items()):
        ok = sum(r.ok for r in items)
        print(f"  {question:<14} {ok:>4}/{len(items):<4} {100 * ok / len(items):6.1f} %")
    ok = sum(r.ok for r in results)
    wrong = [r for r in results if r.wrong]
    silent = [r for r in results if r.silently_wrong]
    print(f"  {'TOTAL':<14} {ok:>4}/{len(results):<4} {100 * ok / len(results):6.1f} %")
    print(f"  pris à tort mais redits (« Ce n'est pas ça » possible) : {len(wrong) - len(silent)}")
    print(f"  pris à tort SANS être redits (silencieux)              : {len(silent)}")
    for result in silent:
        print(f"    - [{result.at}] « {result.utterance.text} » -> {result.got}")
    return results


def turns_to_recommendation(engine: Engine) -> None:
    print("\nTours jusqu'à la recommandation (personnes qui racontent leur histoire par écrit)")
    typed: list[int] = []
    buttons: list[int] = []
    for path in STORIES:
        script = load_script(path)
        outcome = play(engine, script)
        final = outcome.final
        if final is None or final.recommendation is None:
            print(f"  {path.name}: pas de recommandation")
            continue
        typed.append(len(script.steps))
        # The same person by buttons answers one question per turn: every answer it holds.
        buttons.append(len(final.session.answers))
    if typed:
        print(
            f"  {len(typed)} personnes : {statistics.mean(typed):.1f} messages écrits en moyenne "
            f"(médiane {statistics.median(typed):.0f}), contre {statistics.mean(buttons):.1f} "
            f"questions par boutons"
        )


def latencies(engine: Engine, repeat: int) -> list[float]:
    """CPU seconds per message (``time.process_time``: the machine is shared, and wall-clock
    time would measure the neighbours): every corpus utterance at its question, ``repeat``
    times."""
    timings: list[float] = []
    for path in CORPUS:
        corpus = load_corpus(path)
        start = reach(engine, corpus)
        for _ in range(repeat):
            for utterance in corpus.utterances:
                began = time.process_time()
                engine.handle(start.session, Input.text(utterance.text))
                timings.append(time.process_time() - began)
    return timings


def cold(kb: KnowledgeBase) -> list[float]:
    """One pass on an engine built after emptying the module caches: as in a fresh process
    (building the engine stems the lexicons' words; a person's other words are new)."""
    from bot.engine import safety, understanding

    understanding._stem.cache_clear()
    safety._close.cache_clear()
    return latencies(Engine(kb), 1)


def bigger_base(target: Path, factor: int) -> None:
    """The shipped base with lexicons ``factor`` times larger: each condition and place copied
    with a made-up ending glued to its words (« diabetezq3 »), so nothing people type matches a
    copy, yet every index, and every misspelling list of the same first letter, holds them."""
    shutil.copytree(CONTENUS, target)
    lexique = target / "lexique"
    conditions: dict[str, Any] = yaml.safe_load((lexique / "conditions.yaml").read_text("utf-8"))
    places: dict[str, Any] = yaml.safe_load((lexique / "lieux.yaml").read_text("utf-8"))
    extra_conditions = []
    extra_places = []
    for k in range(1, factor):
        tag = f"zq{k}"
        for condition in conditions["conditions"]:
            copy = dict(condition, id=f"{condition['id']}_{tag}"[:48])
            copy["words"] = [f"{w}{tag}" for w in condition["words"]]
            extra_conditions.append(copy)
        for place in places["places"]:
            copy = dict(place, id=f"{place['id']}-{tag}"[:48])
            copy["words"] = [f"{w}{tag}" for w in place.get("words", [])]
            copy.pop("number", None)
            copy.pop("postal", None)
            if copy["kind"] == "departement":
                copy["kind"] = "commune"
            extra_places.append(copy)
    conditions["conditions"] += extra_conditions
    places["places"] += extra_places
    for name, data in (("conditions.yaml", conditions), ("lieux.yaml", places)):
        (lexique / name).write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factor", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    kb = load(CONTENUS)
    engine = Engine(kb)
    conditions = len(kb.conditions.conditions) if kb.conditions else 0
    places = len(kb.places.places) if kb.places else 0
    print(f"Base livrée : {conditions} maladies, {places} lieux\n")
    understanding(engine, CORPUS, "Compréhension du corpus (phrases comprises comme attendu)")
    print()
    understanding(
        engine, HOLDOUT, "Jeu tenu à part (held-out, écrit après le réglage des lexiques)"
    )
    turns_to_recommendation(engine)
    with tempfile.TemporaryDirectory() as tmp:
        big_dir = Path(tmp) / "contenus"
        bigger_base(big_dir, args.factor)
        began = time.perf_counter()
        big = Engine(load(big_dir))
        built = time.perf_counter() - began
        cold_small = cold(engine.kb)
        cold_large = cold(big.kb)
        small = latencies(engine, args.repeat)
        large = latencies(big, args.repeat)
    print(
        f"\nLatence par message, temps CPU ({len(small)} messages ; "
        f"base {args.factor}x construite en {built:.1f} s)"
    )
    for name, values in (("livrée", small), (f"{args.factor}x lexique", large)):
        print(
            f"  {name:<12} p50 {1000 * percentile(values, 0.5):6.3f} ms   "
            f"p99 {1000 * percentile(values, 0.99):6.3f} ms   "
            f"max {1000 * max(values):6.3f} ms"
        )
    for name, values in (("livrée", cold_small), (f"{args.factor}x lexique", cold_large)):
        print(
            f"  {name:<12} premier passage, caches vides : p99 "
            f"{1000 * percentile(values, 0.99):6.3f} ms   max {1000 * max(values):6.3f} ms"
        )
    ratio = percentile(large, 0.99) / percentile(small, 0.99)
    print(f"  rapport p99 {args.factor}x / livrée : {ratio:.2f} (linéaire : {args.factor})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
