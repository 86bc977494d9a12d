"""The Discord layer, one discord.py extension per feature; ``bot.bot`` loads them in ``setup_hook``."""
