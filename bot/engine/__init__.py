"""The conversation engine: no Discord, no network, no files; runs the console and the bot alike."""

from .catalog import Catalog, ModelInfo, UnknownModel
from .commands import Command, parse_commands, visible_text
from .context import ChatRequest, Message, Usage
from .events import (
    Alert, Event, ForkPoint, ImageJob, ImageMade, Notice, Picture, Reply, Said, SearchHit, SearchJob, Seat, Spent,
    StateChanged, SummaryJob,
)
from .room import Participant, Room, RoomError, RoomSettings, Turn
from .scenarios import Scenario, ScenarioError, load_scenarios

__all__ = [
    "Catalog", "ModelInfo", "UnknownModel", "Command", "parse_commands", "visible_text",
    "ChatRequest", "Message", "Usage", "Alert", "Event", "ForkPoint", "ImageJob", "ImageMade", "Notice", "Picture",
    "Reply", "Said", "SearchHit", "SearchJob", "Seat", "Spent", "StateChanged", "SummaryJob", "Participant", "Room",
    "RoomError", "RoomSettings", "Turn",
    "Scenario", "ScenarioError", "load_scenarios",
]
