"""Fakes of the outside world (provider servers) for tests and benchmarks."""

from .llm_server import FakeLLMServer, RecordedRequest, Reply, default_reply

__all__ = ["FakeLLMServer", "RecordedRequest", "Reply", "default_reply"]
