"""Loop benchmark: how the similarity scores real and scripted rooms, and what the nudge changes.

Run with ``python bench/loops.py [--seed-transcript PATH] [--turns N]``. Three parts:

1. The reference transcript (a lively room, see shared/reference/seed-notes.md), if
   given: each reply's score against the replies before it. This is where REPEAT
   must stay above everything, or lively rooms get nudged.
2. A scripted lively room: fresh replies only. Nudges here are false alarms.
3. A scripted looping room, with LOOP_NUDGE on and off: after a lively start the
   AIs trade pleasantries with a word or two changed, and now and then one copies
   the previous reply with a single word changed. The scripted model's one
   assumption: an AI that receives the nudge writes something fresh, and the room
   stays fresh for a few turns before it settles into pleasantries again.

Nothing asserts; figures are printed as a table.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot import data  # noqa: E402
from bot.engine import Notice, Reply, Room, RoomSettings  # noqa: E402
from bot.engine.loops import REPEAT, WINDOW, shingles, similarity  # noqa: E402
from bot.engine.room import NUDGE  # noqa: E402

LIVELY_START = 6  # fresh turns before the scripted room starts looping
FRESH_AFTER_NUDGE = 6  # fresh turns a nudge buys in the scripted room
COPY_CHANCE = 0.15  # how often a looping AI copies the previous reply with one word changed

VOCABULARY = (
    "tide harbour ledger moon lantern salt fisher map wreck gull storm chart compass anchor rope lighthouse "
    "keeper night fog reef current island cliff beacon signal ship sail mast hull deck crew voyage bell coin "
    "archive glass river delta clay kiln potter oven bread market square clock tower stair window garden "
    "orchard frost seed root branch owl fox hare badger burrow meadow quarry stone chisel statue mirror "
    "letter stamp courier bridge ferry canal lock barge engine piston valve gauge spark wire radio static "
    "choir organ hymn echo cellar vault key ledger debt promise rumour festival mask drum dance feast"
).split()
PLEASANTRIES = [
    "What a {a} thought, I completely agree with everything you said about the {b} and the {c}.",
    "Thank you, that is so {a}; I feel the same way about the {b} and the {c}, truly.",
    "Yes, beautifully put, the {b} and the {c} really are {a}, and I agree with all of it.",
]
ADJECTIVES = ["beautiful", "lovely", "wonderful", "profound", "moving", "elegant"]
NOUNS = ["tides", "moon", "sea", "silence", "light", "journey"]


def fresh(rng: random.Random) -> str:
    """A reply with nothing in common with the others but chance (random words from a large list)."""
    return " ".join(rng.choice(VOCABULARY) for _ in range(rng.randint(18, 40))).capitalize() + "."


def pleasantry(rng: random.Random) -> str:
    a, (b, c) = rng.choice(ADJECTIVES), rng.sample(NOUNS, 2)
    return rng.choice(PLEASANTRIES).format(a=a, b=b, c=c)


def copy_of(text: str, rng: random.Random) -> str:
    words = text.split()
    words[rng.randrange(len(words))] = rng.choice(ADJECTIVES)
    return " ".join(words)


def play(turns: int, nudge: bool, looping: bool, seed: int = 7) -> dict[str, float]:
    """A scripted three-AI room; returns what the loop watch and the script counted."""
    rng = random.Random(seed)
    room = Room(data.catalog(), data.scenarios()["open-room"], RoomSettings(loop_nudge=nudge), topic="tides")
    for name in ("Gemini 3 Flash", "DeepSeek R1", "Claude Haiku 4.5"):
        room.add(name)
    fresh_left = LIVELY_START if looping else turns
    first_loop_turn = None
    noticed_at = None
    posted: list[str] = []
    stats = {"nudges": 0, "refused": 0, "repeats": 0, "replies": 0}
    for number in range(1, turns + 1):
        turn = room.next_turn()
        if turn is None:
            break
        if NUDGE in turn.request.messages[-1].content:
            fresh_left = FRESH_AFTER_NUDGE
        if fresh_left > 0:
            fresh_left -= 1
            text = fresh(rng)
        else:
            first_loop_turn = first_loop_turn or number
            text = copy_of(posted[-1], rng) if posted and rng.random() < COPY_CHANCE else pleasantry(rng)
        room.complete_turn(turn, text)
        for event in room.take_events():
            if isinstance(event, Reply):
                mine = shingles(event.text)
                recent = [s for s in map(shingles, posted[-WINDOW:]) if s]
                if mine and max((similarity(mine, s) for s in recent), default=0) >= REPEAT:
                    stats["repeats"] += 1
                stats["replies"] += 1
                posted.append(event.text)
            elif isinstance(event, Notice) and "going in circles" in event.text:
                stats["nudges"] += 1
                noticed_at = noticed_at or number
            elif isinstance(event, Notice) and "almost word for word" in event.text:
                stats["refused"] += 1
    # The nudge notice comes with the turn after the loop is found, so "noticed" counts looping replies before it.
    stats["turns to notice"] = (noticed_at - first_loop_turn) if noticed_at and first_loop_turn else float("nan")
    return stats


def reference_scores(path: Path) -> list[float]:
    """Each reply's highest similarity with the WINDOW replies before it, in the reference transcript."""
    text = path.read_text("utf-8", errors="replace")
    header = re.compile(r"^AI-\d+ \([^)]*\)\s*$")
    notice = re.compile(r"^(\[AI-\d|\S{2,4} \[AI-|\S{2,4} AI-\d|Maximum of)")  # bracketed and emoji lines
    replies: list[list[str]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if header.match(line):
            current = []
            replies.append(current)
        elif notice.match(line):
            current = None
        elif current is not None:
            current.append(line)
    scores, seen = [], []
    for body in replies:
        mine = shingles("\n".join(body))
        if mine is None:
            continue
        scores.append(max((similarity(mine, s) for s in seen[-WINDOW:]), default=0.0))
        seen.append(mine)
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed-transcript", type=Path, help="the reference transcript (shared/seed/000_*.txt)")
    parser.add_argument("--turns", type=int, default=300)
    args = parser.parse_args()
    rows: list[tuple[str, str]] = []
    if args.seed_transcript:
        scores = reference_scores(args.seed_transcript)
        above = sum(s >= REPEAT for s in scores)
        rows.append(("reference: replies judged", str(len(scores))))
        rows.append(("reference: highest / mean score", f"{max(scores):.3f} / {sum(scores) / len(scores):.3f}"))
        rows.append((f"reference: replies at or above REPEAT={REPEAT}", str(above)))
    lively = play(args.turns, nudge=True, looping=False)
    rows.append(("scripted lively room: nudges (false alarms)", str(lively["nudges"])))
    for nudge in (False, True):
        s = play(args.turns, nudge=nudge, looping=True)
        name = f"scripted looping room, LOOP_NUDGE={'on' if nudge else 'off'}"
        share = s["repeats"] / s["replies"] if s["replies"] else 0
        rows.append((f"{name}: replies posted", f"{s['replies']:.0f} of {args.turns} turns"))
        rows.append((f"{name}: posted replies that repeat", f"{s['repeats']:.0f} ({share:.0%})"))
        rows.append((f"{name}: copies refused", f"{s['refused']:.0f}"))
        rows.append((f"{name}: nudges", f"{s['nudges']:.0f}"))
        if nudge:
            rows.append((f"{name}: looping turns before the first nudge", f"{s['turns to notice']:.0f}"))
    width = max(len(r[0]) for r in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


if __name__ == "__main__":
    main()
