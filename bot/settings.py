"""Settings, read from the environment and ``.env``; every one is listed in ``.env.example``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", env_ignore_empty=True, extra="ignore"
    )

    # Discord
    discord_token: SecretStr | None = None
    moderator_role: str | None = None
    dev_guild_id: int | None = None

    # Providers
    openrouter_api_key: SecretStr | None = None
    openrouter_base_url: str = "https://openrouter.ai/api/v1"
    app_url: str = "https://github.com/seance-bot/seance"
    app_title: str = "Seance"

    # Timeouts and retries for every provider
    connect_timeout: float = Field(10.0, gt=0)
    read_timeout: float = Field(60.0, gt=0, description="Longest silence between streamed chunks.")
    total_timeout: float = Field(300.0, gt=0)
    max_attempts: int = Field(3, ge=1, le=10)

    # Rooms
    max_ais: int = Field(5, ge=1, le=10)
    max_commands_per_reply: int = Field(6, ge=0)
    context_tokens: int = Field(60_000, ge=2_000)
    vision_pictures: int = Field(3, ge=0)
    turn_delay: float = Field(2.0, ge=0)
    room_budget_usd: float | None = Field(None, gt=0)

    # Pictures
    pictures_dir: Path = Path("data/pictures")

    @property
    def has_any_key(self) -> bool:
        return self.openrouter_api_key is not None
