"""Segmenters: split a query into players (character spans) that partition it.

Every segmenter returns sorted, disjoint, non-empty half-open spans that start and end on
non-whitespace, and together cover every non-whitespace character of the text. Because of
that, the full coalition's partial query is the query itself and v(N) is the real reward.

`phrase` (the default) is a rule-based splitter for shopping text: it cuts at punctuation,
coordinating conjunctions, prepositions, preference verbs and unit phrases ("size 8",
"pack of 2"), keeps the words in between together as one attribute phrase, and breaks
phrases longer than six words into balanced chunks without cutting a unit phrase apart:
"waterproof leather hiking boots | for women | size 8 | with ankle support".

A period ends a phrase (and a sentence) unless it marks an abbreviation or an initial:
"Dr.", "St.", "Mr.", "vs.", "approx." and the like, dotted acronyms ("U.S.", "e.g."), an
upper-case initial ("J. Crew", but not the size in "size M."), a unit after a number
("12 in.", "8 oz.", "12in.") and "No." before a number ("No. 2 pencils"). Words that often
end a sentence ("etc.", "Inc.", "no." alone, "in." without a number) still do.

One cohesive module past the usual size: the word lists and the three segmenters share the
tokenisation and the partition invariants, and are read together.
"""

from __future__ import annotations

import re

from .errors import UnknownOptionError

Span = tuple[int, int]

MAX_PHRASE_WORDS = 6
SEGMENTERS = ("phrase", "sentence", "word")

_RUN_RE = re.compile(r"\S+")
# Pieces never cross whitespace, and a separator ends one: "women,size" -> "women," "size".
_PIECE_RE = re.compile(r"[^\s,;|]+[,;|]*|[,;|]+")
_NUMBER_RE = re.compile(r"^[#$£€]?\d+(?:[.,/:x×-]\d+)*(?:st|nd|rd|th|s|%|\"|')?$", re.IGNORECASE)
_HARD_END = frozenset(",;|:!?.)]}")
_HARD_START = frozenset("([{")

# A period after an abbreviation or an initial does not end a phrase or a sentence.
_ABBREVIATIONS = frozenset(
    {
        "dr", "st", "mr", "mrs", "ms", "mx", "jr", "sr", "prof", "rev", "mt", "vs", "approx",
        "appx", "dept", "fig", "vol", "cf",
    }
)  # fmt: skip
# Only after a number ("12 in. wide", "8 oz. jar"): elsewhere "in." can end a sentence.
_UNIT_ABBREVIATIONS = frozenset(
    {"in", "ft", "oz", "lb", "lbs", "pc", "pcs", "pk", "ct", "qt", "gal", "fl", "yd", "sq"}
)
# Only before a number ("No. 2 pencil"): "No." on its own is an answer.
_NUMBER_ABBREVIATIONS = frozenset({"no", "nos"})
_DOTTED_RE = re.compile(r"(?:[A-Za-z]\.){2,}")  # "U.S.", "e.g.", "i.e."
_INITIAL_RE = re.compile(r"[A-Z]\.")  # "J. Crew"; lower-case single letters are left alone
_NUMBER_UNIT_RE = re.compile(r"\d+(?:[.,/]\d+)*([a-z]+)")  # "12in."
_OPENERS = "([{\"'“‘"

_CONJUNCTIONS = frozenset({"and", "or", "&", "but", "nor", "plus", "yet", "+"})
_PREPOSITIONS = frozenset(
    {
        "for", "with", "without", "in", "on", "under", "from", "by", "at", "near", "over",
        "above", "below", "between", "inside", "outside", "into", "within", "except",
        "including", "featuring", "w/", "w/o", "via", "during", "around", "against",
    }
)  # fmt: skip
_PREFERENCE_VERBS = frozenset(
    {
        "need", "needs", "needed", "want", "wants", "wanted", "prefer", "prefers", "preferred",
        "preferably", "looking", "searching", "seeking", "ideally", "must",
    }
)  # fmt: skip
# Words that carry no attribute on their own: a phrase of only these never stands alone.
_FUNCTION_WORDS = (
    _CONJUNCTIONS
    | _PREPOSITIONS
    | _PREFERENCE_VERBS
    | frozenset(
        {
            "a", "an", "the", "i", "im", "i'm", "id", "i'd", "we", "me", "my", "our", "you",
            "some", "any", "that", "which", "who", "is", "are", "am", "be", "to", "of", "very",
            "really", "also", "just", "please", "something", "anything", "it", "its", "this",
            "these", "those", "would", "like", "should", "could", "can", "will", "one", "get",
            "buy", "find", "show",
        }
    )
)  # fmt: skip
# "case compatible with iphone", "made in usa": the preposition belongs to the word before it.
_GOVERNORS = frozenset(
    {
        "compatible", "suitable", "designed", "made", "safe", "ideal", "perfect", "great",
        "good", "friendly", "approved", "rated", "resistant", "proof", "built", "fits",
        "fit", "works", "matching", "paired", "pairs", "covered", "filled",
        "lined", "coated", "infused", "powered", "operated", "mounted", "based",
    }
)  # fmt: skip
# Phrasal words whose particle is part of the attribute ("slip on shoes", "plug in heater").
_PARTICLE_VERBS = frozenset(
    {
        "slip", "pull", "plug", "add", "clip", "stick", "press", "snap", "screw", "roll",
        "lace", "zip", "pop", "drop", "walk", "stand", "lay", "fold", "tuck", "hang", "peel",
        "turn", "flip", "wall", "sit", "glow", "ride", "step", "put", "hook", "strap", "tie", "log",
    }
)  # fmt: skip
_SIZE_VALUES = frozenset(
    {
        "xxs", "xs", "s", "m", "l", "xl", "xxl", "xxxl", "2xl", "3xl", "4xl", "5xl", "small",
        "medium", "large", "x-large", "xx-large", "xxx-large", "x-small", "xx-small", "petite",
        "plus", "big", "tall", "wide", "narrow", "queen", "king", "twin", "full", "california",
        "one",
    }
)  # fmt: skip
_COLOURS = frozenset(
    {
        "black", "white", "red", "blue", "green", "yellow", "pink", "purple", "orange", "brown",
        "gray", "grey", "silver", "gold", "navy", "beige", "cream", "ivory", "tan", "teal",
        "turquoise", "maroon", "burgundy", "olive", "khaki", "charcoal", "bronze", "copper",
        "clear", "natural", "wood", "walnut", "oak", "chrome", "brass", "nickel", "rose",
    }
)  # fmt: skip
_COUNT_NOUNS = frozenset(
    {"pack", "packs", "set", "sets", "case", "box", "bundle", "lot", "pair", "pairs", "count"}
)
_UNITS = frozenset(
    {
        "inch", "inches", "in", "in.", "\"", "ft", "feet", "foot", "cm", "mm", "m", "meter",
        "meters", "yard", "yards", "yd", "oz", "ounce", "ounces", "fl", "lb", "lbs", "pound",
        "pounds", "kg", "g", "gram", "grams", "mg", "ml", "l", "liter", "liters", "litre",
        "gallon", "gallons", "gal", "qt", "quart", "quarts", "pint", "pints", "cup", "cups",
        "pack", "packs", "pk", "count", "ct", "pcs", "pc", "piece", "pieces", "pair", "pairs",
        "sheets", "rolls", "w", "watt", "watts", "v", "volt", "volts", "mah", "amp", "amps",
        "gb", "tb", "mb", "ghz", "hz", "mp", "k", "x", "×", "by", "tier", "person", "people",
        "seater", "gauge", "awg", "thread", "mil", "year", "years", "month", "months", "day",
        "days", "hour", "hours", "lumens", "cfm", "btu", "psi", "rpm", "mph", "ply",
    }
)  # fmt: skip


class _Piece:
    """One whitespace-free piece of text with the facts the rules ask about, computed once."""

    __slots__ = (
        "start", "end", "text", "word", "has_alnum", "is_number", "is_content", "ends_hard",
    )  # fmt: skip

    def __init__(self, start: int, end: int, text: str) -> None:
        self.start = start
        self.end = end
        self.text = text
        self.word = text.strip(",;|:!?.()[]{}\"“”'‘’").lower()
        self.has_alnum = any(ch.isalnum() for ch in text)
        self.is_number = bool(_NUMBER_RE.match(text.strip(",;|:!?()[]{}")))
        self.is_content = self.has_alnum and self.word not in _FUNCTION_WORDS
        # Ends on punctuation that closes a phrase; _pieces clears it after an abbreviation.
        self.ends_hard = text[-1] in _HARD_END


class _Unit:
    """Pieces that no rule may separate (a word plus attached punctuation, or a unit phrase)."""

    __slots__ = ("pieces", "starts_phrase", "has_content")

    def __init__(self, pieces: list[_Piece], starts_phrase: bool = False) -> None:
        self.pieces = pieces
        # A unit phrase ("size 8", "pack of 2") opens a new phrase.
        self.starts_phrase = starts_phrase
        # Pieces appended later are bare punctuation, which never carries content.
        self.has_content = any(p.is_content for p in pieces)

    @property
    def first(self) -> _Piece:
        return self.pieces[0]

    @property
    def last(self) -> _Piece:
        return self.pieces[-1]

    @property
    def words(self) -> int:
        return len(self.pieces)


def _is_numeric(word: str) -> bool:
    return bool(_NUMBER_RE.match(word.strip(",;|:!?()[]{}")))


def _is_abbreviation(word: str, previous: str | None, following: str | None) -> bool:
    """Whether the single period ending `word` (whitespace-free) marks an abbreviation or an
    initial rather than the end of a phrase or sentence; `previous` and `following` are the
    neighbouring words, if any ("in." abbreviates only after a number, "No." only before
    one)."""
    word = word.lstrip(_OPENERS)
    if len(word) < 2 or word[-1] != "." or not word[-2].isalnum():
        return False
    if _DOTTED_RE.fullmatch(word):
        return True
    if _INITIAL_RE.fullmatch(word):  # "size M." is a size, not an initial
        return previous is None or previous.lower().strip(_OPENERS) != "size"
    core = word[:-1].lower()
    if core in _ABBREVIATIONS:
        return True
    if core in _NUMBER_ABBREVIATIONS:
        return following is not None and _is_numeric(following.lstrip("#"))
    glued = _NUMBER_UNIT_RE.fullmatch(core)
    if glued is not None:
        return glued.group(1) in _UNIT_ABBREVIATIONS
    return core in _UNIT_ABBREVIATIONS and previous is not None and _is_numeric(previous)


def _trim(text: str, start: int, end: int) -> Span:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def segment_words(text: str) -> list[Span]:
    """One segment per whitespace-separated word."""
    return [(m.start(), m.end()) for m in _RUN_RE.finditer(text)]


_SENTENCE_END_RE = re.compile(r"[.!?…。！？]+[\"'”’)\]]*(?=\s)")
_LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def segment_sentences(text: str) -> list[Span]:
    """Sentences: cut after . ! ? (followed by whitespace) and at every line break, but not
    after the period of an abbreviation or an initial ("Dr.", "U.S.", "12 in.")."""
    cuts = {0, len(text)}
    words = [m.group() for m in _RUN_RE.finditer(text)]
    word_at_end = {m.end(): i for i, m in enumerate(_RUN_RE.finditer(text))}
    for m in _SENTENCE_END_RE.finditer(text):
        if m.group() == ".":
            i = word_at_end[m.end()]  # the match ends a word: whitespace follows it
            previous = words[i - 1] if i > 0 else None
            following = words[i + 1] if i + 1 < len(words) else None
            if _is_abbreviation(words[i], previous, following):
                continue
        cuts.add(m.end())
    cuts.update(i for i, ch in enumerate(text) if ch in _LINE_BREAKS)
    ordered = sorted(cuts)
    spans = []
    for start, end in zip(ordered, ordered[1:], strict=False):
        s, e = _trim(text, start, end)
        if s < e:
            spans.append((s, e))
    return spans


def _pieces(text: str) -> list[_Piece]:
    pieces = [_Piece(m.start(), m.end(), m.group()) for m in _PIECE_RE.finditer(text)]
    for i, piece in enumerate(pieces):
        if piece.text[-1] == ".":
            previous = pieces[i - 1].text if i > 0 else None
            following = pieces[i + 1].text if i + 1 < len(pieces) else None
            if _is_abbreviation(piece.text, previous, following):
                piece.ends_hard = False
    return pieces


def _is_number(piece: _Piece) -> bool:
    return piece.is_number


def _units(pieces: list[_Piece]) -> list[_Unit]:
    units: list[_Unit] = []
    i = 0
    while i < len(pieces):
        piece = pieces[i]
        nxt = pieces[i + 1] if i + 1 < len(pieces) else None
        after = pieces[i + 2] if i + 2 < len(pieces) else None
        ends_hard = piece.ends_hard
        if (
            not piece.has_alnum
            and piece.word not in _CONJUNCTIONS
            and units
            and not units[-1].last.ends_hard
        ):
            units[-1].pieces.append(piece)  # punctuation belongs to the segment before it
            i += 1
            continue
        if (
            piece.word == "size"
            and not ends_hard
            and nxt is not None
            and (_is_number(nxt) or nxt.word in _SIZE_VALUES)
        ):
            units.append(_Unit([piece, nxt], starts_phrase=True))
            i += 2
            continue
        if (
            piece.word in _COUNT_NOUNS
            and not ends_hard
            and nxt is not None
            and nxt.word == "of"
            and not nxt.ends_hard
            and after is not None
            and _is_number(after)
        ):
            units.append(_Unit([piece, nxt, after], starts_phrase=True))
            i += 3
            continue
        if _is_number(piece) and not ends_hard and nxt is not None and nxt.word in _UNITS:
            units.append(_Unit([piece, nxt]))
            i += 2
            continue
        units.append(_Unit([piece]))
        i += 1
    return units


def _opens_phrase(current: list[_Unit], unit: _Unit, following: _Unit | None) -> bool:
    """Whether `unit` starts a new phrase after the phrase built so far (`current`);
    `following` is the unit after `unit`, if any."""
    if not current:
        return False
    prev = current[-1].last
    if prev.ends_hard or unit.first.text[0] in _HARD_START:
        return True
    if not any(u.has_content for u in current):
        return False  # "i need", "looking for": function words lead into the next phrase
    word = unit.first.word
    if unit.starts_phrase or word in _PREFERENCE_VERBS:
        return True
    if (
        word in _GOVERNORS
        and not unit.last.ends_hard
        and following is not None
        and following.first.word in _PREPOSITIONS
    ):
        return True  # "tent | perfect for camping", "case | compatible with iphone 12"
    if word in _PREPOSITIONS:
        if prev.word in _GOVERNORS or prev.word in _PARTICLE_VERBS:
            return False
        if following is not None and following.first.word == prev.word:
            return False  # "side by side", "day by day"
        if prev.word in _SIZE_VALUES and word == "over":
            return False  # bunk beds: "twin over full"
        return not (_is_number(prev) and _is_number(unit.pieces[-1]) and unit.words > 1)
    if word in _CONJUNCTIONS:
        words = sum(u.words for u in current)
        # "black and white", "for men and women": a short phrase takes the conjunct along
        short_pp = current[0].first.word in _PREPOSITIONS and words <= 2
        colours = following is not None and {prev.word, following.first.word} <= _COLOURS
        return words >= 2 and not short_pp and not colours
    return False


def _cut_penalty(before: _Unit, after: _Unit) -> int:
    """How bad a chunk boundary between two units is: don't strand "iphone | 12" or "the |"."""
    penalty = 0
    if _is_number(after.first) or after.first.word in _UNITS:
        penalty += 4
    if before.last.has_alnum and before.last.word in _FUNCTION_WORDS:
        penalty += 3
    if after.first.word in _PREPOSITIONS or after.first.word in _CONJUNCTIONS:
        penalty -= 2
    return penalty


def _chunk(units: list[_Unit], min_chunks: int = 1) -> list[list[_Unit]]:
    """Split a phrase into the fewest chunks (at least `min_chunks`) of at most
    MAX_PHRASE_WORDS words, choosing cut points that keep numbers with their nouns and
    balance the sizes."""
    if min_chunks <= 1 and sum(u.words for u in units) <= MAX_PHRASE_WORDS:
        return [units]
    flat: list[_Unit] = []
    for unit in units:  # a unit longer than a phrase (a punctuation pile) is taken apart
        flat.extend([_Unit([p]) for p in unit.pieces] if unit.words > MAX_PHRASE_WORDS else [unit])
    total = sum(u.words for u in flat)
    n_chunks = max(-(-total // MAX_PHRASE_WORDS), min(min_chunks, len(flat)))
    if n_chunks <= 1:
        return [flat]
    mean = total / n_chunks
    # best[j] = (chunks, cost, previous cut) for the units flat[:j]; classic segmentation DP.
    inf = (10**9, 0.0, -1)
    best: list[tuple[int, float, int]] = [(0, 0.0, -1)] + [inf] * len(flat)
    for j in range(1, len(flat) + 1):
        words = 0
        for i in range(j - 1, -1, -1):
            words += flat[i].words
            if words > MAX_PHRASE_WORDS:
                break
            if best[i][0] >= inf[0]:
                continue
            cut = _cut_penalty(flat[i - 1], flat[i]) if i > 0 else 0
            cost = best[i][1] + cut + (words - mean) ** 2 / 4
            if i == 0 and j == len(flat) and n_chunks > 1:
                continue  # the whole phrase as one chunk is not allowed here
            candidate = (best[i][0] + 1, cost, i)
            # On ties the earlier cut wins: English puts the head noun last, so the longer
            # chunk goes to the end ("living room | coffee table sets").
            if candidate[:2] <= best[j][:2]:
                best[j] = candidate
    chunks: list[list[_Unit]] = []
    j = len(flat)
    while j > 0:
        i = best[j][2]
        chunks.append(flat[i:j])
        j = i
    return chunks[::-1]


def segment_phrases(text: str) -> list[Span]:
    """Attribute phrases of 1-6 words (see the module docstring for the rules)."""
    phrases: list[list[_Unit]] = []
    units = _units(_pieces(text))
    for index, unit in enumerate(units):
        following = units[index + 1] if index + 1 < len(units) else None
        if not phrases or _opens_phrase(phrases[-1], unit, following):
            phrases.append([])
        phrases[-1].append(unit)
    # A trailing phrase of function words only ("boots and") joins the phrase before it.
    if len(phrases) > 1 and not any(u.has_content for u in phrases[-1]):
        tail = phrases.pop()
        phrases[-1].extend(tail)
    # A query of >= 4 words with no cue at all ("t towels kitchen paper") still gets two players.
    min_chunks = 2 if len(phrases) == 1 and sum(u.words for u in phrases[0]) >= 4 else 1
    spans = []
    for phrase in phrases:
        for chunk in _chunk(phrase, min_chunks):
            spans.append((chunk[0].first.start, chunk[-1].last.end))
    return spans


def segment(text: str, mode: str = "phrase") -> list[Span]:
    """Segment `text` with the named segmenter: phrase | sentence | word."""
    if mode == "phrase":
        return segment_phrases(text)
    if mode == "sentence":
        return segment_sentences(text)
    if mode == "word":
        return segment_words(text)
    raise UnknownOptionError("segmenter", mode, SEGMENTERS)
