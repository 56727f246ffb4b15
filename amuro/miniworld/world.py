"""A small seeded world of people, places, products and restaurants.

Every corpus document and every task example is rendered from these facts, so the tasks share entities with
the pre-training corpus: a model that has learned the corpus knows that Bavoli is a city in Kesura, which the
NLI, question-generation and summarisation examples then rely on.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"

JOBS = ["baker", "teacher", "farmer", "doctor", "painter", "pilot", "singer", "driver", "writer", "nurse",
        "tailor", "miner"]
HOBBIES = ["chess", "tennis", "music", "cooking", "fishing", "hiking", "dancing", "reading", "swimming",
           "gardening"]
CATEGORIES = ["phone", "lamp", "bike", "chair", "kettle", "watch", "radio", "camera", "table", "jacket"]
COLOURS = ["red", "blue", "green", "black", "white", "yellow", "grey", "brown"]
CUISINES = ["pasta", "noodle", "curry", "fish", "pizza", "soup", "bread", "rice"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


@dataclass(frozen=True)
class Person:
    name: str
    job: str
    city: str
    age: int
    hobby: str


@dataclass(frozen=True)
class Product:
    name: str
    category: str
    brand: str
    colour: str
    price: int
    good: bool  # hidden quality: decides whether reviews of it are mostly positive


@dataclass(frozen=True)
class Restaurant:
    name: str
    cuisine: str
    city: str
    good: bool


@dataclass
class World:
    countries: list[str]
    city_country: dict[str, str]
    brands: list[str]
    people: list[Person]
    products: list[Product]
    restaurants: list[Restaurant]

    @property
    def cities(self) -> list[str]:
        return list(self.city_country)

    def country_of(self, person: Person) -> str:
        return self.city_country[person.city]

    def to_json(self) -> dict:
        return {
            "countries": self.countries,
            "city_country": self.city_country,
            "brands": self.brands,
            "people": [asdict(p) for p in self.people],
            "products": [asdict(p) for p in self.products],
            "restaurants": [asdict(r) for r in self.restaurants],
        }


def _names(rng: random.Random, n: int, syllables: tuple[int, int], taken: set[str]) -> list[str]:
    """Unique pronounceable names of consonant-vowel syllables, never reusing one already taken."""
    out = []
    while len(out) < n:
        k = rng.randint(*syllables)
        name = "".join(rng.choice(CONSONANTS) + rng.choice(VOWELS) for _ in range(k)).capitalize()
        if name not in taken:
            taken.add(name)
            out.append(name)
    return out


def build_world(seed: int, countries: int, cities: int, people: int, brands: int, products: int,
                restaurants: int) -> World:
    rng = random.Random(seed)
    taken: set[str] = set()
    country_names = _names(rng, countries, (2, 3), taken)
    city_names = _names(rng, cities, (2, 3), taken)
    # Every country gets at least one city, the rest are spread at random.
    city_country = {c: country_names[i % countries] if i < countries else rng.choice(country_names)
                    for i, c in enumerate(city_names)}
    brand_names = _names(rng, brands, (2, 2), taken)
    person_names = _names(rng, people, (2, 3), taken)
    product_names = _names(rng, products, (2, 3), taken)
    restaurant_names = _names(rng, restaurants, (2, 3), taken)
    return World(
        countries=country_names,
        city_country=city_country,
        brands=brand_names,
        people=[Person(n, rng.choice(JOBS), rng.choice(city_names), rng.randint(20, 70), rng.choice(HOBBIES))
                for n in person_names],
        products=[Product(n, rng.choice(CATEGORIES), rng.choice(brand_names), rng.choice(COLOURS),
                          rng.randrange(10, 500, 5), rng.random() < 0.5) for n in product_names],
        restaurants=[Restaurant(n, rng.choice(CUISINES), rng.choice(city_names), rng.random() < 0.5)
                     for n in restaurant_names],
    )
