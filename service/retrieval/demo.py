"""The embedded demo catalog: a deterministic synthetic shop, generated without any download.

16 categories of products with brand, gender, colour, material, size and feature attributes
written into titles and descriptions, and under-specified shopping requests ("something sturdy
for mountain trails, for my wife, that keeps water out") each aiming at a target attribute
combination. Graded labels: exact (1.0: the category and every target attribute), substitute
(0.1: same category, some target attributes), complement (0.01: a related category sharing a
target attribute); everything else is irrelevant and not stored.

A search query naming the target's distinguishing attributes ("women's black leather hiking
boots waterproof", see `specific_query`) retrieves the exact products; vague filler does not.
That gap is what OSPO's coalition rewards measure. All randomness comes from one seeded
`random.Random`, so the same seed gives the same catalog (and fingerprint) everywhere.

One cohesive module past the usual size: most of its lines are the category and attribute
tables the generator draws from, and splitting them from the generator would scatter one
definition of the demo shop over several files.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from service.retrieval.catalog import Catalog, Product

DEMO_CATALOG_NAME = "demo"
EXACT_GAIN = 1.0
SUBSTITUTE_GAIN = 0.1
COMPLEMENT_GAIN = 0.01

_APPAREL_SIZES = ("XS", "S", "M", "L", "XL", "XXL")
_SHOE_SIZES = tuple(f"US {n}" for n in range(5, 14))


@dataclass(frozen=True)
class CategorySpec:
    key: str
    noun: str
    gendered: bool
    brands: tuple[str, ...]
    materials: tuple[str, ...]
    features: tuple[str, ...]
    colours: tuple[str, ...]
    sizes: tuple[str, ...]
    uses: tuple[str, ...]
    """Vague ways a shopper asks for the category without naming it."""
    blurbs: tuple[str, ...]
    related: tuple[str, ...]
    """Keys of complementary categories."""


CATEGORIES: tuple[CategorySpec, ...] = (
    CategorySpec(
        "hiking-boots",
        "hiking boots",
        True,
        ("Ridgeline", "Summitcraft", "Trailforge", "Alpenwood", "Cairnstep"),
        ("leather", "suede", "nubuck", "synthetic mesh"),
        ("waterproof", "insulated", "lightweight", "ankle support", "wide fit"),
        ("black", "brown", "grey", "olive", "tan", "navy"),
        _SHOE_SIZES,
        (
            "something sturdy for mountain trails",
            "footwear for long hikes",
            "shoes for rocky paths in the hills",
        ),
        (
            "Built for rugged trails and long days in the backcountry.",
            "A grippy outsole keeps you steady on loose rock.",
        ),
        ("backpacks", "tents", "rain-jackets"),
    ),
    CategorySpec(
        "running-shoes",
        "running shoes",
        True,
        ("Stridewell", "Pacegrid", "Fleetfoot", "Runora", "Tempo Lab"),
        ("engineered mesh", "knit", "synthetic"),
        ("cushioned", "lightweight", "trail grip", "stability", "breathable"),
        ("black", "white", "blue", "red", "grey", "pink"),
        _SHOE_SIZES,
        (
            "shoes for my morning jogs",
            "something to train for a marathon in",
            "sneakers for the treadmill",
        ),
        ("Responsive foam returns energy with every stride.", "Made for daily miles on the road."),
        ("t-shirts", "water-bottles", "headphones"),
    ),
    CategorySpec(
        "rain-jackets",
        "rain jacket",
        True,
        ("Stormline", "Driftpeak", "Nimbus Outfitters", "Puddlejump"),
        ("nylon", "polyester", "recycled ripstop"),
        ("waterproof", "packable", "hooded", "breathable", "insulated"),
        ("yellow", "navy", "black", "red", "green", "orange"),
        _APPAREL_SIZES,
        (
            "a jacket for rainy days",
            "something to wear in a downpour",
            "an outer layer for wet weather",
        ),
        ("Sealed seams keep the weather out.", "An easy layer for commutes and wet walks."),
        ("hiking-boots", "backpacks", "sweaters"),
    ),
    CategorySpec(
        "backpacks",
        "backpack",
        False,
        ("Packwell", "Roamcraft", "Ferrybag", "Northloop"),
        ("nylon", "canvas", "polyester", "leather"),
        ("laptop sleeve", "waterproof", "hydration compatible", "anti-theft", "lightweight"),
        ("black", "grey", "navy", "olive", "red", "tan"),
        ("20 L", "30 L", "45 L", "65 L"),
        (
            "a bag to carry my things on trips",
            "something to carry on my back every day",
            "a daypack for weekends away",
        ),
        ("Padded straps spread the load.", "Plenty of pockets keep your gear organised."),
        ("water-bottles", "hiking-boots", "tents"),
    ),
    CategorySpec(
        "headphones",
        "headphones",
        False,
        ("Sonique", "Bassline Audio", "Quietwave", "Aurafield"),
        ("aluminium", "plastic", "leatherette", "fabric"),
        ("noise-cancelling", "wireless", "sweat-resistant", "foldable", "long battery life"),
        ("black", "white", "silver", "blue", "pink"),
        ("in-ear", "on-ear", "over-ear"),
        (
            "something to listen to music on",
            "audio gear for my commute",
            "something for podcasts on the go",
        ),
        ("Rich sound with deep bass.", "Comfortable enough to wear all day."),
        ("running-shoes", "office-chairs", "desk-lamps"),
    ),
    CategorySpec(
        "coffee-makers",
        "coffee maker",
        False,
        ("Brewmaster", "Morning Ritual", "Kettlebrook", "Crema Co"),
        ("stainless steel", "glass", "plastic", "copper"),
        ("programmable", "thermal carafe", "built-in grinder", "single-serve", "espresso"),
        ("black", "silver", "white", "red", "cream"),
        ("4-cup", "8-cup", "12-cup"),
        (
            "something to make my morning coffee",
            "a machine for brewing at home",
            "a kitchen gadget for my caffeine fix",
        ),
        ("Brews a full pot in minutes.", "Easy to clean and simple to use."),
        ("kitchen-knives", "water-bottles"),
    ),
    CategorySpec(
        "office-chairs",
        "office chair",
        False,
        ("Ergoflex", "Deskmate", "Postura", "Worknest"),
        ("mesh", "leather", "fabric", "vinyl"),
        ("lumbar support", "adjustable armrests", "reclining", "headrest", "memory foam seat"),
        ("black", "grey", "white", "blue", "brown"),
        ("compact", "standard", "big and tall"),
        (
            "something to sit on while I work from home",
            "seating for long days at my desk",
            "a seat for the home office",
        ),
        ("Ergonomic design for all-day comfort.", "Smooth casters and a sturdy five-star base."),
        ("desk-lamps", "headphones"),
    ),
    CategorySpec(
        "yoga-mats",
        "yoga mat",
        False,
        ("Lotus Ground", "Zenfold", "Flowform", "Asana Labs"),
        ("cork", "natural rubber", "TPE", "PVC"),
        ("non-slip", "extra thick", "eco-friendly", "foldable", "alignment lines"),
        ("purple", "blue", "green", "black", "pink", "grey"),
        ("4 mm", "6 mm", "8 mm"),
        (
            "something for my yoga practice",
            "something to cushion home workouts",
            "gear for pilates and stretching",
        ),
        ("Cushions knees and wrists through every pose.", "Rolls up small for the studio."),
        ("water-bottles", "t-shirts"),
    ),
    CategorySpec(
        "water-bottles",
        "water bottle",
        False,
        ("Hydrocraft", "Sipwell", "Aquapeak", "Canteen & Co"),
        ("stainless steel", "glass", "BPA-free plastic", "titanium"),
        ("insulated", "leak-proof", "straw lid", "collapsible", "dishwasher-safe"),
        ("black", "white", "blue", "green", "pink", "orange"),
        ("500 ml", "750 ml", "1 litre"),
        (
            "something to stay hydrated at the gym",
            "something to carry water in",
            "something to drink from on the go",
        ),
        ("Fits most cup holders.", "A wide mouth makes it easy to fill and clean."),
        ("backpacks", "yoga-mats", "running-shoes"),
    ),
    CategorySpec(
        "tents",
        "tent",
        False,
        ("Campfield", "Skyhollow", "Basecamp Works", "Pinecrest"),
        ("nylon", "polyester", "canvas"),
        ("waterproof", "ultralight", "freestanding", "four-season", "quick setup"),
        ("green", "orange", "grey", "blue", "tan"),
        ("1-person", "2-person", "4-person", "6-person"),
        (
            "somewhere to sleep on a camping trip",
            "shelter for backpacking",
            "a place to spend the night outdoors",
        ),
        (
            "Pitches in minutes with colour-coded poles.",
            "A roomy vestibule stores boots and packs.",
        ),
        ("sleeping-bags", "backpacks", "hiking-boots"),
    ),
    CategorySpec(
        "desk-lamps",
        "desk lamp",
        False,
        ("Lumina", "Brightnook", "Glowcraft", "Lampwright"),
        ("aluminium", "wood", "brass", "plastic"),
        ("dimmable", "USB charging port", "adjustable arm", "warm light", "clamp mount"),
        ("black", "white", "silver", "gold", "green"),
        ("small", "medium", "tall"),
        (
            "light for my workspace",
            "something to light my desk for reading",
            "something for late-night studying",
        ),
        ("Even, flicker-free light reduces eye strain.", "A weighted base keeps it steady."),
        ("office-chairs", "headphones"),
    ),
    CategorySpec(
        "kitchen-knives",
        "kitchen knife",
        False,
        ("Edgecraft", "Sakura Blade", "Hollowforge", "Chopwell"),
        ("carbon steel", "stainless steel", "Damascus steel", "ceramic"),
        ("chef's knife", "santoku", "serrated", "full tang", "dishwasher-safe"),
        ("black", "brown", "white", "red", "blue"),
        ("6-inch", "8-inch", "10-inch"),
        (
            "something for chopping vegetables",
            "a good blade for cooking",
            "something to slice and dice with",
        ),
        ("Holds a razor-sharp edge.", "A balanced handle for precise cuts."),
        ("coffee-makers",),
    ),
    CategorySpec(
        "t-shirts",
        "t-shirt",
        True,
        ("Basicthread", "Loomhouse", "Cottonfield", "Everwear"),
        ("organic cotton", "merino wool", "polyester", "linen"),
        ("moisture-wicking", "v-neck", "crew neck", "slim fit", "UV protection"),
        ("white", "black", "grey", "navy", "red", "green"),
        _APPAREL_SIZES,
        ("a top for everyday wear", "something casual for summer", "a basic shirt to layer"),
        ("Soft against the skin and easy to care for.", "A relaxed everyday staple."),
        ("running-shoes", "sweaters", "yoga-mats"),
    ),
    CategorySpec(
        "sleeping-bags",
        "sleeping bag",
        False,
        ("Duskdown", "Snugpeak", "Nightcamp", "Ember Trail"),
        ("down", "synthetic fill", "flannel", "fleece"),
        ("mummy shape", "zero-degree rated", "compressible", "water-resistant", "double-wide"),
        ("green", "blue", "red", "black", "orange"),
        ("regular", "long", "kids"),
        (
            "something warm to sleep in while camping",
            "bedding for a cold night outdoors",
            "something to sleep in on the trail",
        ),
        ("Traps heat on cold nights.", "Packs into its own stuff sack."),
        ("tents", "backpacks"),
    ),
    CategorySpec(
        "sunglasses",
        "sunglasses",
        True,
        ("Solace Optics", "Glarefree", "Shadeline", "Brightside"),
        ("acetate", "metal", "polycarbonate", "titanium"),
        ("polarized", "UV400 protection", "mirrored lenses", "lightweight", "blue-light filtering"),
        ("black", "tortoise", "gold", "silver", "blue"),
        ("narrow fit", "medium fit", "wide fit"),
        (
            "something to protect my eyes on sunny days",
            "eyewear for the beach",
            "shades for driving",
        ),
        ("Cuts glare on bright days.", "Spring hinges for a secure fit."),
        ("t-shirts", "running-shoes"),
    ),
    CategorySpec(
        "sweaters",
        "sweater",
        True,
        ("Woolhaven", "Knitwell", "Fireside", "Highland Loom"),
        ("merino wool", "cashmere", "cotton", "alpaca"),
        ("crew neck", "turtleneck", "cardigan", "cable knit", "quarter-zip"),
        ("cream", "grey", "navy", "burgundy", "green", "black"),
        _APPAREL_SIZES,
        (
            "something cozy for cold evenings",
            "a warm layer for winter",
            "a knit top for the office",
        ),
        ("A soft knit that keeps its shape.", "Warm without the bulk."),
        ("t-shirts", "rain-jackets"),
    ),
)

_CATEGORY_BY_KEY = {spec.key: spec for spec in CATEGORIES}

_GENDER_HINTS = {
    "women's": ("women's", "for women", "for my wife", "for my mom", "for my sister"),
    "men's": ("men's", "for men", "for my husband", "for my dad", "for my brother"),
}
_FEATURE_HINTS = {
    "waterproof": ("waterproof", "that keeps the water out", "that can handle heavy rain"),
    "insulated": ("insulated", "that stays warm in the cold", "something that keeps the heat in"),
    "lightweight": ("lightweight", "nothing heavy", "light to carry around"),
    "breathable": ("breathable", "that doesn't get sweaty"),
    "noise-cancelling": ("noise-cancelling", "that blocks out the noise on the train"),
    "wireless": ("wireless", "no cables please"),
    "programmable": ("programmable", "that I can set the night before"),
    "lumbar support": ("with lumbar support", "good for my lower back"),
    "non-slip": ("non-slip", "that doesn't slide around"),
    "extra thick": ("extra thick", "with lots of cushioning"),
    "leak-proof": ("leak-proof", "that won't leak in my bag"),
    "ultralight": ("ultralight", "as light as possible"),
    "dimmable": ("dimmable", "with adjustable brightness"),
    "polarized": ("polarized", "that cuts glare off the water"),
    "moisture-wicking": ("moisture-wicking", "that handles sweat well"),
    "packable": ("packable", "that folds into a pocket"),
    "cushioned": ("cushioned", "soft on my knees"),
    "laptop sleeve": ("with a laptop sleeve", "with room for my laptop"),
    "built-in grinder": ("with a built-in grinder", "that grinds the beans too"),
    "thermal carafe": ("with a thermal carafe", "that keeps the pot hot"),
    "single-serve": ("single-serve", "one cup at a time"),
    "espresso": ("that makes espresso", "espresso"),
    "straw lid": ("with a straw lid",),
    "USB charging port": ("with a USB charging port", "that can charge my phone"),
    "adjustable armrests": ("with adjustable armrests",),
    "headrest": ("with a headrest", "that supports my neck"),
    "memory foam seat": ("with a memory foam seat",),
    "hooded": ("hooded", "with a hood"),
    "quick setup": ("quick setup", "easy to pitch"),
    "clamp mount": ("with a clamp mount", "that clamps to the desk edge"),
    "ankle support": ("with ankle support", "that supports my ankles"),
    "wide fit": ("wide fit", "for wide feet"),
    "four-season": ("four-season", "that can handle snow"),
    "zero-degree rated": ("zero-degree rated", "warm enough for freezing nights"),
    "double-wide": ("double-wide", "big enough for two"),
    "UV protection": ("with UV protection", "that protects from the sun"),
    "long battery life": ("with long battery life", "with a battery that lasts all week"),
    "alignment lines": ("with alignment lines",),
    "trail grip": ("with trail grip", "grippy on dirt trails"),
}
_MATERIAL_FORMS = ("made of {}", "{}", "in {}", "ideally {}")
_COLOUR_FORMS = ("in {}", "{}", "preferably {}", "{} if possible")
_TEMPLATES = (
    "{use}, {hints}",
    "looking for {use}: {hints}",
    "I need {use} - {hints}",
    "any recommendations for {use}? {hints}",
    "{use}. {hints}, nothing fancy",
    "hoping to find {use}, {hints}",
)


def specific_query(attributes: Mapping[str, str]) -> str:
    """A search query naming every distinguishing attribute of a target combination, e.g.
    "women's black leather hiking boots waterproof"."""
    spec = _CATEGORY_BY_KEY[attributes["category"]]
    words = [
        attributes.get("gender", ""),
        attributes.get("colour", ""),
        attributes.get("material", ""),
        spec.noun,
    ]
    words.append(attributes.get("feature", ""))
    return " ".join(word for word in words if word)


def product_matches(
    product_attrs: Mapping[str, object], target: Mapping[str, str]
) -> tuple[int, int]:
    """(matched, total) target attributes other than the category; features match by membership."""
    matched = total = 0
    for key, value in target.items():
        if key == "category":
            continue
        total += 1
        if key == "feature":
            features = product_attrs.get("features")
            matched += isinstance(features, tuple) and value in features
        else:
            matched += product_attrs.get(key) == value
    return matched, total


@dataclass(frozen=True)
class _DemoProduct:
    category: str
    brand: str
    gender: str
    colour: str
    material: str
    size: str
    features: tuple[str, ...]

    def attrs(self) -> dict[str, object]:
        return {
            "category": self.category,
            "gender": self.gender,
            "colour": self.colour,
            "material": self.material,
            "features": self.features,
        }


def _title_case(text: str) -> str:
    return " ".join(
        word if word[:1].isupper() else word[:1].upper() + word[1:] for word in text.split()
    )


def _render(product: _DemoProduct, rng: random.Random) -> tuple[str, str]:
    spec = _CATEGORY_BY_KEY[product.category]
    gender = f"{product.gender} " if product.gender else ""
    title = _title_case(
        f"{product.brand} {gender}{product.material} {spec.noun} - {product.features[0]}, {product.colour}"
    )
    audience = {"women's": " for women", "men's": " for men", "unisex": " for everyone"}.get(
        product.gender, ""
    )
    text = (
        f"{product.features[0].capitalize()} {spec.noun}{audience}, made of {product.material} "
        f"in {product.colour}. Size: {product.size}. Features: {', '.join(product.features)}. "
        f"{rng.choice(spec.blurbs)}"
    )
    return title, text


def _random_product(
    spec: CategorySpec, rng: random.Random, fixed: Mapping[str, str]
) -> _DemoProduct:
    gender = fixed.get("gender") or (
        rng.choice(("women's", "men's", "unisex")) if spec.gendered else ""
    )
    features = rng.sample(spec.features, rng.randint(1, 3))
    wanted = fixed.get("feature")
    if wanted:
        # Planted exact matches name the wanted feature in the title two times in three.
        others = [feature for feature in features if feature != wanted][:2]
        features = [wanted, *others] if rng.random() < 0.67 or not others else [*others, wanted]
    return _DemoProduct(
        category=spec.key,
        brand=rng.choice(spec.brands),
        gender=gender,
        colour=fixed.get("colour") or rng.choice(spec.colours),
        material=fixed.get("material") or rng.choice(spec.materials),
        size=rng.choice(spec.sizes),
        features=tuple(features),
    )


def _random_target(spec: CategorySpec, rng: random.Random) -> dict[str, str]:
    target = {"category": spec.key, "feature": rng.choice(spec.features)}
    if spec.gendered:
        target["gender"] = rng.choice(("women's", "men's"))
        optional = rng.choice(("material", "colour"))
        target[optional] = rng.choice(spec.materials if optional == "material" else spec.colours)
    else:
        target["material"] = rng.choice(spec.materials)
        target["colour"] = rng.choice(spec.colours)
    return target


def _hint(key: str, value: str, rng: random.Random) -> str:
    if key == "gender":
        return rng.choice(_GENDER_HINTS[value])
    if key == "feature":
        return rng.choice(_FEATURE_HINTS.get(value, (value,)))
    forms = _MATERIAL_FORMS if key == "material" else _COLOUR_FORMS
    return rng.choice(forms).format(value)


def _request_text(target: Mapping[str, str], rng: random.Random) -> str:
    spec = _CATEGORY_BY_KEY[target["category"]]
    hints = [_hint(key, value, rng) for key, value in target.items() if key != "category"]
    rng.shuffle(hints)
    joined = ", ".join(hints[:-1]) + f" and {hints[-1]}" if len(hints) > 1 else hints[0]
    return rng.choice(_TEMPLATES).format(use=rng.choice(spec.uses), hints=joined)


def _grade(
    target: Mapping[str, str], by_category: Mapping[str, Sequence[tuple[str, _DemoProduct]]]
) -> dict[str, float]:
    spec = _CATEGORY_BY_KEY[target["category"]]
    gains: dict[str, float] = {}
    for product_id, product in by_category[spec.key]:
        matched, total = product_matches(product.attrs(), target)
        if matched == total:
            gains[product_id] = EXACT_GAIN
        elif matched > 0:
            gains[product_id] = SUBSTITUTE_GAIN
    for related in spec.related:
        for product_id, product in by_category[related]:
            attrs = product.attrs()
            if any(
                attrs.get(key) == value
                for key, value in target.items()
                if key in ("gender", "colour")
            ):
                gains[product_id] = COMPLEMENT_GAIN
    return gains


def build_demo_catalog(
    seed: int = 0,
    products_per_category: int = 150,
    queries_per_category: int = 16,
    exact_per_query: int = 3,
    test_fraction: float = 0.2,
) -> Catalog:
    """The demo catalog (defaults: 2,400 products in 16 categories, 256 requests, 20% test)."""
    if exact_per_query * queries_per_category > products_per_category:
        raise ValueError("products_per_category must hold exact_per_query products for every query")
    rng = random.Random(seed)
    targets: list[dict[str, str]] = []
    generated: list[_DemoProduct] = []
    for spec in CATEGORIES:
        seen: set[tuple[tuple[str, str], ...]] = set()
        while len(seen) < queries_per_category:
            target = _random_target(spec, rng)
            signature = tuple(sorted(target.items()))
            if signature in seen:
                continue
            seen.add(signature)
            targets.append(target)
            generated.extend(_random_product(spec, rng, target) for _ in range(exact_per_query))
        fillers = products_per_category - exact_per_query * queries_per_category
        generated.extend(_random_product(spec, rng, {}) for _ in range(fillers))
    rng.shuffle(generated)

    products: list[Product] = []
    by_category: dict[str, list[tuple[str, _DemoProduct]]] = {spec.key: [] for spec in CATEGORIES}
    for number, demo_product in enumerate(generated):
        product_id = f"P{number:06d}"
        title, text = _render(demo_product, rng)
        products.append(Product(id=product_id, title=title, text=text))
        by_category[demo_product.category].append((product_id, demo_product))

    order = list(range(len(targets)))
    rng.shuffle(order)
    test_numbers = set(rng.sample(range(len(order)), round(len(order) * test_fraction)))
    queries: dict[str, str] = {}
    labels: dict[str, dict[str, float]] = {}
    split: dict[str, str] = {}
    attributes: dict[str, dict[str, str]] = {}
    for number, target_index in enumerate(order):
        query_id = f"demo-{number:04d}"
        target = targets[target_index]
        queries[query_id] = _request_text(target, rng)
        labels[query_id] = _grade(target, by_category)
        split[query_id] = "test" if number in test_numbers else "train"
        attributes[query_id] = dict(target)
    return Catalog(
        name=DEMO_CATALOG_NAME,
        products=products,
        queries=queries,
        labels=labels,
        split=split,
        query_attributes=attributes,
    )


def demo_examples(catalog: Catalog, query_id: str) -> list[str]:
    """Example responses for a catalog query (the /inspect page's picker). Demo catalog
    queries carry their target attributes, which give a precise query (every attribute), a
    partial one inside the <think>/<answer> format a policy emits, the shopper's vague request
    itself and a query for a related category; other catalogs get the query text alone."""
    text = catalog.queries[query_id]
    attributes = catalog.query_attributes.get(query_id)
    spec = next((s for s in CATEGORIES if attributes and s.key == attributes.get("category")), None)
    if attributes is None or spec is None:
        return [text]
    precise = specific_query(attributes)
    partial_keys = ("category", "colour", "material")
    partial = specific_query({k: v for k, v in attributes.items() if k in partial_keys})
    examples = [
        precise,
        f"<think>The shopper wants {spec.noun}.</think><answer>{partial} for sale</answer>",
        text,
    ]
    related = next((s for s in CATEGORIES if spec.related and s.key == spec.related[0]), None)
    if related is not None:
        examples.append(f"{attributes.get('colour', '')} {related.noun}".strip())
    return examples
