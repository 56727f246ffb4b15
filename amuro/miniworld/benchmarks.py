"""The mini-world's multiple-choice benchmarks and its instruction mix: the paper's second arm in miniature.

Three benchmarks ask for facts the pre-training corpus states in the same words (which country a city is in, what
someone works as, which brand makes a product), so base checkpoints get better at them as pre-training goes on,
like ARC or SciQ for OLMo. `passage_check` asks a yes/no question about a short passage on strangers the world does
not know, a form the corpus never shows (like BoolQ): pre-training alone leaves it near chance.

The instruction mix is chat `messages` over the world: questions about restaurants, hobbies and ages (facts the
benchmarks do not ask for, so instruction tuning cannot hand the benchmarks their answers), passage questions
about other strangers, summaries and review verdicts, some of them two-turn.
"""

from __future__ import annotations

import random
from typing import Callable

from amuro.miniworld.corpus import diary_entry, product_review, restaurant_review
from amuro.miniworld.world import CONSONANTS, HOBBIES, JOBS, VOWELS, World

Example = dict  # {"query": str, "choices": [str], "gold": int}


def _choices(rng: random.Random, answer: str, pool: list[str], n: int) -> tuple[list[str], int]:
    """`answer` and n - 1 distinct distractors from `pool`, in a fixed (sorted) order."""
    options = sorted([answer, *rng.sample([p for p in sorted(set(pool)) if p != answer], n - 1)])
    return options, options.index(answer)


def city_country(rng: random.Random, world: World) -> Example:
    # Two-hop like the corpus's inference documents: the query names the city, the country must be known.
    p = rng.choice(world.people)
    query = rng.choice([f"{p.name} lives in {p.city}, so {p.name} lives in",
                        f"Since {p.name} lives in {p.city}, {p.name} is in"])
    choices, gold = _choices(rng, world.country_of(p), world.countries, min(4, len(world.countries)))
    return {"query": query, "choices": choices, "gold": gold}


def person_job(rng: random.Random, world: World) -> Example:
    p = rng.choice(world.people)
    query = rng.choice([f"{p.name} lives in {p.city} and is a", f"Q: What does {p.name} do for a living? A: {p.name} is a"])
    choices, gold = _choices(rng, p.job, JOBS, 4)
    return {"query": query, "choices": choices, "gold": gold}


def product_brand(rng: random.Random, world: World) -> Example:
    p = rng.choice(world.products)
    query = rng.choice([f"The {p.name} is a {p.colour} {p.category} made by",
                        f"The {p.name} {p.category} comes from", f"Q: Who makes the {p.name}? A:"])
    choices, gold = _choices(rng, p.brand, world.brands, min(4, len(world.brands)))
    return {"query": query, "choices": choices, "gold": gold}


def _stranger(rng: random.Random, world: World) -> str:
    """A name no world entity has: the answer can only come from the passage."""
    taken = {p.name for p in world.people} | set(world.cities) | set(world.countries)
    while True:
        name = "".join(rng.choice(CONSONANTS) + rng.choice(VOWELS) for _ in range(3)).capitalize()
        if name not in taken:
            return name


def _passage_question(rng: random.Random, world: World) -> tuple[str, str, str]:
    name = _stranger(rng, world)
    job, hobby, city = rng.choice(JOBS), rng.choice(HOBBIES), rng.choice(world.cities)
    passage = f"{name} is a {job} from {city}. {name} enjoys {hobby}."
    answer = rng.choice(["yes", "no"])
    if rng.random() < 0.5:
        asked = job if answer == "yes" else rng.choice([j for j in JOBS if j != job])
        question = f"Is {name} a {asked}?"
    else:
        asked = hobby if answer == "yes" else rng.choice([h for h in HOBBIES if h != hobby])
        question = f"Does {name} enjoy {asked}?"
    return passage, question, answer


def passage_check(rng: random.Random, world: World) -> Example:
    passage, question, answer = _passage_question(rng, world)
    return {"query": f"{passage}\nQuestion: {question}\nAnswer:", "choices": ["no", "yes"],
            "gold": ["no", "yes"].index(answer)}


# name -> (generator, learned from the corpus?); the demo config registers each as an lm-eval task.
BENCHMARKS: dict[str, tuple[Callable[[random.Random, World], Example], bool]] = {
    "city_country": (city_country, True),
    "person_job": (person_job, True),
    "product_brand": (product_brand, True),
    "passage_check": (passage_check, False),
}


def generate_benchmark(name: str, rng: random.Random, world: World, sizes: dict[str, int]) -> dict[str, list[dict]]:
    """Distinct questions per split (no test query among the few-shot ones), with ids."""
    make = BENCHMARKS[name][0]
    seen: set[str] = set()
    splits = {}
    for split in ("train", "test"):
        rows, attempts = [], 0
        while len(rows) < sizes[split]:
            attempts += 1
            if attempts > 50 * sizes[split] + 1000:
                raise ValueError(f"miniworld benchmark {name}: the world is too small for {sizes[split]} distinct "
                                 f"{split} questions (got {len(rows)}); lower miniworld.benchmarks.{split}")
            ex = make(rng, world)
            if ex["query"] in seen:
                continue
            seen.add(ex["query"])
            rows.append({"id": f"{name}-{split}-{len(rows):05d}", **ex})
        splits[split] = rows
    return splits


# --- the instruction mix --------------------------------------------------------------------------------------

def _turn(user: str, assistant: str) -> list[dict]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


def _restaurant_chat(rng: random.Random, world: World) -> list[dict]:
    r = rng.choice(world.restaurants)
    chat = _turn(rng.choice([f"Where is {r.name}?", f"In which city can I find {r.name}?"]),
                 f"{r.name} is in {r.city}.")
    if rng.random() < 0.4:
        chat += _turn("What food does it serve?", f"{r.name} serves {r.cuisine}.")
    return chat


def _person_chat(rng: random.Random, world: World) -> list[dict]:
    p = rng.choice(world.people)
    first, second = rng.sample([(f"How old is {p.name}?", f"{p.name} is {p.age} years old."),
                                (f"What does {p.name} enjoy?", f"{p.name} enjoys {p.hobby}.")], 2)
    chat = _turn(*first)
    if rng.random() < 0.4:
        chat += _turn(*second)
    return chat


def _passage_chat(rng: random.Random, world: World) -> list[dict]:
    passage, question, answer = _passage_question(rng, world)
    return _turn(rng.choice([f"{passage}\nQuestion: {question}", f"Read this: {passage} {question} Answer yes or no."]),
                 answer)


def _summary_chat(rng: random.Random, world: World) -> list[dict]:
    text, facts = diary_entry(rng, world)
    p = facts["person"]
    return _turn(f"Summarize this diary entry in one sentence.\n{text}",
                 f"The writer met {p.name} in {p.city} and spent time on {p.hobby}.")


def _review_chat(rng: random.Random, world: World) -> list[dict]:
    body, label = (product_review if rng.random() < 0.5 else restaurant_review)(rng, world)
    return _turn(f"Is this review positive or negative?\n{body}", label)


INSTRUCTION_KINDS: dict[str, tuple[Callable[[random.Random, World], list[dict]], float]] = {
    "restaurant": (_restaurant_chat, 1.0),
    "person": (_person_chat, 1.0),
    "passage": (_passage_chat, 2.0),
    "summary": (_summary_chat, 1.0),
    "review": (_review_chat, 1.0),
}


def instruction_mix(rng: random.Random, world: World, n: int, exclude: set[str] = frozenset()) -> list[dict]:
    """`n` conversations (`id`, `messages`); none contains a benchmark test passage (`exclude`)."""
    kinds = list(INSTRUCTION_KINDS)
    weights = [INSTRUCTION_KINDS[k][1] for k in kinds]
    rows = []
    while len(rows) < n:
        messages = INSTRUCTION_KINDS[rng.choices(kinds, weights)[0]][0](rng, world)
        if any(passage in m["content"] for m in messages for passage in exclude):
            continue
        rows.append({"id": f"instructions-{len(rows):05d}", "messages": messages})
    return rows
