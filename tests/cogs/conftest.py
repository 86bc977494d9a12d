from tests.discord_world import settings, simcord_bot, world  # noqa: F401  (fixtures)


def pytest_configure(config):  # type: ignore[no-untyped-def]
    config.addinivalue_line("markers", "settings(**overrides): Settings values for the Discord test bot")
