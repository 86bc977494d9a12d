"""The community's vote: a reaction on an AI's message asks for that AI to speak next,
and ✅ or ❌ on the notice of an AI's proposal to remove another is a yes or a no.

Only the mapping lives here (message -> AI, member -> voter); counting, one
vote per member per turn, ties and the announcement are the engine's. The
stage remembers the messages it posted; older ones (from before a restart)
are looked up in storage, where the journal records each AI message it marks.
A member blocked in the room (``/seance block``) does not vote there, and one
member's votes beyond VOTES_PER_MINUTE are ignored.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, cast

import discord
from discord.ext import commands

from cogs.coordinator import Coordinator, Session

if TYPE_CHECKING:
    from bot.bot import SeanceBot


# Reactions on a removal proposal's notice that are votes, and what they mean.
REMOVAL_EMOJI = {"✅": True, "❌": False}

# How many (message, member) pairs of reactions are remembered; the oldest are forgotten first.
REMEMBERED_REACTIONS = 10_000


class Votes(commands.Cog):
    def __init__(self, bot: SeanceBot):
        self.bot = bot
        # Which emoji each member has on each AI message, so taking back one of two
        # reactions keeps the vote. Only this process's: for a reaction added before a
        # restart, taking it back takes the vote back, as with a single reaction.
        self._reactions: dict[tuple[int, int], set[str]] = {}

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        if (found := await self._ballot(payload)) is None:
            return
        session, number = found
        if number is None:
            self._removal_vote(session, payload, adding=True)
            return
        self._remember(payload)
        voter = str(payload.user_id)
        if session.room.is_blocked(voter) or not session.vote_limit.allow(voter, time.monotonic()):
            return
        if session.room.vote(voter, number) is None:
            return
        if self.bot.store is not None and session.room_id is not None:
            await self.bot.store.record_vote(session.room_id, str(payload.user_id), number, session.room.turns_taken)

    @commands.Cog.listener()
    async def on_raw_reaction_remove(self, payload: discord.RawReactionActionEvent) -> None:
        if (found := await self._ballot(payload)) is None:
            return
        session, number = found
        if number is None:
            self._removal_vote(session, payload, adding=False)
        elif not self._forget(payload):
            session.room.unvote(str(payload.user_id), number)

    def _removal_vote(self, session: Session, payload: discord.RawReactionActionEvent, adding: bool) -> None:
        """✅/❌ on the open removal proposal's notice; taking one back takes back that vote only.
        Blocked members and the vote rate limit are the same as for choosing who speaks."""
        vote = REMOVAL_EMOJI.get(str(payload.emoji))
        if vote is None or not session.stage.is_ballot(payload.message_id):
            return
        voter = str(payload.user_id)
        if adding and not session.vote_limit.allow(voter, time.monotonic()):
            return
        session.room.member_removal_vote(voter, vote, taking_back=not adding)

    def _remember(self, payload: discord.RawReactionActionEvent) -> None:
        key = (payload.message_id, payload.user_id)
        self._reactions.setdefault(key, set()).add(str(payload.emoji))
        if len(self._reactions) > REMEMBERED_REACTIONS:
            del self._reactions[next(iter(self._reactions))]

    def _forget(self, payload: discord.RawReactionActionEvent) -> bool:
        """Forget one reaction; True while the member still has another on that message."""
        key = (payload.message_id, payload.user_id)
        left = self._reactions.get(key, set())
        left.discard(str(payload.emoji))
        if not left:
            self._reactions.pop(key, None)
        return bool(left)

    async def _ballot(self, payload: discord.RawReactionActionEvent) -> tuple[Session, int | None] | None:
        """The room and the AI a person's reaction is about; None for bots and rooms' strangers."""
        if self._is_bot(payload):
            return None
        coordinator = cast(Coordinator, self.bot.get_cog("Coordinator"))
        session = coordinator.session_for(payload.channel_id)
        if session is None:
            return None
        session.touch()  # any reaction in the room's channel is someone watching
        number = session.stage.author_of(payload.message_id)
        if number is None:
            number = await self._stored_author(session, payload.message_id)
        return session, number

    async def _stored_author(self, session: Session, message_id: int) -> int | None:
        """The AI of a message this process did not post (it came before a restart)."""
        if self.bot.store is None or session.room_id is None:
            return None
        found = await self.bot.store.ai_for_message(message_id)
        return found[1] if found is not None and found[0] == session.room_id else None

    def _is_bot(self, payload: discord.RawReactionActionEvent) -> bool:
        me = self.bot.user
        if me is not None and payload.user_id == me.id:
            return True
        user = payload.member or self.bot.get_user(payload.user_id)
        return user is not None and user.bot


async def setup(bot: SeanceBot) -> None:
    await bot.add_cog(Votes(bot))
