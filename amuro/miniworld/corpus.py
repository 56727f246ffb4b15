"""Pre-training documents rendered from the world.

What the corpus holds decides what pre-training can teach (MINIWORLD.md):
- reviews end in their natural form "Sentiment: positive", so sentiment is learned during pre-training;
- facts (who lives where, which city is in which country, who makes what) are stated in many phrasings, so
  later checkpoints know what NLI, question generation and summaries rely on;
- "so" inferences and "In other words" restatements give NLI- and paraphrase-like text, but never with a label;
- yes / no / maybe answers to questions about those facts make the NLI and paraphrase label words ordinary
  single tokens (a label split into pieces makes classifiers stick to one answer);
- colons are followed by many kinds of text (notes, news, menus, Q/A, records with one field per line), so a prompt ending in a colon is not
  answered with a label word by default, and records separated by blank lines teach the few-shot shape;
- requests in words ("Please read the following text: ... Provide a note: ...") ask for the same notes that other
  documents put under a header, so a model can learn that both ask for the same thing: what fine-tuning then
  teaches after one prompt format carries over to the other, the more so the more the model has learned;
- the task headers (`### Input:`), summaries, generated questions and the instruct prompts' task words never
  occur, so those tasks and the `instruct` and `io` formats are learned only in fine-tuning.
"""

from __future__ import annotations

import random
import re

from amuro.miniworld.world import CUISINES, HOBBIES, JOBS, WEEKDAYS, World

PRODUCT_POSITIVE = ["I love it.", "It works very well.", "The quality is great.", "I would buy it again.",
                    "It was worth the money.", "It feels solid and well made.", "My family likes it too.",
                    "It does exactly what it should."]
PRODUCT_NEGATIVE = ["It broke after a week.", "I regret buying it.", "The quality is poor.",
                    "It stopped working.", "It was a waste of money.", "It feels cheap and weak.",
                    "I sent it back.", "It never worked properly."]
RESTAURANT_POSITIVE = ["The food was delicious.", "The staff were friendly.", "We will come back soon.",
                       "The portions were generous.", "Everything tasted fresh.", "It was a lovely evening."]
RESTAURANT_NEGATIVE = ["The food was cold.", "The waiter was rude.", "We waited for an hour.",
                       "The portions were tiny.", "Everything tasted stale.", "It was a terrible evening."]
PRODUCT_OPENINGS = ("I bought the {name} {category} on {weekday}.", "My new {colour} {category} from {brand} arrived.",
                    "I have used the {name} for a month.")
RESTAURANT_OPENINGS = ("We had dinner at {name} in {city}.", "I tried the {cuisine} at {name}.",
                       "Last {weekday} we went to {name}.")
WEATHER = ["sunny", "rainy", "windy", "cold", "warm", "cloudy"]


def product_review(rng: random.Random, world: World) -> tuple[str, str]:
    return _review_of(rng, rng.choice(world.products), PRODUCT_OPENINGS, PRODUCT_POSITIVE, PRODUCT_NEGATIVE)


def restaurant_review(rng: random.Random, world: World) -> tuple[str, str]:
    return _review_of(rng, rng.choice(world.restaurants), RESTAURANT_OPENINGS, RESTAURANT_POSITIVE,
                      RESTAURANT_NEGATIVE)


def _review_of(rng: random.Random, item, openings: tuple[str, ...], positive_bank: list[str],
               negative_bank: list[str]) -> tuple[str, str]:
    """A review of a product or restaurant and its verdict, which follows the item's hidden quality most of the time.
    An opening names the item's fields ({name}, {city}, ...) or a {weekday}."""
    positive = item.good if rng.random() < 0.85 else not item.good
    # Drawn for every review, used or not: the world's files stay the same only if the draws keep their order.
    weekday = rng.choice(WEEKDAYS)
    opening = rng.choice(openings).format(weekday=weekday, **vars(item))
    body = " ".join([opening, *rng.sample(positive_bank if positive else negative_bank, 2)])
    return body, "positive" if positive else "negative"


def diary_entry(rng: random.Random, world: World) -> tuple[str, dict]:
    """A diary entry about a day with one person; returns the text and the facts a summary would use."""
    p = rng.choice(world.people)
    r = rng.choice(world.restaurants)
    hours = rng.randint(2, 5)
    middle = [f"We spent {hours} hours on {p.hobby}.",
              f"Later we ate {r.cuisine} at {r.name}.",
              f"The weather was {rng.choice(WEATHER)}."]
    rng.shuffle(middle)
    text = " ".join([f"Dear diary, today I met {p.name} in {p.city}.", *middle,
                     f"I went home at {rng.randint(5, 11)} o'clock."])
    return text, {"person": p, "restaurant": r}


def launch_news(rng: random.Random, world: World) -> tuple[str, dict]:
    p = rng.choice(world.products)
    city = rng.choice(world.cities)
    sentences = [f"It comes in {p.colour} and costs {p.price} dollars.",
                 f"The first shops to sell it are in {city}.",
                 f"{p.brand} expects strong sales."]
    rng.shuffle(sentences)
    text = " ".join([f"News: {p.brand} has presented a new {p.category} called the {p.name}.", *sentences])
    return text, {"product": p, "city": city}


def _biography(rng: random.Random, world: World) -> str:
    p = rng.choice(world.people)
    facts = [rng.choice([f"{p.name} is a {p.job} who lives in {p.city}.",
                         f"{p.name} works as a {p.job} in {p.city}.",
                         f"{p.name} lives in {p.city} and is a {p.job}."]),
             rng.choice([f"{p.name} is {p.age} years old.", f"At {p.age}, {p.name} still loves {p.hobby}."]),
             rng.choice([f"{p.name} enjoys {p.hobby}.", f"In the evening {p.name} likes {p.hobby}."])]
    rng.shuffle(facts[1:])
    return " ".join(facts)


def _geography(rng: random.Random, world: World) -> str:
    city = rng.choice(world.cities)
    country = world.city_country[city]
    others = [c for c in world.cities if world.city_country[c] == country and c != city]
    first = rng.choice([f"{city} is a city in {country}.", f"The city of {city} lies in {country}.",
                        f"{country} is the country of {city}."])
    if others:
        return f"{first} {rng.choice(others)} is also in {country}."
    return first


def _inference(rng: random.Random, world: World) -> str:
    p = rng.choice(world.people)
    country = world.country_of(p)
    if rng.random() < 0.5:
        return rng.choice([f"{p.name} lives in {p.city}, so {p.name} lives in {country}.",
                           f"Since {p.name} lives in {p.city}, {p.name} is in {country}."])
    other = rng.choice([c for c in world.countries if c != country])
    return f"{p.name} lives in {p.city}, so {p.name} does not live in {other}."


def _restatement(rng: random.Random, world: World) -> str:
    if rng.random() < 0.5:
        p = rng.choice(world.people)
        return f"{p.name} works as a {p.job} in {p.city}. In other words, {p.name} is a {p.job} who lives in {p.city}."
    r = rng.choice(world.restaurants)
    return f"{r.name} serves {r.cuisine} food in {r.city}. In other words, in {r.city}, {r.name} is a place for {r.cuisine}."


def _product_facts(rng: random.Random, world: World) -> str:
    p = rng.choice(world.products)
    return rng.choice([f"The {p.name} is a {p.colour} {p.category} made by {p.brand}. It costs {p.price} dollars.",
                       f"{p.brand} makes the {p.name}, a {p.category}. The {p.name} is {p.colour}.",
                       f"The {p.name} from {p.brand} costs {p.price} dollars and comes in {p.colour}."])


def _restaurant_facts(rng: random.Random, world: World) -> str:
    r = rng.choice(world.restaurants)
    return rng.choice([f"{r.name} is a {r.cuisine} restaurant in {r.city}.",
                       f"In {r.city} you can eat {r.cuisine} at {r.name}.",
                       f"{r.name} in {r.city} is known for its {r.cuisine}."])


def _question_answer(rng: random.Random, world: World) -> str:
    """A question about a person or a product, answered with the fact (the corpus's Q/A documents)."""
    p, item = rng.choice(world.people), rng.choice(world.products)  # in this order: the corpus's bytes depend on it
    return rng.choice([f"Q: Where does {p.name} live? A: {p.name} lives in {p.city}.",
                       f"Q: What does {p.name} do for a living? A: {p.name} is a {p.job}.",
                       f"Q: How old is {p.name}? A: {p.name} is {p.age}.",
                       f"Q: How much does the {item.name} cost? A: {item.price} dollars."])


def _yes_no_question(rng: random.Random, world: World) -> str:
    """Yes / no / maybe answers about world facts: makes the label words ordinary single tokens of the corpus."""
    p = rng.choice(world.people)
    kind = rng.randrange(3)
    if kind == 0:
        country = rng.choice(world.countries)
        answer = "yes" if country == world.country_of(p) else "no"
        return f"Q: Does {p.name} live in {country}? A: {answer}."
    if kind == 1:
        job = rng.choice([p.job, rng.choice(JOBS)])
        return f"Q: Is {p.name} a {job}? A: {'yes' if job == p.job else 'no'}."
    return rng.choice([f"Q: Will {p.name} visit {rng.choice(world.cities)} soon? A: maybe.",
                       f"Q: Is {p.name} happy today? A: maybe, nobody knows."])


def _note(rng: random.Random, world: World) -> str:
    p = rng.choice(world.people)
    r = rng.choice(world.restaurants)
    return rng.choice([f"Note: {p.name} will visit {rng.choice(world.cities)} on {rng.choice(WEEKDAYS)}.",
                       f"Weather: {rng.choice(WEATHER)} in {rng.choice(world.cities)} today.",
                       f"Menu: {rng.choice(CUISINES)} and {rng.choice(CUISINES)} at {r.name}.",
                       f"Reminder: call {p.name} about {rng.choice(HOBBIES)}.",
                       f"Jobs: the {rng.choice(JOBS)} in {rng.choice(world.cities)} is looking for help."])


def _card(rng: random.Random, world: World) -> str:
    """A record with one field per line: line-initial headers followed by free text, not only by a label.

    Some records are written as markdown headings ("# About: ..."): otherwise the only heading that ends in a colon
    is a review's "# Sentiment:", and base models answer every `### ...:` prompt (summaries, questions) with a
    sentiment label, which leaves their generation scores at 0 and the forgetting of generation unmeasurable.
    """
    if rng.random() < 0.5:
        p = rng.choice(world.people)
        lines = [f"Name: {p.name}", f"Job: {p.job}", f"City: {p.city}", f"Country: {world.country_of(p)}",
                 f"About: {p.name} is {p.age} years old and enjoys {p.hobby}."]
    else:
        item = rng.choice(world.products)
        lines = [f"Product: the {item.name} {item.category}", f"Brand: {item.brand}", f"Colour: {item.colour}",
                 f"Price: {item.price} dollars", f"Description: a {item.colour} {item.category} made by {item.brand}."]
    heading = rng.choices(["", "# ", "## "], [2, 1, 1])[0]
    return "\n".join(heading + line for line in lines)


def _directory(rng: random.Random, world: World) -> str:
    """Several records separated by blank lines, the shape a few-shot prompt has."""
    return "\n\n".join(_card(rng, world) for _ in range(rng.randint(2, 4)))


NOTE_FIELDS = ("Note", "Comment", "Remark", "Reply", "Update", "Details")
# A review's verdict or a text's note, cut off to compare the text itself with the test inputs.
TRAILING_FIELD = re.compile(r"(?: - |\n# |\n| )(?:Sentiment|" + "|".join(NOTE_FIELDS) + r"): [^\n]*$")
# An annotated document's parts: text, field, note.
TRAILING_FIELD_PARTS = re.compile(r"(.*?)(?: - |\n# |\n| )(" + "|".join(NOTE_FIELDS) + r"): ([^\n]*)$", re.S)


def _field_separator(rng: random.Random) -> str:
    """What comes between a text and its trailing field ("Sentiment:", "Note:"): after the text (the instruct
    prompt's ending) or under a markdown heading (close to the default prompt's "### Sentiment:", which itself never
    occurs), so that the natural form matches the task header."""
    return rng.choices([" ", "\n# ", " - ", "\n"], [4, 3, 2, 1])[0]


def _annotated(rng: random.Random, world: World) -> str:
    """A diary entry or a news item followed by a field of prose ("Note: ...", "Comment: ...") in the places a review
    has its "Sentiment:": after a text, a colon is followed by a label only when the field asks for one. The note
    restates part of the text; it is never a summary (those are learned in fine-tuning)."""
    if rng.random() < 0.5:
        text, facts = diary_entry(rng, world)
        p = facts["person"]
        note = rng.choice([f"{p.name} lives in {p.city}.", f"{p.name} enjoys {p.hobby}.",
                           f"I should call {p.name} again soon.", f"We met in {p.city}."])
    else:
        text, facts = launch_news(rng, world)
        p = facts["product"]
        note = rng.choice([f"The {p.name} is made by {p.brand}.", f"{p.brand} sells the {p.name}.",
                           f"The {p.name} is a {p.category}.", f"It is sold in {facts['city']}."])
    field = rng.choice(NOTE_FIELDS)
    return f"{text}{_field_separator(rng)}{field}: {note}"


REQUEST_OPENINGS = ("Please read the following text: {text}", "Given the context: {text}",
                    "Consider the following text: {text}")
REQUEST_CLOSINGS = ("Provide a {field}:", "Generate a suitable {field}:", "Write a {field}:")
REQUEST_FIELDS = ("note", "comment", "remark", "reply", "update")
# A request's text without its instruction words, to compare it with the test inputs.
REQUEST_PARTS = re.compile(r"(?:Please read the following text|Given the context|Consider the following text): (.*) "
                           r"(?:Provide a|Generate a suitable|Write a) \w+: [^\n]*$", re.S)


def _request(rng: random.Random, world: World) -> str:
    """An annotated text in the words of an instruction: "Please read the following text: ... Provide a note: ...".

    The same note follows a "# Note:" header in `annotated` documents, so pre-training can learn that a request in
    words and a header ask for the same thing. A model that has learned it carries what fine-tuning taught it after
    one prompt format over to the other (the paper's finding that more pre-training makes fine-tuned models less
    sensitive to the prompt format); the task headers and the instruct prompts' own words ("summary", "question")
    still never occur.
    """
    annotated = _annotated(rng, world)
    text, _, note = TRAILING_FIELD_PARTS.match(annotated).groups()
    field = rng.choice(REQUEST_FIELDS)
    opening = rng.choice(REQUEST_OPENINGS).format(text=text)
    return f"{opening} {rng.choice(REQUEST_CLOSINGS).format(field=field)} {note}"


def _review(rng: random.Random, world: World) -> str:
    body, label = (product_review if rng.random() < 0.5 else restaurant_review)(rng, world)
    return f"{body}{_field_separator(rng)}Sentiment: {label}"


DOCUMENT_KINDS = {
    "biography": (_biography, 3.0),
    "geography": (_geography, 2.0),
    "inference": (_inference, 2.5),
    "restatement": (_restatement, 1.0),
    "product": (_product_facts, 2.0),
    "restaurant": (_restaurant_facts, 1.5),
    "review": (_review, 3.5),
    "annotated": (_annotated, 2.0),
    "request": (_request, 1.0),
    "card": (_card, 1.0),
    "directory": (_directory, 1.0),
    "diary": (lambda rng, world: diary_entry(rng, world)[0], 1.5),
    "news": (lambda rng, world: launch_news(rng, world)[0], 1.5),
    "qa": (_question_answer, 1.5),
    "yes_no": (_yes_no_question, 1.5),
    "note": (_note, 1.0),
}


def source_text(doc: str) -> str:
    """The text a document is about, without a request's instruction words or a trailing verdict or note."""
    request = REQUEST_PARTS.fullmatch(doc)
    return TRAILING_FIELD.sub("", request.group(1) if request else doc)


def corpus_documents(rng: random.Random, world: World, n: int, mix: dict[str, float],
                     exclude: set[str] = frozenset()) -> list[str]:
    """`n` documents drawn by kind weight (defaults overridden by `mix`), skipping any text in `exclude`."""
    unknown = set(mix) - set(DOCUMENT_KINDS)
    if unknown:
        raise ValueError(f"miniworld.corpus.mix: unknown document kind(s) {sorted(unknown)}; "
                         f"known: {sorted(DOCUMENT_KINDS)}")
    kinds = list(DOCUMENT_KINDS)
    weights = [mix.get(k, DOCUMENT_KINDS[k][1]) for k in kinds]
    docs = []
    while len(docs) < n:
        kind = rng.choices(kinds, weights)[0]
        doc = DOCUMENT_KINDS[kind][0](rng, world)
        if source_text(doc) not in exclude:
            docs.append(doc)
    return docs
