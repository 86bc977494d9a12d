from tests.discord_world import settings, simcord_bot, world  # noqa: F401  (fixtures)
