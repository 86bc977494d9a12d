"""Transcripts of a stored room: txt, md, html and jsonl.

Exports are built from the stored events only, so they never contain
settings, keys or webhook tokens.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, TextIO

from bot.engine import ImageMade, Notice, Picture, Reply, Said
from bot.engine.events import picture_attached
from bot.storage import RoomRecord, Store, StoredEvent

FORMATS = ("txt", "md", "html", "jsonl")


def export(
    record: RoomRecord, events: list[StoredEvent], fmt: str, pictures_dir: Path | None = None, numbered: bool = False
) -> bytes:
    """The transcript in ``fmt``; ``md`` writes pictures into ``pictures_dir`` and links them.

    ``numbered`` puts each event's number before it in ``txt`` and ``md`` (what
    ``console --fork ROOM --at EVENT`` takes); ``html`` always shows the numbers of
    the AIs' messages, and ``jsonl`` has them as ``id``.
    """
    writers: dict[str, Callable[[], str]] = {
        "txt": lambda: to_txt(events, record, numbered),
        "md": lambda: to_md(record, events, pictures_dir, numbered),
        "html": lambda: to_html(record, events),
        "jsonl": lambda: to_jsonl(record, events),
    }
    if fmt not in writers:
        raise ValueError(f"Unknown format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    return writers[fmt]().encode("utf-8")


def title(record: RoomRecord) -> str:
    when = datetime.fromtimestamp(record.created_at, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"Séance room {record.id} ({record.scenario}), {when}"


def fork_line(record: RoomRecord) -> str | None:
    """Where a forked room came from; None for a room that was not forked."""
    if record.parent_id is None:
        return None
    return (
        f"A fork of room {record.parent_id} from event {record.fork_event}: the conversation before it "
        f"is in room {record.parent_id}'s transcript."
    )


def _number(stored: StoredEvent, numbered: bool) -> str:
    return f"#{stored.id} " if numbered else ""


# --- txt: the reference transcript's layout ---------------------------------------


def to_txt(events: list[StoredEvent], record: RoomRecord | None = None, numbered: bool = False) -> str:
    lines: list[str] = []
    if record is not None and (origin := fork_line(record)):
        lines += [origin, ""]
    for stored in events:
        event = stored.event
        number = _number(stored, numbered)
        if isinstance(event, Notice):
            lines.append(number + _notice_line(event))
        elif isinstance(event, Reply):
            lines += [number + event.label, event.text]
        elif isinstance(event, Said):
            lines += [number + event.name, event.text] if event.text else [number + event.name]
            if event.picture is not None:
                lines.append(picture_attached(event.name))
        elif isinstance(event, ImageMade):
            lines.append(number + event.caption)
    return "\n".join(lines) + "\n"


def _notice_line(event: Notice) -> str:
    """A notice as the channel showed it, plus what only moderators may read (a whisper's words)."""
    return f"{event.text} ({event.private})" if event.private else event.text


# --- md ------------------------------------------------------------------------


def to_md(record: RoomRecord, events: list[StoredEvent], pictures_dir: Path | None, numbered: bool = False) -> str:
    out = [f"# {title(record)}", ""]
    if origin := fork_line(record):
        out += [f"*{_md_escape(origin)}*", ""]
    for stored in events:
        event = stored.event
        number = _number(stored, numbered)
        if isinstance(event, Notice):
            out += [f"> {number}{_md_escape(_notice_line(event))}", ""]
        elif isinstance(event, Reply):
            out += [f"### {number}{event.label}", "", _md_body(event.text), ""]
        elif isinstance(event, Said):
            out += [f"### {number}{event.name} (human)", "", _md_body(event.text), ""]
            if event.picture is not None:
                if pictures_dir is not None:
                    name = _save_picture(event.picture, pictures_dir)
                    out += [f"![{_md_escape(picture_attached(event.name))}]({pictures_dir.name}/{name})", ""]
                else:
                    out += [f"*{_md_escape(picture_attached(event.name))}*", ""]
        elif isinstance(event, ImageMade):
            if pictures_dir is not None:
                name = _save_picture(event.picture, pictures_dir)
                out += [f"![{_md_escape(event.prompt)}]({pictures_dir.name}/{name})", ""]
            out += [f"*{number}{_md_escape(event.caption)}*", ""]
    return "\n".join(out)


def _md_body(text: str) -> str:
    """Art in fenced blocks so it keeps its shape; two trailing spaces keep other line breaks."""
    out = []
    for is_art, block in blocks(text):
        if is_art:
            out.append("```\n" + block + "\n```")
        else:
            out.append("\n".join(_md_escape(line) + "  " if line.strip() else "" for line in block.split("\n")))
    return "\n".join(out)


def blocks(text: str) -> list[tuple[bool, str]]:
    """Split a reply into prose and art: runs of lines indented by two or more spaces (or a
    tab), with the blank lines inside a drawing kept in it."""
    lines = text.split("\n")
    result: list[tuple[bool, str]] = []
    start = 0
    while start < len(lines):
        art = _is_art(lines[start])
        end = start
        for scan in range(start + 1, len(lines)):
            if art and not lines[scan].strip():
                continue  # part of the drawing only if more of it follows
            if _is_art(lines[scan]) != art:
                break
            end = scan
        result.append((art, "\n".join(lines[start : end + 1])))
        start = end + 1
    return result


def _is_art(line: str) -> bool:
    return line.startswith(("  ", "\t")) and bool(line.strip())


def _md_escape(text: str) -> str:
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _save_picture(picture: Picture, folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{hashlib.sha256(picture.data).hexdigest()[:16]}.{picture.extension}"
    (folder / name).write_bytes(picture.data)
    return name


# --- html: one self-contained page ------------------------------------------------

_CSS = """
:root { color-scheme: light dark; --bg: #f6f5f2; --fg: #1d1d1f; --muted: #6b6b70; --card: #fff; }
@media (prefers-color-scheme: dark) { :root { --bg: #17171a; --fg: #ececf0; --muted: #9a9aa2; --card: #222227; } }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { max-width: 46rem; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.25rem; margin: .5rem 0 1rem; }
.msg { background: var(--card); border-left: .35rem solid hsl(var(--hue) 65% 50%); border-radius: .5rem;
  padding: .6rem .8rem; margin: .6rem 0; box-shadow: 0 1px 2px #0002; }
.who { font-weight: 650; color: hsl(var(--hue) 60% 38%); margin-bottom: .25rem; }
.who .dot { display: inline-block; width: .7rem; height: .7rem; border-radius: 50%;
  background: hsl(var(--hue) 65% 50%); margin-right: .4rem; }
.text { white-space: pre-wrap; overflow-wrap: anywhere; }
.text pre, .art { font: 13px/1.25 ui-monospace, Menlo, Consolas, monospace; white-space: pre; overflow-x: auto; margin: .3rem 0; }
.human { border-left-style: dashed; }
.notice { color: var(--muted); font-size: .85rem; margin: .2rem .4rem; overflow-wrap: anywhere; }
figure { margin: .6rem 0; }
figure img, article img { max-width: 100%; height: auto; border-radius: .4rem; display: block; }
figcaption { color: var(--muted); font-size: .85rem; margin-top: .3rem; overflow-wrap: anywhere; }
.num { float: right; color: var(--muted); font-weight: 400; font-size: .75rem; }
.fork { color: var(--muted); margin: 0 0 1rem; }
"""


def to_html(record: RoomRecord, events: list[StoredEvent]) -> str:
    body = [f"<h1>{html.escape(title(record))}</h1>"]
    if origin := fork_line(record):
        body.append(f'<p class="fork">{html.escape(origin)}</p>')
    for stored in events:
        body.append(_html_event(stored))
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{html.escape(title(record))}</title><style>{_CSS}</style></head>"
        f"<body><main>\n" + "\n".join(b for b in body if b) + "\n</main></body></html>\n"
    )


def _html_event(stored: StoredEvent) -> str:
    event = stored.event
    if isinstance(event, Notice):
        return f'<div class="notice">{html.escape(_notice_line(event))}</div>'
    if isinstance(event, Reply):
        return _html_message(event.label, event.text, _hue(event.label), number=stored.id)
    if isinstance(event, Said):
        shown = _html_picture(event.picture, picture_attached(event.name)) if event.picture is not None else ""
        return _html_message(event.name, event.text, _hue(event.name), "human", shown)
    if isinstance(event, ImageMade):
        data = base64.b64encode(event.picture.data).decode()
        return (
            f'<figure class="msg" id="event-{stored.id}" style="--hue:{_hue(event.label)}"><div class="who">'
            f'<span class="dot"></span>{html.escape(event.label)}{_html_number(stored.id)}</div>'
            f'<img alt="{html.escape(event.prompt)}" '
            f'src="data:{event.picture.mime};base64,{data}"><figcaption>{html.escape(event.caption)}</figcaption></figure>'
        )
    return ""


def _html_message(
    who: str, text: str, hue: int, extra: str = "", picture: str = "", number: int | None = None
) -> str:
    anchor = f' id="event-{number}"' if number is not None else ""
    shown = _html_number(number) if number is not None else ""
    return (
        f'<article class="msg {extra}"{anchor} style="--hue:{hue}"><div class="who"><span class="dot"></span>'
        f"{html.escape(who)}{shown}</div><div class=\"text\">{_html_text(text)}</div>{picture}</article>"
    )


def _html_number(number: int) -> str:
    """An AI message's event number, for ``console --fork ROOM --at EVENT``."""
    return f'<span class="num" title="event number (to fork from here)">#{number}</span>'


def _html_picture(picture: Picture, alt: str) -> str:
    data = base64.b64encode(picture.data).decode()
    return f'<img alt="{html.escape(alt)}" src="data:{picture.mime};base64,{data}">'


def _html_text(text: str) -> str:
    """Escape, and set drawings in monospace so they keep their shape."""
    parts = [
        f'<pre class="art">{html.escape(block)}</pre>' if art else html.escape(block.strip("\n"))
        for art, block in blocks(text)
    ]
    return "\n".join(part for part in parts if part)


def _hue(name: str) -> int:
    """A stable colour per persona: the same label always gets the same hue."""
    return int(hashlib.sha256(name.encode()).hexdigest()[:4], 16) % 360


# --- jsonl: everything, for tools ----------------------------------------------------


def to_jsonl(record: RoomRecord, events: list[StoredEvent]) -> str:
    lines = []
    if record.parent_id is not None:  # a first line of its own, so every other line stays one event
        lines.append(json.dumps({"room": record.id, "kind": "fork", "parent": record.parent_id, "event": record.fork_event}))
    for stored in events:
        event = stored.event
        data = asdict(event)
        picture = getattr(event, "picture", None)  # an AI's (ImageMade) or a person's (Said)
        if picture is not None:
            data["picture"] = {
                "mime": picture.mime,
                "offline": picture.offline,
                "bytes": len(picture.data),
                "sha256": hashlib.sha256(picture.data).hexdigest(),
            }
        line = {
            "room": record.id,
            "id": stored.id,
            "kind": type(event).__name__.lower(),
            "created_at": _iso(stored.created_at),
            "posted_at": _iso(stored.posted_at),
            "message_ids": [str(i) for i in stored.message_ids],
            **data,
        }
        lines.append(json.dumps(line, ensure_ascii=False))
    return "\n".join(lines) + ("\n" if lines else "")


def _iso(timestamp: float | None) -> str | None:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat() if timestamp is not None else None


# --- the command line: python -m bot rooms / export -----------------------------------


async def list_rooms(store: Store, out: TextIO) -> int:
    records = await store.rooms()
    if not records:
        print("No rooms are stored yet.", file=out)
        return 0
    leases = await store.leases()  # which process drives each room now (see bot/leases.py)
    print(
        f"{'room':>5}  {'where':<22} {'state':<8} {'scenario':<10} {'events':>6}  {'last change':<16}  "
        f"{'driven by':<24}  fork of",
        file=out,
    )
    for record in records:
        where = "console" if record.origin == "console" else f"discord #{record.thread_id or record.channel_id}"
        when = datetime.fromtimestamp(record.updated_at).strftime("%Y-%m-%d %H:%M")
        count = await store.event_count(record.id)  # no need to read every event (and picture)
        parent = f"room {record.parent_id} at event {record.fork_event}" if record.parent_id is not None else ""
        owner = leases[record.id][0] if record.id in leases else "-"
        print(
            f"{record.id:>5}  {where:<22} {record.state:<8} {record.scenario:<10} {count:>6}  {when:<16}  "
            f"{owner:<24}  {parent}".rstrip(),
            file=out,
        )
    print("Event numbers: python -m bot export ROOM --numbered; fork with: python -m bot console --fork ROOM --at EVENT", file=out)
    return 0


async def export_room(
    store: Store, room_id: int, fmt: str, out_path: Path | None, out: BinaryIO, numbered: bool = False
) -> str:
    """Write the transcript to ``out_path`` (pictures beside it for md) or to ``out``; say where."""
    record = await store.room(room_id)
    events = await store.events(room_id)
    pictures = out_path.with_name(out_path.stem + "-pictures") if out_path is not None and fmt == "md" else None
    body = export(record, events, fmt, pictures, numbered)
    if out_path is None:
        out.write(body)
        return ""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(body)
    return f"Wrote room {room_id} ({len(events)} events) to {out_path}" + (f", pictures in {pictures}" if pictures and pictures.exists() else "")
