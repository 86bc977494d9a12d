"""Picture providers against the fake server on 127.0.0.1: OpenRouter image models, OpenAI's
Images API, errors and retries, the provider choice, re-encoding for upload, and pictures
reaching vision models."""

from __future__ import annotations

import argparse
import base64
import io
import os

import pytest
from PIL import Image

from bot.console import add_arguments, run_console
from bot.engine import Catalog, ImageJob, ModelInfo, Picture, Room, RoomSettings, Scenario
from bot.providers import OpenAICompatProvider, ProviderError
from bot.providers.base import complete
from bot.providers.images import (
    UPLOAD_LIMIT,
    OfflineImages,
    OpenAIImages,
    OpenRouterImages,
    UnavailableImages,
    decode_data_url,
    fit_for_upload,
    make_image_provider,
)
from bot.settings import Settings
from tests.fakes import FakeLLMServer, Reply
from tests.fakes.images import OPENAI_REFUSAL, json_reply, openai_image, openrouter_image, openrouter_message, tiny_png

KEY = "sk-test-image-key-0123456789"


class Sleeps:
    """Records backoff waits instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def openrouter(server: FakeLLMServer, sleeps: Sleeps | None = None, **options: object) -> OpenRouterImages:
    limits: dict[str, object] = {"key_env": "OPENROUTER_API_KEY", "timeout": 5.0, "sleep": sleeps or Sleeps(), "backoff_base": 0.01}
    return OpenRouterImages(server.base_url, KEY, "google/gemini-2.5-flash-image", **(limits | options))  # type: ignore[arg-type]


def openai(server: FakeLLMServer, sleeps: Sleeps | None = None, model: str = "gpt-image-1.5", **options: object) -> OpenAIImages:
    limits: dict[str, object] = {"key_env": "OPENAI_API_KEY", "timeout": 5.0, "sleep": sleeps or Sleeps(), "backoff_base": 0.01}
    return OpenAIImages(server.base_url, KEY, model, **(limits | options))  # type: ignore[arg-type]


# --- OpenRouter ------------------------------------------------------------------


async def test_openrouter_picture_from_a_data_url(fake_llm: FakeLLMServer):
    png = tiny_png((10, 200, 30))
    fake_llm.script_images(openrouter_image(png, text="Here is your fox."))
    picture = await openrouter(fake_llm).generate("a watercolour fox")
    assert picture == Picture(png, "image/png", offline=False)

    (request,) = fake_llm.image_requests
    assert request.path.endswith("/chat/completions")
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.body == {
        "model": "google/gemini-2.5-flash-image",
        "messages": [{"role": "user", "content": "a watercolour fox"}],
        "modalities": ["image", "text"],
        "stream": False,
    }
    assert fake_llm.chat_requests == []  # a picture request is not a chat turn


async def test_openrouter_from_settings_sends_attribution_and_the_image_model(fake_llm: FakeLLMServer):
    settings = Settings(_env_file=None, openrouter_api_key=KEY, openrouter_base_url=fake_llm.base_url, image_model="test/painter")
    provider = make_image_provider(settings)
    assert isinstance(provider, OpenRouterImages)
    await provider.generate("a lighthouse")
    (request,) = fake_llm.image_requests
    assert request.body["model"] == "test/painter"
    assert request.headers["x-title"] == "Seance" and "http-referer" in request.headers


async def test_openrouter_answer_without_a_picture_says_what_the_model_said(fake_llm: FakeLLMServer):
    fake_llm.script_images(openrouter_message({"role": "assistant", "content": "I cannot draw   that.", "images": []}))
    with pytest.raises(ProviderError) as failure:
        await openrouter(fake_llm).generate("something forbidden")
    assert failure.value.reason == "the image model answered without a picture: I cannot draw that."


async def test_openrouter_error_inside_a_200(fake_llm: FakeLLMServer):
    fake_llm.script_images(json_reply({"error": {"code": 403, "message": "flagged", "metadata": {"reasons": ["violence"]}}}))
    with pytest.raises(ProviderError) as failure:
        await openrouter(fake_llm).generate("a battle")
    assert "moderation refused" in failure.value.reason and not failure.value.pause


async def test_rejected_key_is_not_retried_and_pauses(fake_llm: FakeLLMServer):
    fake_llm.require_key = "the-right-key"
    sleeps = Sleeps()
    with pytest.raises(ProviderError) as failure:
        await openrouter(fake_llm, sleeps).generate("a fox")
    assert failure.value.reason.startswith("the API key was rejected (User not found.)")
    assert "OPENROUTER_API_KEY" in failure.value.reason
    assert failure.value.pause and failure.value.status == 401
    assert len(fake_llm.image_requests) == 1 and sleeps.delays == []


async def test_rate_limit_is_retried_after_the_servers_wait(fake_llm: FakeLLMServer):
    sleeps = Sleeps()
    fake_llm.script_images(Reply.error(429, retry_after=2), openrouter_image())
    picture = await openrouter(fake_llm, sleeps).generate("a fox")
    assert picture.data == tiny_png()
    assert sleeps.delays == [2.0]
    assert len(fake_llm.image_requests) == 2


async def test_out_of_credit_is_not_retried(fake_llm: FakeLLMServer):
    fake_llm.script_images(Reply.error(402))
    with pytest.raises(ProviderError) as failure:
        await openrouter(fake_llm).generate("a fox")
    assert failure.value.reason.startswith("out of credit") and failure.value.pause
    assert len(fake_llm.image_requests) == 1


async def test_server_trouble_gives_up_after_max_attempts(fake_llm: FakeLLMServer):
    fake_llm.script_images(*[Reply.error(503)] * 3)
    with pytest.raises(ProviderError) as failure:
        await openai(fake_llm, max_attempts=3).generate("a fox")
    assert failure.value.reason.startswith("the provider is having trouble (HTTP 503)")
    assert failure.value.reason.endswith("(tried 3 times)")
    assert len(fake_llm.image_requests) == 3


async def test_a_slow_image_model_times_out_without_a_retry(fake_llm: FakeLLMServer):
    slow = Reply(headers={"Content-Type": "application/json"}, pieces=['{"data": []}'], delay=2.0)
    fake_llm.script_images(slow)
    with pytest.raises(ProviderError) as failure:
        await openai(fake_llm, timeout=0.3).generate("a fox")
    assert failure.value.reason == "no picture within 0.3 seconds"
    assert len(fake_llm.image_requests) == 1


async def test_nobody_listening_is_a_connection_error():
    server = FakeLLMServer().start()
    base_url = server.base_url
    server.stop()
    provider = OpenAIImages(base_url, KEY, "gpt-image-1.5", key_env="OPENAI_API_KEY", max_attempts=2, sleep=Sleeps())
    with pytest.raises(ProviderError) as failure:
        await provider.generate("a fox")
    assert failure.value.reason == "could not connect to OpenAI (tried 2 times)"


# --- OpenAI's Images API -------------------------------------------------------------


async def test_openai_picture_from_b64_json(fake_llm: FakeLLMServer):
    png = tiny_png((1, 2, 3))
    fake_llm.script_images(openai_image(png))
    picture = await openai(fake_llm).generate("a watercolour fox")
    assert picture == Picture(png, "image/png")
    (request,) = fake_llm.image_requests
    assert request.path.endswith("/images/generations")
    assert request.body == {"model": "gpt-image-1.5", "prompt": "a watercolour fox", "n": 1}


async def test_openai_dall_e_asks_for_base64(fake_llm: FakeLLMServer):
    await openai(fake_llm, model="dall-e-3").generate("a fox")
    assert fake_llm.image_requests[0].body["response_format"] == "b64_json"


async def test_openai_picture_left_at_a_url_is_downloaded(fake_llm: FakeLLMServer):
    jpeg = _jpeg_bytes()
    fake_llm.files["/files/fox.jpg"] = Reply(headers={"Content-Type": "image/jpeg"}, body=jpeg)
    fake_llm.script_images(openai_image(url=fake_llm.base_url.removesuffix("/api/v1") + "/files/fox.jpg"))
    picture = await openai(fake_llm).generate("a fox")
    assert picture == Picture(jpeg, "image/jpeg")


async def test_openai_safety_refusal_is_said_plainly(fake_llm: FakeLLMServer):
    fake_llm.script_images(json_reply(OPENAI_REFUSAL, status=400))
    with pytest.raises(ProviderError) as failure:
        await openai(fake_llm).generate("something violent")
    reason = failure.value.reason
    assert reason.startswith("the image model's safety system refused this prompt (Your request was rejected")
    assert not failure.value.pause and len(fake_llm.image_requests) == 1


async def test_openai_rejected_key(fake_llm: FakeLLMServer):
    fake_llm.require_key = "another-key"
    with pytest.raises(ProviderError) as failure:
        await openai(fake_llm).generate("a fox")
    assert "OPENAI_API_KEY" in failure.value.reason and failure.value.pause


async def test_a_key_echoed_back_is_blanked(fake_llm: FakeLLMServer):
    fake_llm.script_images(Reply.error(400, {"error": {"message": f"bad request for key {KEY}", "code": 400}}))
    with pytest.raises(ProviderError) as failure:
        await openai(fake_llm).generate("a fox")
    assert KEY not in failure.value.reason and "[the key]" in failure.value.reason


# --- data URLs -------------------------------------------------------------------


def test_data_url_mime_comes_from_the_bytes():
    jpeg = _jpeg_bytes()
    labelled_png = "data:image/png;base64," + base64.b64encode(jpeg).decode()
    assert decode_data_url(labelled_png) == Picture(jpeg, "image/jpeg")


@pytest.mark.parametrize("url", ["data:image/png;base64,@@not-base64@@", "https://example.invalid/a.png", "data:image/png,rawbytes"])
def test_unreadable_data_urls_are_provider_errors(url):
    with pytest.raises(ProviderError):
        decode_data_url(url)


# --- the choice of provider --------------------------------------------------------


@pytest.mark.parametrize(
    "keys, choice, expected",
    [
        ({}, "auto", OfflineImages),
        ({"openrouter_api_key": "k"}, "auto", OpenRouterImages),
        ({"openai_api_key": "k"}, "auto", OpenAIImages),
        ({"openrouter_api_key": "k", "openai_api_key": "k"}, "auto", OpenRouterImages),
        ({"openrouter_api_key": "k", "openai_api_key": "k"}, "openai", OpenAIImages),
        ({"openrouter_api_key": "k"}, "offline", OfflineImages),
    ],
)
def test_make_image_provider(keys, choice, expected):
    settings = Settings(_env_file=None, image_provider=choice, **keys)
    assert type(make_image_provider(settings)) is expected


async def test_a_named_provider_without_its_key_says_so_on_each_picture():
    provider = make_image_provider(Settings(_env_file=None, image_provider="openai", openrouter_api_key="k"))
    assert isinstance(provider, UnavailableImages)
    with pytest.raises(ProviderError, match="IMAGE_PROVIDER is openai but OPENAI_API_KEY is not set"):
        await provider.generate("a fox")


def test_the_default_image_models():
    assert make_image_provider(Settings(_env_file=None, openrouter_api_key="k")).model == "google/gemini-2.5-flash-image"
    assert make_image_provider(Settings(_env_file=None, openai_api_key="k")).model == "gpt-image-1.5"


async def test_offline_pictures_say_they_are_offline():
    picture = await OfflineImages().generate("a fox")
    assert picture.offline and picture.data.startswith(b"\x89PNG")


# --- re-encoding for upload ----------------------------------------------------------


def _noise_png(width: int, height: int, mode: str = "RGB") -> bytes:
    """Random pixels, which PNG cannot compress: a big file from a modest image."""
    image = Image.frombytes(mode, (width, height), os.urandom(width * height * len(mode)))
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=1)
    return out.getvalue()


def _jpeg_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (250, 120, 0)).save(out, "JPEG")
    return out.getvalue()


def test_a_picture_over_10_mib_is_reencoded_under_it():
    png = _noise_png(1900, 1900)
    assert len(png) > UPLOAD_LIMIT
    fitted = fit_for_upload(Picture(png, "image/png"))
    assert fitted.mime == "image/jpeg" and fitted.extension == "jpg"
    assert len(fitted.data) <= UPLOAD_LIMIT
    with Image.open(io.BytesIO(fitted.data)) as image:
        assert image.format == "JPEG" and image.size[0] >= 900  # shrunk no more than needed


def test_shrinking_goes_on_until_it_fits():
    png = _noise_png(600, 600)
    fitted = fit_for_upload(Picture(png, "image/png"), limit=60_000)
    assert len(fitted.data) <= 60_000
    with Image.open(io.BytesIO(fitted.data)) as image:
        assert image.size[0] < 600


def test_transparency_becomes_white_not_black():
    noise = Image.frombytes("RGB", (64, 64), os.urandom(64 * 64 * 3))
    noise.putalpha(0)  # colours under a fully transparent layer: big as a PNG, white once flattened
    out = io.BytesIO()
    noise.save(out, "PNG")
    assert len(out.getvalue()) > 5_000
    fitted = fit_for_upload(Picture(out.getvalue(), "image/png"), limit=5_000)
    with Image.open(io.BytesIO(fitted.data)) as result:
        assert min(result.getpixel((32, 32))) > 240


def test_a_small_picture_is_left_alone():
    picture = Picture(tiny_png(), "image/png", offline=True)
    assert fit_for_upload(picture) is picture


def test_an_unreadable_oversized_picture_is_a_provider_error():
    with pytest.raises(ProviderError, match="could not be read"):
        fit_for_upload(Picture(b"\x89PNG" + b"\x00" * 200, "image/png"), limit=100)


async def test_an_oversized_picture_from_the_api_arrives_fitted(fake_llm: FakeLLMServer):
    fake_llm.script_images(openrouter_image(_noise_png(300, 300)))
    picture = await openrouter(fake_llm, upload_limit=40_000).generate("static")
    assert picture.mime == "image/jpeg" and len(picture.data) <= 40_000


# --- pictures reach vision models only ----------------------------------------------

SEEING = ModelInfo(name="Seeing", routes={"openrouter": "test/seeing"}, vision=True)
BLIND = ModelInfo(name="Blind", routes={"openrouter": "test/blind"}, vision=False)


async def test_a_picture_reaches_a_vision_model_and_not_a_blind_one(fake_llm: FakeLLMServer):
    scenario = Scenario(name="test", title="Test", system="", opening="The room is open.")
    room = Room(Catalog([SEEING, BLIND]), scenario, RoomSettings(max_turns=10))
    room.add("Seeing")
    room.add("Blind")
    turn = room.next_turn()
    room.complete_turn(turn, 'look at this\n!image "a red square on a grey field"')
    (job,) = [e for e in room.take_events() if isinstance(e, ImageJob)]
    png = tiny_png((255, 0, 0))
    room.image_done(job.job_id, Picture(png, "image/png"))
    provider = OpenAICompatProvider("openrouter", fake_llm.base_url, KEY, max_attempts=1)
    try:
        for participant in (room.participants[2], room.participants[1]):
            await complete(provider, room.request_for(participant))
    finally:
        await provider.aclose()

    blind, seeing = (r.body for r in fake_llm.chat_requests)
    data_url = "data:image/png;base64," + base64.b64encode(png).decode()
    assert blind["model"] == "test/blind" and data_url not in str(blind)
    assert all(isinstance(m["content"], str) for m in blind["messages"])
    parts = [p for m in seeing["messages"] if isinstance(m["content"], list) for p in m["content"]]
    assert {"type": "image_url", "image_url": {"url": data_url}} in parts
    assert parts[0]["type"] == "text"  # text first, then the picture


# --- the console, end to end ----------------------------------------------------------


async def test_console_posts_a_real_picture_from_the_image_api(fake_llm: FakeLLMServer, tmp_path):
    png = tiny_png((9, 9, 9))
    fake_llm.script(Reply.text('here it is\n!image "a grey square, very calm"'))
    fake_llm.script_images(openrouter_image(png))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--ai", "Gemini 3 Flash", "--turns", "1", "--pictures", str(tmp_path / "pics")])
    settings = Settings(_env_file=None, openrouter_api_key=KEY, openrouter_base_url=fake_llm.base_url, turn_delay=0)
    out = io.StringIO()
    assert await run_console(args, settings, out) == 0
    printed = out.getvalue()
    assert "🎨 AI-1 (Gemini 3 Flash) created an image\n" in printed and "offline" not in printed
    (saved,) = (tmp_path / "pics").iterdir()
    assert saved.read_bytes() == png
    assert fake_llm.image_requests[0].body["messages"][0]["content"] == "a grey square, very calm"
