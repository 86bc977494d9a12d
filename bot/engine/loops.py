"""Noticing a room that goes in circles, with a similarity cheap enough to run on every reply.

A reply is compared with the last few replies as sets of word 3-shingles
(Jaccard). Shingles rather than single words because rooms share a vocabulary
(the topic's words come back in every reply) while a loop repeats whole
phrases. The thresholds were measured with ``python bench/loops.py``: on the
reference transcript (a lively room of five models) no reply scores above
0.10 against the five replies before it, and random fresh replies stay under
0.02, while the same pleasantry with two words changed scores 0.28 to 1 (0.41
on average). REPEAT sits between, nearer the lively side, at 0.25. A copy of
the previous speaker's reply is told apart word by word instead (see ``copied``).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from difflib import SequenceMatcher

SHINGLE = 3  # words per shingle
WINDOW = 5  # how many recent replies a reply is compared with
REPEAT = 0.25  # a reply at least this similar to a recent one repeats it
VERBATIM = 0.9  # word-sequence ratio with the previous speaker's reply at which it is not posted
COMPARED_WORDS = 1500  # a copy shows in its first words; bounds the word-by-word comparison
LOOPING = 3  # repeats among the last LOOK replies that make a loop
LOOK = 4
MIN_WORDS = 6  # shorter replies ("Yes.", "Agreed!") say too little to judge

_WORD_RE = re.compile(r"[^\W_]+(?:'[^\W_]+)?")


def words(text: str) -> tuple[str, ...]:
    """The words of ``text``, case and punctuation ignored."""
    return tuple(_WORD_RE.findall(text.casefold()))


def shingles(text: str | tuple[str, ...]) -> frozenset[tuple[str, ...]] | None:
    """The word 3-shingles of ``text``, or None if it is too short to judge."""
    found = words(text) if isinstance(text, str) else text
    if len(found) < MIN_WORDS:
        return None
    return frozenset(tuple(found[i : i + SHINGLE]) for i in range(len(found) - SHINGLE + 1))


def copied(a: tuple[str, ...], b: tuple[str, ...]) -> float:
    """How much of two word sequences is the same words in the same order (difflib's ratio).

    Shingles punish a changed word three times, which in a 20-word reply drops
    the score to 0.7; a copy is better told word by word: one word changed in 20
    still scores 0.95.
    """
    if len(a) < MIN_WORDS or len(b) < MIN_WORDS:
        return 0.0
    return SequenceMatcher(None, a[:COMPARED_WORDS], b[:COMPARED_WORDS], autojunk=False).ratio()


def is_copy(a: tuple[str, ...], b: tuple[str, ...], threshold: float = 0.0) -> bool:
    """``copied(a, b) >= threshold``, told cheaply when it is plainly not: difflib's quick ratios
    are upper bounds of its ratio, and the full comparison was a fifth of the engine's time per turn."""
    if len(a) < MIN_WORDS or len(b) < MIN_WORDS:
        return threshold <= 0.0
    matcher = SequenceMatcher(None, a[:COMPARED_WORDS], b[:COMPARED_WORDS], autojunk=False)
    return matcher.real_quick_ratio() >= threshold and matcher.quick_ratio() >= threshold and matcher.ratio() >= threshold


def similarity(a: frozenset, b: frozenset) -> float:
    """Jaccard similarity of two shingle sets: 1.0 for the same words in the same order."""
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


@dataclass
class Judgement:
    """What the watch thinks of one reply."""

    score: float  # highest similarity with a recent reply (0 when too short to judge)
    verbatim: str | None = None  # the label whose last reply this one copies, if it does
    looping: bool = False  # the room has just started going in circles
    # (text, words, shingle hashes or None) as judged, so ``record`` need not work them out again
    seen: tuple[str, tuple[str, ...], frozenset[int] | None] | None = field(default=None, repr=False, compare=False)


@dataclass
class LoopWatch:
    """Per room: recent replies and whether each repeated the ones before it.

    Kept in memory only; after a restart the watch starts empty and needs a
    few replies to judge again, which costs at most a late nudge.
    """

    # (speaker, label, words, shingles) of the latest replies, oldest first; shingles as hashes (``_marks``)
    recent: deque[tuple[int, str, tuple[str, ...], frozenset[int]]] = field(default_factory=lambda: deque(maxlen=WINDOW))
    repeats: deque[bool] = field(default_factory=lambda: deque(maxlen=LOOK))

    def judge(self, speaker: int, text: str) -> Judgement:
        """Judge a reply before it is posted (``accept`` or ``refuse`` records it afterwards)."""
        said = words(text)
        shingled = shingles(said)
        if shingled is None:
            return Judgement(0.0, seen=(text, said, None))
        said, mine = _marks(said, shingled)
        score = max((similarity(mine, theirs) for *_, theirs in self.recent), default=0.0)
        previous = next(((label, w) for who, label, w, _ in reversed(self.recent) if who != speaker), None)
        if previous is not None and is_copy(said, previous[1], VERBATIM):
            return Judgement(score, verbatim=previous[0], seen=(text, said, mine))
        return Judgement(score, seen=(text, said, mine))

    def record(self, speaker: int, label: str, text: str, judgement: Judgement, posted: bool = True) -> bool:
        """Count a judged reply; True when the room has just been found looping.

        A refused copy counts as a repeat but is not remembered as a reply, since
        nobody saw it. After a loop is reported the count starts again, so the
        next report needs LOOPING fresh repeats rather than coming every turn.
        """
        if judgement.seen is not None and judgement.seen[0] is text:  # as judged: words and shingles known
            _, said, mine = judgement.seen
        else:
            said = words(text)
            shingled = shingles(said)
            mine = None if shingled is None else _marks(said, shingled)[1]
        if mine is None:  # too short to judge, but it still is the speaker's latest reply
            if posted:
                self.recent.append((speaker, label, said, frozenset()))
            return False
        self.repeats.append(judgement.score >= REPEAT or judgement.verbatim is not None)
        if posted:
            self.recent.append((speaker, label, said, mine))
        if sum(self.repeats) >= LOOPING:
            self.repeats.clear()
            return True
        return False


def _marks(said: tuple[str, ...], shingled: frozenset) -> tuple[tuple[str, ...], frozenset[int]]:
    """A reply's words, and its shingles as their hashes, which compare as the shingles do (a
    collision of two 64-bit hashes is not a worry): a thousand rooms each keep their last five
    replies, and a tuple per shingle took twice what its hash does. Comparing hashes is quicker
    too (a tuple's hash is worked out again at every look-up); the words stay words, which
    difflib compares faster than numbers."""
    return said, frozenset(map(hash, shingled))
