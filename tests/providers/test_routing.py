"""Which provider serves which model given which keys, and the OpenAI-compatible native routes."""

from __future__ import annotations

import pytest

from bot import data
from bot.engine import ChatRequest, Message, ModelInfo
from bot.providers import (
    AnthropicProvider,
    GeminiProvider,
    OpenAICompatProvider,
    ProviderError,
    ProviderPool,
    complete,
    make_chat_provider,
    route_for,
    routes_in_order,
)
from bot.settings import Settings
from tests.fakes import FakeLLMServer, Reply

ROUTE_SETTINGS = (
    "openrouter_api_key", "anthropic_api_key", "gemini_api_key", "openai_api_key", "deepseek_api_key",
    "local_base_url", "local_api_key",
)


def settings(**values: object) -> Settings:
    """Settings with only the given keys: none leak in from the environment or a .env file."""
    return Settings(_env_file=None, **({name: None for name in ROUTE_SETTINGS} | values))  # type: ignore[arg-type]


def model(name: str) -> ModelInfo:
    return data.catalog().get(name)


ALL_KEYS = {
    "openrouter_api_key": "sk-or", "anthropic_api_key": "sk-ant", "gemini_api_key": "AIza",
    "openai_api_key": "sk-oa", "deepseek_api_key": "sk-ds",
}


# --- the order of routes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "keys", "route"),
    [
        ("Claude Sonnet 4.5", ALL_KEYS, "anthropic"),
        ("Claude Sonnet 4.5", {"openrouter_api_key": "sk-or"}, "openrouter"),
        ("Claude Sonnet 4.5", {"anthropic_api_key": "sk-ant"}, "anthropic"),
        ("Gemini 3 Flash", ALL_KEYS, "gemini"),
        ("Gemini 3 Flash", {"openrouter_api_key": "sk-or", "anthropic_api_key": "sk-ant"}, "openrouter"),
        ("DeepSeek R1", ALL_KEYS, "deepseek"),
        ("GPT 5.2", ALL_KEYS, "openai"),
        ("GPT 5.2", {"openrouter_api_key": "sk-or", "deepseek_api_key": "sk-ds"}, "openrouter"),
        ("Kimi K2", ALL_KEYS, "openrouter"),
    ],
)
def test_native_route_first_when_its_key_is_set_else_openrouter(name, keys, route):
    assert route_for(model(name), settings(**keys)) == route


def test_preferred_comes_first():
    claude = ModelInfo(
        name="Claude Pref", routes={"openrouter": "a/c", "anthropic": "c"}, preferred=("openrouter",)
    )
    assert routes_in_order(claude) == ["openrouter", "anthropic"]
    assert route_for(claude, settings(**ALL_KEYS)) == "openrouter"
    assert route_for(claude, settings(anthropic_api_key="sk-ant")) == "anthropic"  # an order, not a restriction


def test_order_keeps_the_catalog_order_of_native_routes_and_puts_openrouter_last():
    many = ModelInfo(name="Many", routes={"openrouter": "x", "local": "llama3.2", "deepseek": "y", "unknown": "z"})
    assert routes_in_order(many) == ["local", "deepseek", "openrouter"]


def test_a_local_route_needs_its_base_url():
    llama = ModelInfo(name="Llama Local", routes={"local": "llama3.2", "openrouter": "meta/llama"})
    assert route_for(llama, settings(openrouter_api_key="sk-or")) == "openrouter"
    assert route_for(llama, settings(openrouter_api_key="sk-or", local_base_url="http://127.0.0.1:11434/v1")) == "local"


def test_no_key_names_every_key_that_would_serve_the_model():
    with pytest.raises(ProviderError) as caught:
        route_for(model("Claude Haiku 4.5"), settings(gemini_api_key="AIza"))
    assert caught.value.pause
    assert caught.value.reason == (
        "No API key is set that can run Claude Haiku 4.5. Put ANTHROPIC_API_KEY=... or OPENROUTER_API_KEY=... "
        "in .env (get an OpenRouter key at https://openrouter.ai/keys) and start again."
    )


def test_pool_check_raises_for_the_model_that_cannot_run():
    pool = ProviderPool(settings(anthropic_api_key="sk-ant"))
    pool.check([model("Claude Haiku 4.5"), model("Claude Opus 4.5")])
    with pytest.raises(ProviderError) as caught:
        pool.check([model("Claude Haiku 4.5"), model("DeepSeek R1")])
    assert "DeepSeek R1" in caught.value.reason and "DEEPSEEK_API_KEY=..." in caught.value.reason


def test_a_model_with_no_known_route():
    with pytest.raises(ProviderError) as caught:
        route_for(ModelInfo(name="Odd", routes={"carrier-pigeon": "x"}), settings(**ALL_KEYS))
    assert "has no route Séance knows" in caught.value.reason


async def test_the_pool_shares_one_provider_per_route():
    pool = ProviderPool(settings(**ALL_KEYS))
    sonnet, haiku = pool.get(model("Claude Sonnet 4.5")), pool.get(model("Claude Haiku 4.5"))
    flash, r1, gpt = pool.get(model("Gemini 3 Flash")), pool.get(model("DeepSeek R1")), pool.get(model("GPT 5.2"))
    assert sonnet is haiku and isinstance(sonnet, AnthropicProvider)
    assert isinstance(flash, GeminiProvider)
    assert isinstance(r1, OpenAICompatProvider) and r1.name == "deepseek"
    assert isinstance(gpt, OpenAICompatProvider) and gpt.name == "openai"
    assert isinstance(pool.get(model("Kimi K2")), OpenAICompatProvider)
    await pool.aclose()


def test_every_catalog_model_can_run_through_openrouter_alone():
    only = settings(openrouter_api_key="sk-or")
    for entry in data.catalog().models:
        if "openrouter" in entry.routes:
            assert route_for(entry, only) == "openrouter"


# --- the OpenAI-compatible native routes ---------------------------------------------


def ask(entry: ModelInfo) -> ChatRequest:
    return ChatRequest(entry, "You are AI-1.", (Message("user", "hi"),), None, 300, ("\n[AI-2]",))


async def test_openai_route_sends_max_completion_tokens(fake_llm: FakeLLMServer):
    provider = make_chat_provider(model("GPT 5.2"), settings(openai_api_key="sk-oa", openai_base_url=fake_llm.base_url))
    await complete(provider, ask(model("GPT 5.2")))
    await provider.aclose()
    sent = fake_llm.chat_requests[0]
    assert sent.headers["authorization"] == "Bearer sk-oa"
    assert sent.body["model"] == "gpt-5.2"
    assert sent.body["max_completion_tokens"] == 300 and "max_tokens" not in sent.body
    assert "stop" not in sent.body and "temperature" not in sent.body  # a reasoning model


async def test_deepseek_route(fake_llm: FakeLLMServer):
    fake_llm.script(Reply.text("Hello!", reasoning="They greet me.", style="deepseek", usage=(12, 21), cached=8))
    provider = make_chat_provider(model("DeepSeek R1"), settings(deepseek_api_key="sk-ds", deepseek_base_url=fake_llm.base_url))
    result = await complete(provider, ask(model("DeepSeek R1")))
    await provider.aclose()
    assert (result.text, result.reasoning) == ("Hello!", "They greet me.")
    assert (result.usage.input_tokens, result.usage.cached_input_tokens) == (4, 8)
    body = fake_llm.chat_requests[0].body
    assert body["model"] == "deepseek-reasoner" and body["max_tokens"] == 300
    assert body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("key", [None, "vllm-secret"])
async def test_local_route_with_or_without_a_key(fake_llm: FakeLLMServer, monkeypatch, key):
    monkeypatch.setattr(fake_llm, "_auth_failure", lambda headers: None)  # Ollama asks for no key
    llama = ModelInfo(name="Llama Local", routes={"local": "llama3.2"})
    fake_llm.script(Reply.text("Hi from Ollama", style="ollama"))
    provider = make_chat_provider(llama, settings(local_base_url=fake_llm.base_url, local_api_key=key))
    assert (await complete(provider, ask(llama))).text == "Hi from Ollama"
    await provider.aclose()
    sent = fake_llm.chat_requests[0]
    assert sent.body["model"] == "llama3.2"
    assert sent.headers.get("authorization") == (f"Bearer {key}" if key else None)
