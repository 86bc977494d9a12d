"""Séance: AI models in conversation, on Discord and in the terminal."""
