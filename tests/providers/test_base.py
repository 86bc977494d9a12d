"""ProviderError: the host's details apart from the sentence a channel may see."""

from __future__ import annotations

import pytest

from bot.providers.base import ProviderError
from bot.providers.http import provider_error


@pytest.mark.parametrize(
    ("status", "body", "public"),
    [
        (401, {"error": {"message": "Invalid key sk-or-v1-abc"}}, "the provider rejected the host's API key"),
        (402, {"error": {"message": "Balance $0.01, need $0.20"}}, "the host's account with the provider is out of credit"),
        (403, {"error": {"message": "flagged", "metadata": {"reasons": ["x"]}}}, "the provider's moderation refused the request"),
        (400, {"error": {"message": "max_tokens too large for org-123"}}, "the provider refused the request"),
        (404, {"error": {"message": "No endpoints for google/x"}}, "the provider does not know this model"),
        (429, {"error": {"message": "Rate limit for key ...abc: 20/min"}}, "the provider is rate limiting requests"),
        (503, {"error": {"message": "upstream 10.0.0.7 down"}}, "the provider is having trouble (HTTP 503)"),
        (418, {"error": {"message": "teapot"}}, "the provider answered HTTP 418"),
    ],
)
def test_an_http_failure_says_what_happened_without_the_providers_words(status, body, public):
    error = provider_error(status, body, "OPENROUTER_API_KEY")
    assert error.public == public
    assert error.reason != public  # the details stay, for the log and the moderator


def test_a_failure_without_a_status_is_plain_already_unless_it_needs_the_host():
    assert ProviderError("no answer within 300 seconds").public == "no answer within 300 seconds"
    no_key = ProviderError("No API key is set that can run X. Put GEMINI_API_KEY=... in .env", pause=True)
    assert no_key.public == "no API key set on this host can run this model"
    assert ProviderError("the embedded model failed (OSError: /srv/x.gguf)", public="the embedded model failed").public == (
        "the embedded model failed"
    )
