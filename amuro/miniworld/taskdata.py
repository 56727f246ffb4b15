"""The mini-world's task datasets: two per task type, one about people and places, one about products and
restaurants, so that every fine-tuned model has an in-domain, a cross-domain and several cross-task eval sets.

Targets need knowledge, not only copying: a diary summary names the friend's job and country, which the
diary does not state but the corpus does; NLI hypotheses ask about countries and makers.
"""

from __future__ import annotations

import random
from typing import Callable

from amuro.miniworld.corpus import diary_entry, launch_news, product_review, restaurant_review
from amuro.miniworld.world import COLOURS, CUISINES, JOBS, WEEKDAYS, World


def diary_summary(rng: random.Random, world: World) -> dict:
    text, facts = diary_entry(rng, world)
    p = facts["person"]
    return {"document": text,
            "target": f"The writer enjoyed {p.hobby} with {p.name}, a {p.job}, in {world.country_of(p)}."}


def launch_summary(rng: random.Random, world: World) -> dict:
    text, facts = launch_news(rng, world)
    p = facts["product"]
    return {"document": text, "target": f"{p.brand} launched the {p.colour} {p.name} {p.category} for {p.price} dollars."}


def people_qg(rng: random.Random, world: World) -> dict:
    p, other = rng.sample(world.people, 2)
    facts = [f"{p.name} is a {p.job} who lives in {p.city}.", f"{p.name} is {p.age} years old.",
             f"{p.name} enjoys {p.hobby}.", f"{other.name} is a {other.job}."]
    rng.shuffle(facts)
    answer, question = rng.choice([(p.city, f"Where does {p.name} live?"),
                                   (p.job, f"What does {p.name} do for a living?"),
                                   (str(p.age), f"How old is {p.name}?"),
                                   (p.hobby, f"What does {p.name} enjoy?")])
    return {"context": " ".join(facts), "answer": answer, "target": question}


def place_qg(rng: random.Random, world: World) -> dict:
    r, other = rng.sample(world.restaurants, 2)
    country = world.city_country[r.city]
    facts = [f"{r.name} is a {r.cuisine} restaurant in {r.city}.", f"{r.city} is a city in {country}.",
             f"{other.name} serves {other.cuisine}."]
    rng.shuffle(facts)
    answer, question = rng.choice([(r.city, f"In which city is {r.name}?"),
                                   (r.cuisine, f"What food does {r.name} serve?"),
                                   (country, f"Which country is {r.city} in?")])
    return {"context": " ".join(facts), "answer": answer, "target": question}


def people_nli(rng: random.Random, world: World) -> dict:
    p = rng.choice(world.people)
    premise = rng.choice([f"{p.name} lives in {p.city} and works as a {p.job}.",
                          f"{p.name}, a {p.job}, has a home in {p.city}.",
                          f"In {p.city} lives {p.name}, who is a {p.job}."])
    label = rng.choice(["yes", "maybe", "no"])
    if label == "yes":
        hypothesis = rng.choice([f"{p.name} lives in {world.country_of(p)}.", f"{p.name} is a {p.job}."])
    elif label == "no":
        other_country = rng.choice([c for c in world.countries if c != world.country_of(p)])
        other_job = rng.choice([j for j in JOBS if j != p.job])
        hypothesis = rng.choice([f"{p.name} lives in {other_country}.", f"{p.name} is a {other_job}."])
    else:
        hypothesis = rng.choice([f"{p.name} enjoys {p.hobby}.", f"{p.name} is {p.age} years old."])
    return {"premise": premise, "hypothesis": hypothesis, "target": label}


def product_nli(rng: random.Random, world: World) -> dict:
    p = rng.choice(world.products)
    premise = rng.choice([f"The {p.name} is a {p.colour} {p.category} made by {p.brand}.",
                          f"{p.brand} makes the {p.name}, a {p.colour} {p.category}."])
    label = rng.choice(["yes", "maybe", "no"])
    if label == "yes":
        hypothesis = rng.choice([f"The {p.name} is {p.colour}.", f"{p.brand} makes the {p.name}."])
    elif label == "no":
        other_colour = rng.choice([c for c in COLOURS if c != p.colour])
        other_brand = rng.choice([b for b in world.brands if b != p.brand])
        hypothesis = rng.choice([f"The {p.name} is {other_colour}.", f"{other_brand} makes the {p.name}."])
    else:
        hypothesis = rng.choice([f"The {p.name} costs {p.price} dollars.",
                                 f"The {p.name} is sold in {rng.choice(world.cities)}.",
                                 f"Many people like the {p.name}."])
    return {"premise": premise, "hypothesis": hypothesis, "target": label}


def _paraphrase_pair(rng: random.Random, entity, phrasings: tuple[list[str], list[str]],
                     swaps: dict[str, list[str]], unrelated: list[str]) -> dict:
    """A paraphrase (label yes) or not (label no), in random phrasings. A non-paraphrase either restates the first
    sentence with one slot swapped (telling it apart takes reading both names, jobs and places, or knowing the
    facts) or says something else about the same entity (`unrelated`: telling it apart takes reading the words).
    The slots are the entity's attributes that `swaps` names, with the values a swap draws from."""
    first, second = phrasings
    slots = {slot: getattr(entity, slot) for slot in swaps}
    label = "yes" if rng.random() < 0.5 else "no"
    sentence2 = rng.choice(second).format(**slots)
    if label == "no" and rng.random() < 0.5:
        sentence2 = rng.choice(unrelated)
    elif label == "no":
        slot = rng.choice(list(swaps))
        changed = {**slots, slot: rng.choice([v for v in swaps[slot] if v != slots[slot]])}
        sentence2 = rng.choice(second).format(**changed)
    return {"sentence1": rng.choice(first).format(**slots), "sentence2": sentence2, "target": label}


# Each entity's first and second sentences: any first and any second say the same thing.
PERSON_PHRASINGS = (["{name} works as a {job} in {city}.", "{name} is employed as a {job} in {city}.",
                     "In {city}, {name} works as a {job}."],
                    ["{name} is a {job} who lives in {city}.", "{name} lives in {city} and is a {job}.",
                     "The {job} {name} has a home in {city}."])
RESTAURANT_PHRASINGS = (["{name} serves {cuisine} food in {city}.", "{name} cooks {cuisine} in {city}.",
                         "In {city}, {name} offers {cuisine}."],
                        ["In {city}, {name} is a place for {cuisine}.", "{name} is a {cuisine} restaurant in {city}.",
                         "You can eat {cuisine} at {name} in {city}."])


def people_paraphrase(rng: random.Random, world: World) -> dict:
    p = rng.choice(world.people)
    swaps = {"name": [q.name for q in world.people], "job": JOBS, "city": world.cities}
    unrelated = [f"{p.name} enjoys {p.hobby}.", f"{p.name} is {p.age} years old.", f"{p.name} likes {p.hobby} a lot."]
    return _paraphrase_pair(rng, p, PERSON_PHRASINGS, swaps, unrelated)


def restaurant_paraphrase(rng: random.Random, world: World) -> dict:
    r = rng.choice(world.restaurants)
    verdict = "Guests love" if r.good else "Guests complain about"
    swaps = {"name": [q.name for q in world.restaurants], "cuisine": CUISINES, "city": world.cities}
    unrelated = [f"{verdict} {r.name}.", f"{r.name} opened many years ago.",
                 f"{r.name} is busy on {rng.choice(WEEKDAYS)}."]
    return _paraphrase_pair(rng, r, RESTAURANT_PHRASINGS, swaps, unrelated)


def product_sentiment(rng: random.Random, world: World) -> dict:
    text, label = product_review(rng, world)
    return {"text": text, "target": label}


def restaurant_sentiment(rng: random.Random, world: World) -> dict:
    text, label = restaurant_review(rng, world)
    return {"text": text, "target": label}


# name -> (task, generator, label words); the dataset entries in the demo config point at these names.
DATASETS: dict[str, tuple[str, Callable[[random.Random, World], dict], tuple[str, ...] | None]] = {
    "diary_summary": ("summarization", diary_summary, None),
    "launch_summary": ("summarization", launch_summary, None),
    "people_qg": ("question_generation", people_qg, None),
    "place_qg": ("question_generation", place_qg, None),
    "people_nli": ("nli", people_nli, ("yes", "maybe", "no")),
    "product_nli": ("nli", product_nli, ("yes", "maybe", "no")),
    "people_paraphrase": ("paraphrase", people_paraphrase, ("yes", "no")),
    "restaurant_paraphrase": ("paraphrase", restaurant_paraphrase, ("yes", "no")),
    "product_sentiment": ("sentiment", product_sentiment, ("positive", "negative")),
    "restaurant_sentiment": ("sentiment", restaurant_sentiment, ("positive", "negative")),
}


def generate_splits(name: str, rng: random.Random, world: World, sizes: dict[str, int]) -> dict[str, list[dict]]:
    """Examples per split, unique within and across splits, so no test input was seen in training."""
    make = DATASETS[name][1]
    seen: set[tuple] = set()
    splits = {}
    for split, n in sizes.items():
        rows, attempts = [], 0
        while len(rows) < n:
            attempts += 1
            if attempts > 50 * n + 1000:
                raise ValueError(f"miniworld dataset {name}: the world is too small for {n} distinct {split} "
                                 f"examples (got {len(rows)}); raise miniworld.world sizes or lower miniworld.tasks")
            ex = make(rng, world)
            key = tuple(v for k, v in ex.items() if k != "target")
            if key in seen:
                continue
            seen.add(key)
            rows.append({"id": f"{name}-{split}-{len(rows):05d}", **ex})
        splits[split] = rows
    return splits
