"""Fakes of the outside world (provider servers) for tests and benchmarks."""

from .anthropic_server import AnthropicReply, FakeAnthropicServer
from .gemini_server import FakeGeminiServer, GeminiReply
from .llm_server import FakeLLMServer, RecordedRequest, Reply, default_reply
from .searxng_server import FakeSearxng, SearxAnswer

__all__ = [
    "FakeLLMServer", "RecordedRequest", "Reply", "default_reply",
    "AnthropicReply", "FakeAnthropicServer", "FakeGeminiServer", "GeminiReply", "FakeSearxng", "SearxAnswer",
]
