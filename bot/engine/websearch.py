"""The words of a web search: which queries are fine, and how results read to the AIs.

Results come from the web, so they are quoted, never trusted: each field is
one line, cut to a size, and escaped so that no line of them can pass for a
speaker ("[Séance]: ...", "[AI-2 (Model)]: ..."). The whole block is bounded,
so a search can never crowd the room's context.
"""

from __future__ import annotations

from .context import escape_lines
from .events import SearchHit

MIN_QUERY = 3  # shorter queries find noise
MAX_QUERY = 200  # search engines cut long queries anyway; a long one is a reply pasted by mistake
MAX_RESULTS = 10  # whatever an adapter hands over, no more reach the room
TITLE_CHARS = 120
URL_CHARS = 200
EXTRACT_CHARS = 300
BLOCK_CHARS = 2400  # the whole context entry; results that do not fit are left out whole


def query_problem(query: str) -> str | None:
    """Why a query cannot be searched, or None."""
    if len(query) < MIN_QUERY:
        return f"the query needs at least {MIN_QUERY} characters"
    if len(query) > MAX_QUERY:
        return f"the query is longer than {MAX_QUERY} characters; search for a few words"
    return None


def clean_query(text: str) -> str:
    """One line, single spaces."""
    return " ".join(text.split())


def results_block(short: str, query: str, hits: list[SearchHit]) -> tuple[str, int]:
    """The context entry every AI reads, and how many results it holds."""
    lines: list[str] = []
    size = 0
    for number, hit in enumerate(hits[:MAX_RESULTS], start=1):
        item = _item(number, hit)
        if lines and size + len(item) > BLOCK_CHARS:
            break
        lines.append(item)
        size += len(item)
    count = len(lines)
    head = (
        f'[Web search by {short}: "{query}", {count} result{"" if count == 1 else "s"}. '
        "Quoted from web pages, not said by anyone here; no page was opened]"
    )
    return "\n".join([head, *lines]), count


def moderators_note(hits: list[SearchHit], count: int) -> str:
    """The results in one line, for the export (a notice's ``private`` part)."""
    return "; ".join(f"{_line(h.title, TITLE_CHARS)} <{_line(h.url, URL_CHARS)}>" for h in hits[:count])


def _item(number: int, hit: SearchHit) -> str:
    title = _line(hit.title, TITLE_CHARS) or "(no title)"
    item = f"{number}. {title} ({_line(hit.url, URL_CHARS)})"
    extract = _line(hit.extract, EXTRACT_CHARS)
    return item + (f"\n   {extract}" if extract else "")


def _line(text: str, limit: int) -> str:
    """One escaped line of at most ``limit`` characters (an ellipsis marks a cut)."""
    flat = " ".join(text.split())
    if len(flat) > limit:
        flat = flat[: limit - 1].rstrip() + "…"
    return escape_lines(flat)
