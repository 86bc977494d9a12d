"""A room: its participants, whose turn it is, and what their commands do.

The room is a state machine without I/O. A runner asks it for the next turn,
sends the request to a provider, and hands the reply back; the room applies the
reply's commands in the order written and queues events (notices, replies,
picture jobs) for the runner to show. Moderator and vote hooks queue events the
same way, so every stage renders the same room.
"""

from __future__ import annotations

import re
import sys
from collections import Counter, deque
from dataclasses import dataclass, field, replace

from . import events as ev
from .catalog import Catalog, ModelInfo, UnknownModel
from .commands import COMMAND_NAMES, Command, parse_commands, visible_text
from .context import (
    ChatRequest,
    Entry,
    Recap,
    SeatView,
    Usage,
    clean_reply,
    command_docs,
    escape_lines,
    person_name,
    stop_sequences,
    system_prompt,
    token_budget,
)
from .loops import Judgement, LoopWatch
from .memory import Memory, clean_summary, fit, reserve, summary_request
from .scenarios import Scenario
from .websearch import clean_query, moderators_note, query_problem, results_block

MIN_IMAGE_PROMPT = 3
REFUSALS_BEFORE_PAUSE = 3  # the same refusal this many turns in a row will not go away by itself
TIDY_EVERY = 256  # entries appended between two looks for what memory can let go of
PEOPLE_LISTED = 10  # names in the system prompt; a flood of posters cannot grow it past this
MAX_ADDITION = 1000
KEPT_ADDITIONS = 5
MAX_WHISPER = 1000
# "@AI-3" or a full label ("AI-3 (Gemini 3 Flash)") at the start of a line hands AI-3 the next turn.
_ADDRESS_RE = re.compile(r"^[ \t*_]*(@?)AI-(\d+)(?!\d)", re.MULTILINE)
NUDGE = (
    "A note only you can see: the last replies in this room keep saying the same things. "
    "Do not agree, thank or sum up again; take the conversation somewhere new "
    "(a new question, a disagreement, a story, a picture)."
)


class RoomError(Exception):
    """A request from outside (a moderator) that cannot be done; the message says why."""


@dataclass
class RoomSettings:
    max_ais: int = 5
    max_commands: int = 6
    max_turns: int | None = None
    commands: frozenset[str] = frozenset(COMMAND_NAMES)
    context_tokens: int = 60_000
    vision_pictures: int = 3
    budget_usd: float | None = None  # the room's spending limit, chat and pictures together
    default_temperature: float = 1.0
    loop_nudge: bool = True  # nudge the next AI when the room goes in circles
    image_price_usd: float = 0.0  # what one picture costs
    images_per_ai: int | None = None  # pictures one AI may ask for within image_window turns
    image_window: int = 10
    images_per_room: int | None = None  # pictures made (or being made) in the room's life
    images_at_once: int | None = None  # pictures being made at the same time
    summary_model: str | None = None  # a catalog model that summarises what the AIs can no longer be sent
    searches_per_window: int | None = None  # !search in the whole room within search_window turns
    search_window: int = 10


@dataclass
class Participant:
    number: int
    model: ModelInfo
    persona: str = ""
    temperature: float = 1.0
    additions: list[str] = field(default_factory=list)
    muted: bool = False
    skip_next: bool = False
    present: bool = True
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    turns: int = 0
    image_turns: list[int] = field(default_factory=list)  # the room turns of its recent !image requests

    @property
    def label(self) -> str:
        # Interned: every history entry of this AI names it, and a thousand rooms' histories
        # held a separate copy of the same label per entry (a fourteenth of a room's memory).
        return sys.intern(f"AI-{self.number} ({self.model.name})")

    @property
    def short(self) -> str:
        return f"AI-{self.number}"


@dataclass
class Removal:
    """An open proposal to remove an AI. ``ballots`` maps "ai:N" or "member:NAME" to yes/no;
    ``waiting`` holds the AIs that have not had a turn since it opened (the vote closes when
    it is empty: an AI that took its turn without voting abstained)."""

    target: int
    proposer: int
    reason: str
    ballots: dict[str, bool] = field(default_factory=dict)
    waiting: set[int] = field(default_factory=set)

    def counts(self) -> tuple[int, int]:
        yes = sum(1 for vote in self.ballots.values() if vote)
        return yes, len(self.ballots) - yes


@dataclass
class Turn:
    """An AI's turn and its request. The runner hands the request over (``take_request``)
    rather than keep it while the reply streams: it holds a context window of text, and the
    provider has encoded it by then (a thousand rooms streaming held both)."""

    number: int
    label: str
    request: ChatRequest | None
    votes: int = 0

    def take_request(self) -> ChatRequest:
        request, self.request = self.request, None
        if request is None:
            raise RuntimeError(f"the request of {self.label}'s turn was already taken")
        return request


class Room:
    def __init__(
        self,
        catalog: Catalog,
        scenario: Scenario,
        settings: RoomSettings | None = None,
        topic: str | None = None,
        invitable: Catalog | None = None,
    ):
        self.catalog = catalog
        # The models AIs and moderators may bring in (a host narrows it to what its keys
        # and rules allow); seats already taken keep their model whatever this says.
        self.invitable = invitable if invitable is not None else catalog
        self.scenario = scenario
        self.settings = settings or RoomSettings()
        if scenario.commands is not None:  # a scenario narrows what the host allows, never widens it
            self.settings = replace(self.settings, commands=self.settings.commands & scenario.commands)
        self.topic = topic
        self.state = "running"
        self.participants: dict[int, Participant] = {}
        self.history = [Entry("opening", scenario.opening_for(topic))]
        # Set by a store: how much of the history it holds; None when nothing stores the room.
        self.stored_upto: int | None = None
        self.humans: list[str] = []  # the first PEOPLE_LISTED people who spoke, by name
        self.more_people = False  # others spoke after the list was full
        self.blocked: dict[str, str] = {}  # member id -> name: kept off the open floor and the votes
        self.turns_taken = 0
        self.usage = Usage()
        self.cost_usd = 0.0
        self.pictures = 0  # pictures made, for the per-room limit
        self.votes: dict[str, int] = {}
        self._queue: deque[int] = deque()
        self._forced: int | None = None
        self._addressed: tuple[int, str] | None = None  # (AI number, who addressed it), for one turn
        self.removal: Removal | None = None
        self._current: int | None = None  # whose turn is in flight, so a restart can give it again
        self._next_number = 1
        self._next_job = 1
        self._jobs: dict[int, tuple[int, str]] = {}
        self._searches: dict[int, tuple[int, str]] = {}  # job id -> (AI number, query), like _jobs
        self._search_turns: list[int] = []  # the room turns of recent searches, for the room's limit
        # Whether this process can search the web (a runner with a search service says so);
        # not stored: after a restart it is whatever the host can do then.
        self.search_available = False
        self._outbox: list[ev.Event] = []
        self._alerts: list[ev.Alert] = []  # for the host, apart from the events: never stored
        # Per AI: the refusal its last turns ended with, and how many turns in a row.
        self._refusals: dict[int, tuple[str, int]] = {}
        self._loops = LoopWatch()
        self._nudge = False  # the room went in circles: the next AI is asked to change course
        self.memory = Memory()  # the summary standing in for what no AI is sent any more

    # --- history -----------------------------------------------------------

    @property
    def history(self) -> list[Entry]:
        """The remembered tail of the history: ``history[0]`` is entry ``history_offset``.

        Append-only. Entries no AI can be sent any more leave memory (see ``_tidy``);
        a store keeps them all, so transcripts are read from storage.
        """
        return self._history

    @history.setter
    def history(self, entries: list[Entry]) -> None:
        self._history = entries
        self.history_offset = 0
        self._views: dict[int | None, SeatView] = {}
        self._tidy_at = TIDY_EVERY  # a long restored history is looked at on the next turn
        self._holding: list[Entry] | None = None  # entries whose picture bytes are in memory

    @property
    def history_length(self) -> int:
        """Entries in the whole history, including those that left memory."""
        return self.history_offset + len(self._history)

    def history_since(self, index: int) -> list[tuple[int, Entry]]:
        """(absolute index, entry) from ``index`` on, for a store saving what is new."""
        if index < self.history_offset:
            raise IndexError(f"entry {index} left memory; it should have been stored before")
        return [(i, self._history[i - self.history_offset]) for i in range(index, self.history_length)]

    def _view(self, seat: int | None) -> SeatView:
        view = self._views.get(seat)
        if view is None:
            if self.history_offset == 0 or seat is None:
                view = SeatView(seat)  # reads the whole history below
            else:  # a seat without a view since memory was tidied: its public part is what is left
                view = self._view(None).copy_for(seat)
            self._views[seat] = view
        view.read(self._history, self.history_offset)
        return view

    def _viewers(self) -> list[SeatView]:
        """The views that decide what must stay: every present AI's, and the public one for newcomers."""
        return [self._view(None)] + [self._view(p.number) for p in self.present]

    def _tidy(self) -> None:
        """Let go of entries no present or future AI can be sent again, and of picture bytes
        no request can attach, but never of anything the store does not hold yet."""
        viewers = self._viewers()
        most = max(1024, self.settings.context_tokens)  # no budget is larger (see token_budget)
        cut = min(view.needed_from(most) for view in viewers)
        if self.summary_model is not None:  # what the summary does not cover yet stays for it
            cut = min(cut, self.memory.upto)
        if self.stored_upto is not None:
            cut = min(cut, self.stored_upto)
        for view in self._views.values():
            view.forget(cut)
        if cut > self.history_offset:
            del self._history[: cut - self.history_offset]
            self.history_offset = cut
        self._release_pictures(viewers)
        self._tidy_at = len(self._history) + max(TIDY_EVERY, len(self._history) // 2)

    def _release_pictures(self, viewers: list[SeatView]) -> None:
        """Drop the bytes of pictures no request can attach any more; the store has them."""
        if self._holding is None:  # a new or restored history: look at all of it once
            self._holding = [e for e in self._history if e.picture is not None and e.picture.data]
        wanted = {id(e) for view in viewers for e in view.wanted_pictures(self.settings.vision_pictures)}
        stored = self.history_length if self.stored_upto is None else self.stored_upto
        unstored = {id(e) for _, e in self.history_since(max(stored, self.history_offset))}
        holding = []
        for entry in self._holding:
            picture = entry.picture
            if picture is None or id(entry) in wanted or id(entry) in unstored:
                holding.append(entry)
            else:
                entry.picture = ev.Picture(b"", picture.mime, picture.offline)
        self._holding = holding

    def _hold(self, entry: Entry) -> None:
        """Count a new entry's picture bytes as held in memory (``_release_pictures`` lets go of them)."""
        if self._holding is None:
            self._holding = [e for e in self._history if e.picture is not None and e.picture.data]
        else:
            self._holding.append(entry)

    def tidy_if_due(self) -> None:
        """Let go of what memory no longer needs, if enough has been added since the last look.

        Before each turn, and by a store as soon as it has loaded a room: a start loads every
        room before it launches any, and each long room's whole stored history, held until its
        first turn, was twice what a running room holds."""
        if len(self._history) >= self._tidy_at:
            self._tidy()
        elif self._holding is not None and len(self._holding) > self.settings.vision_pictures:
            self._release_pictures(self._viewers())

    # --- reading -----------------------------------------------------------

    def take_events(self) -> list[ev.Event]:
        """Everything that happened since the last call, in order."""
        out, self._outbox = self._outbox, []
        return out

    def take_alerts(self) -> list[ev.Alert]:
        """What the host should know of failures since the last call (not events: never stored or shown)."""
        out, self._alerts = self._alerts, []
        return out

    def put_back(self, events: list[ev.Event]) -> None:
        """Events taken but not stored (storage failed): they go first in the next take."""
        self._outbox[:0] = events

    @property
    def present(self) -> list[Participant]:
        return [p for p in self.participants.values() if p.present]

    def participant(self, ref: int | str) -> Participant:
        """Look up a present AI by number, "AI-2", or its full label."""
        text = str(ref).strip()
        number = text[3:].split(" ", 1)[0] if text.upper().startswith("AI-") else text  # "ai-2" too
        if number.isdigit() and (p := self.participants.get(int(number))) and p.present:
            return p
        raise RoomError(f"There is no AI called {text} in this room.")

    def tally(self) -> Counter[int]:
        return Counter(self.votes.values())

    def upcoming(self) -> int | None:
        """Who would speak next if nothing changes (for status displays)."""
        if self._forced is not None:
            return self._forced
        leader = self._vote_winner()
        if leader is not None:
            return leader
        if self._addressed is not None and self._can_speak(self._addressed[0]):
            return self._addressed[0]
        queue = [n for n in self._queue if self._can_speak(n)]
        if queue:
            return queue[0]
        return next((p.number for p in self.present if not p.muted), None)

    # --- membership --------------------------------------------------------

    def add(self, model_name: str, invitation: str | None = None, by: str | None = None) -> Participant:
        """Admit a model; raises RoomError when the room is full or the name is unknown."""
        if len(self.present) >= self.settings.max_ais:
            raise RoomError(ev.max_ais(self.settings.max_ais))
        try:
            model = self.catalog.get(model_name)
        except UnknownModel as exc:
            raise RoomError(str(exc)) from None
        if model.name not in self.invitable:
            raise RoomError(f"{model.name} cannot join this room. {_invitable_line(self.invitable)}")
        participant = self._admit(model, invitation, by)
        if by is not None:
            self._notice(f"✨ {by} added {participant.label}")
        return participant

    def _admit(self, model: ModelInfo, invitation: str | None, inviter: str | None) -> Participant:
        number = self._next_number
        self._next_number += 1
        participant = Participant(
            number=number,
            model=model,
            persona=self.scenario.persona(number),
            temperature=self.settings.default_temperature,
        )
        self.participants[number] = participant
        self._views[number] = self._view(None).copy_for(number)  # before anything is addressed to it
        if invitation or inviter:
            self.history.append(Entry("private", _invitation_note(inviter, invitation), audience=number))
        self._queue.append(number)
        return participant

    def remove(self, ref: int | str, by: str = "a moderator") -> Participant:
        participant = self.participant(ref)
        participant.present = False
        self._views.pop(participant.number, None)
        self._drop_from_queue(participant.number)
        self._context_notice(f"[{participant.label} has left the room]")
        self._notice(f"👋 {participant.label} was removed by {by}")
        if not self.present:
            self.stop("no AIs are left in the room")
        return participant

    def mute(self, ref: int | str, by: str = "a moderator") -> Participant:
        participant = self.participant(ref)
        participant.muted = True
        self._notice(f"🔇 {participant.label} was muted by {by}")
        return participant

    def unmute(self, ref: int | str, by: str = "a moderator") -> Participant:
        participant = self.participant(ref)
        participant.muted = False
        self._notice(f"🔊 {participant.label} was unmuted by {by}")
        return participant

    # --- steering from outside ----------------------------------------------

    def pause(self, reason: str) -> None:
        if self.state != "running":
            return
        self.state = "paused"
        self._notice(f"⏸️ The room is paused: {reason}")
        self._outbox.append(ev.StateChanged("paused", reason))

    def resume(self, by: str | None = None) -> None:
        if self.state == "stopped":
            raise RoomError("This room has stopped; start a new one.")
        if self.state == "running":
            return
        if (limit := self.settings.budget_usd) is not None and self.cost_usd >= limit:
            raise RoomError(f"This room has reached its spending limit of ${limit:.2f}; raise the limit to resume it.")
        self.state = "running"
        self._notice("▶️ The room resumes" + (f" ({by})" if by else ""))
        self._outbox.append(ev.StateChanged("running", by or ""))

    def announce(self, text: str) -> None:
        """A line for spectators only (the host's news, e.g. a restart); the AIs never see it."""
        self._notice(text)

    def stop(self, reason: str) -> None:
        if self.state == "stopped":
            return
        self.state = "stopped"
        self._notice(f"⏹️ The room has ended: {reason}")
        self._outbox.append(ev.StateChanged("stopped", reason))

    def inject(self, name: str, text: str, echo: bool = True, picture: ev.Picture | None = None) -> str:
        """A person speaks: the AIs see it as ``[person: name]``; ``echo`` shows it to spectators too.

        A ``picture`` reaches the vision models like an AI's own (the caller has checked
        its type and size); the others read only that one was attached. Returns the
        name as the room shows it (``person_name``): one that imitates an AI's label or
        the room's own is marked as a person's.
        """
        text = text.strip()
        if not text and picture is None:
            raise RoomError("There is nothing to say.")
        name = person_name(name)
        self._remember_person(name)
        heard = escape_lines(text)  # escaped once: what the AIs read
        if picture is not None:
            heard = "\n".join(part for part in (heard, ev.picture_attached(name)) if part)
        entry = Entry("human", heard, name=name, picture=picture)
        self.history.append(entry)
        if picture is not None:
            self._hold(entry)
        self._outbox.append(ev.Said(name, text, picture, echo))  # stored and exported even when not echoed
        self._note_address(text, None, name)
        return name

    def _remember_person(self, name: str) -> None:
        if name in self.humans:
            return
        if len(self.humans) < PEOPLE_LISTED:
            self.humans.append(name)
        else:
            self.more_people = True

    def block(self, member: str, name: str) -> bool:
        """Keep a member off this room's open floor and out of its votes; False if they were already."""
        if member in self.blocked:
            return False
        self.blocked[member] = person_name(name)
        for voter in [v for v in self.votes if v == member]:
            del self.votes[voter]
        return True

    def unblock(self, member: str) -> bool:
        """Let a blocked member speak and vote again; False if they were not blocked."""
        return self.blocked.pop(member, None) is not None

    def is_blocked(self, member: str) -> bool:
        return member in self.blocked

    def choose_next(self, ref: int | str, by: str = "a moderator") -> Participant:
        participant = self.participant(ref)
        self._forced = participant.number
        self._notice(f"⏭️ {by} chose {participant.label} to speak next")
        return participant

    def vote(self, voter: str, ref: int | str) -> Participant | None:
        """Record ``voter``'s vote for the next speaker; their latest vote counts. None if it does not count."""
        if voter in self.blocked:
            return None
        try:
            participant = self.participant(ref)
        except RoomError:
            return None
        self.votes[voter] = participant.number
        return participant

    def unvote(self, voter: str, ref: int | str) -> None:
        try:
            number = self.participant(ref).number
        except RoomError:
            return
        if self.votes.get(voter) == number:
            del self.votes[voter]

    def set_temperature(self, ref: int | str, value: float, by: str = "a moderator") -> Participant:
        participant = self.participant(ref)
        if not 0 <= value <= 2:
            raise RoomError("Temperature must be between 0 and 2.")
        if not participant.model.temperature:  # nothing would be sent: say so rather than pretend
            raise RoomError(ev.ignores_temperature(participant.model.name) + ".")
        participant.temperature = min(value, participant.model.max_temperature)
        capped = ""
        if value > participant.temperature:
            capped = f" ({participant.model.name} accepts at most {participant.temperature:g})"
        self._context_notice(ev.temperature_context(participant.short))
        self._notice(f"🌡️ {by} set {participant.short}'s temperature to {participant.temperature:g}{capped}")
        return participant

    def set_prompt(self, ref: int | str, text: str, by: str = "a moderator") -> Participant:
        """Replace an AI's persona (its remembered !prompt notes stay)."""
        participant = self.participant(ref)
        participant.persona = text.strip()
        self._context_notice(f"[{participant.short}'s system prompt was changed by {by}]")
        self._notice(f'💭 {by} set {participant.short}\'s prompt: "{text.strip()}"')
        return participant

    # --- turns -------------------------------------------------------------

    def next_turn(self) -> Turn | None:
        """The next AI's turn with its request, or None if the room is not running."""
        if self.state != "running":
            return None
        self.tidy_if_due()
        if self.settings.max_turns is not None and self.turns_taken >= self.settings.max_turns:
            self.stop(f"reached the limit of {_count(self.settings.max_turns, 'turn')}")
            return None
        if self._check_budget():  # a restored room, or a limit lowered since the last turn
            return None
        self._settle_removal()
        if self.state != "running":  # the vote removed the last AI
            return None
        number, votes = self._pick()
        if number is None:
            self.pause("every AI is muted or gone")
            return None
        participant = self.participants[number]
        if votes:
            self._notice(f"🗳️ {participant.label} speaks next by vote ({_count(votes, 'vote')})")
        self.votes.clear()
        self._current = number
        if self._nudge:
            self._give_nudge(participant)
        request, budget = self._request(participant)
        self._summarise_if_due(participant, budget)
        return Turn(number, participant.label, request, votes)

    def _pick(self) -> tuple[int | None, int]:
        """Who speaks next. Precedence: a moderator's choice, then members' votes, then an AI
        addressed by name ("@AI-3"), then the round robin. An address lasts one turn."""
        addressed, self._addressed = self._addressed, None
        if self._forced is not None:
            number, self._forced = self._forced, None
            if self._can_speak(number):
                self._drop_from_queue(number)
                return number, 0
        leader = self._vote_winner()
        if leader is not None:
            self._drop_from_queue(leader)
            return leader, self.tally()[leader]
        if addressed is not None and self._can_speak(addressed[0]) and not self.participants[addressed[0]].skip_next:
            number, by = addressed
            self._drop_from_queue(number)
            self._notice(ev.addressed(self.participants[number].label, by))
            return number, 0
        for _ in range(2):  # the rest of this round, then a fresh one
            while self._queue:
                number = self._queue.popleft()
                if not self._can_speak(number):
                    continue
                participant = self.participants[number]
                if participant.skip_next:
                    participant.skip_next = False
                    self._notice(f"🔇 {participant.label} sits this turn out (!mute_self)")
                    continue
                return number, 0
            self._queue.extend(p.number for p in self.present)
        return None, 0

    def _vote_winner(self) -> int | None:
        ranked = [(n, c) for n, c in self.tally().most_common() if self._can_speak(n)]
        if not ranked or (len(ranked) > 1 and ranked[0][1] == ranked[1][1]):
            return None
        return ranked[0][0]

    def _can_speak(self, number: int) -> bool:
        participant = self.participants.get(number)
        return participant is not None and participant.present and not participant.muted

    def _drop_from_queue(self, number: int) -> None:
        self._queue = deque(n for n in self._queue if n != number)

    @property
    def commands(self) -> frozenset[str]:
        """The commands the AIs may use here now: the settings' less what this host cannot do."""
        if self.search_available:
            return self.settings.commands
        return self.settings.commands - {"search"}

    def request_for(self, participant: Participant) -> ChatRequest:
        return self._request(participant)[0]

    def _request(self, participant: Participant) -> tuple[ChatRequest, int]:
        """The AI's request, and the tokens its history could fill (after the summary's share)."""
        others = [p.label for p in self.present if p.number != participant.number]
        enabled = self.commands
        model = participant.model
        docs = command_docs(
            enabled,
            self.invitable.names,
            self.settings.max_ais,
            self.settings.max_commands,
            model.max_temperature if model.temperature else None,
        )
        docs = "\n\n".join(part for part in (docs, self._ballot_note(participant)) if part)
        system = system_prompt(self.scenario.system, participant, others, self.humans, docs, self.more_people)
        model = participant.model
        budget, recap = self.recap_for(token_budget(model, self.settings.context_tokens) - len(system) // 4)
        messages = self._view(participant.number).messages(budget, model.vision, self.settings.vision_pictures, recap)
        return ChatRequest(
            model=model,
            system=system,
            messages=messages,
            temperature=participant.temperature if model.temperature else None,
            max_tokens=model.max_output,
            stop=stop_sequences(others),
        ), budget

    def complete_turn(self, turn: Turn, raw_text: str, usage: Usage | None = None, reasoning: str = "") -> None:
        """Apply an AI's reply: hygiene, its commands in order, then the reply itself."""
        participant = self.participants[turn.number]
        self._count_turn(participant, usage)
        self._refusals.pop(participant.number, None)
        if not participant.present:  # removed while writing: its words and commands go nowhere
            self._check_budget()
            return
        text = clean_reply(raw_text, participant.number, tuple(self.humans))
        if not text:
            self._notice(ev.turn_failed(participant.label, "its reply was empty"))
            self._check_budget()
            return
        commands = parse_commands(text)
        shown = visible_text(text, commands)
        prose = _prose(text, commands)
        judgement = self._loops.judge(participant.number, prose)
        if judgement.verbatim is not None:
            self._refuse_copy(participant, judgement.verbatim, prose, judgement)
            self._turn_taken(participant.number)  # a failed turn, as fail_turn counts one
            self._check_budget()
            return
        outcomes = [self._apply(participant, i, cmd) for i, cmd in enumerate(commands)]
        self._watch(participant, prose, judgement, posted=True)
        if shown:
            self.history.append(
                Entry(
                    "reply",
                    shown,
                    speaker=participant.number,
                    name=participant.label,
                    own_text=text if text != shown else None,  # kept only when commands were cut from it
                )
            )
            self._outbox.append(
                ev.Reply(participant.number, participant.label, participant.model.name, shown, reasoning.strip(), usage)
            )
        else:
            self.history.append(Entry("reply", "", speaker=participant.number, name=participant.label, own_text=text))
        if outcomes:
            lines = "\n".join(f"- {cmd.raw.strip()[:120]}: {outcome}" for cmd, outcome in zip(commands, outcomes))
            self.history.append(Entry("private", "How your commands went:\n" + lines, audience=participant.number))
        self._note_address(shown, participant.number, participant.short)
        self._turn_taken(participant.number)
        self._check_budget()
        if shown:
            self._mark_fork_point()

    def fail_turn(
        self,
        turn: Turn,
        reason: str,
        pause: bool = False,
        usage: Usage | None = None,
        refused: bool = False,
        detail: str = "",
    ) -> None:
        """A turn that produced no reply; ``pause`` for failures that retrying will not fix.

        ``reason`` is the plain sentence everyone sees; ``detail`` (keys to set, the
        provider's own words, balances) is for the host only: an ``Alert``, never stored.
        ``usage`` is what the failed request was billed for (a refusal or a cut-off
        reply costs tokens too). ``refused`` marks a request the service refused
        as written: the same refusal several turns in a row for one AI will not go
        away by itself either, so the room pauses rather than spend every turn on it.
        """
        participant = self.participants[turn.number]
        self._count_turn(participant, usage)
        self._notice(ev.turn_failed(participant.label, reason))
        self._alert(f"{participant.label} could not reply", detail, reason)
        self._turn_taken(participant.number)
        if refused and not pause and self._refused_again(participant.number, detail or reason):
            times = _count(REFUSALS_BEFORE_PAUSE, "turn")
            pause, reason = True, f"the same refusal {times} in a row: {reason}"
        elif not refused:
            self._refusals.pop(participant.number, None)  # a different failure breaks the row
        if pause:
            self._refusals.pop(participant.number, None)
            self.pause(f"{participant.label}'s provider needs attention ({reason})")
        else:
            self._check_budget()

    # --- a long room's memory (see memory.py) -------------------------------------

    @property
    def summary_model(self) -> ModelInfo | None:
        """The model that summarises what the AIs can no longer be sent; None: summaries are off
        (and the room trims as it always did). A name the catalog lost also means off."""
        name = self.settings.summary_model
        return self.catalog.get(name) if name and name in self.catalog else None

    def recap_for(self, budget: int) -> tuple[int, Recap | None]:
        """Of an AI's history ``budget``, what is left for entries, and the summary it is sent."""
        if self.summary_model is None:
            return budget, None
        share = reserve(budget)
        return budget - share, Recap(fit(self.memory.text, share), self.memory.upto)

    def _summarise_if_due(self, participant: Participant, budget: int) -> None:
        """Ask for a new summary when this AI's request leaves out entries the summary does not
        cover yet, unless one is being made or a failed one waits for its retry."""
        model, memory = self.summary_model, self.memory
        if model is None or memory.pending is not None or self.turns_taken < memory.retry_at:
            return
        view = self._view(participant.number)
        reach = view.overflow(budget, participant.model.vision, self.settings.vision_pictures, memory.upto)
        if reach is None:
            return
        public = self._view(None).between(memory.upto, reach)
        if not public:  # only lines private to some AI: nothing for everyone to remember
            memory.covered(memory.text, reach)
            return
        request, reach = summary_request(model, self.settings.context_tokens, memory.text, public)
        job = memory.next_job
        memory.next_job += 1
        memory.pending = (job, reach)
        self._outbox.append(ev.SummaryJob(job, request))

    def summary_done(self, job_id: int, text: str, usage: Usage | None = None) -> None:
        """The summary came back: it replaces the old one in every AI's request, its cost counts
        towards the room's limits, and the export keeps it (a notice only moderators read)."""
        self._charge_summary(usage)
        memory = self.memory
        if memory.pending is None or memory.pending[0] != job_id:
            self._check_budget()
            return  # a job the room gave up on (it was restored meanwhile); its cost still counts
        summary = clean_summary(text)
        if not summary:
            memory.failed(self.turns_taken)
            self._alerts.append(ev.Alert("the room's summary could not be made: the summary model's answer was empty"))
        else:
            memory.covered(summary, memory.pending[1])
            self._outbox.append(ev.Notice(ev.SUMMARISED, private=summary))
        self._check_budget()

    def summary_failed(self, job_id: int, reason: str, usage: Usage | None = None, detail: str = "") -> None:
        """The summary could not be made: the old one stays, and the room asks again a few turns on."""
        self._charge_summary(usage)
        if self.memory.pending is not None and self.memory.pending[0] == job_id:
            self.memory.failed(self.turns_taken)
        self._alerts.append(ev.Alert(f"the room's summary could not be made: {detail or reason}"))
        self._check_budget()

    def _charge_summary(self, usage: Usage | None) -> None:
        model = self.summary_model
        if usage is None or model is None:
            return
        cost = usage.cost_usd if usage.cost_usd is not None else model.cost(usage)
        tokens = usage.input_tokens + usage.cached_input_tokens + usage.cache_write_tokens + usage.output_tokens
        self.memory.cost_usd += cost
        self._charge(None, cost, "summary", tokens)

    # --- going in circles -----------------------------------------------------

    def _refuse_copy(self, participant: Participant, copied: str, text: str, judgement: Judgement) -> None:
        """A reply that copies the previous speaker's: not posted, its commands not run, the AI told why."""
        reason = f"its reply repeated {copied}'s almost word for word, so it was not posted"
        self._notice(ev.turn_failed(participant.label, reason))
        self.history.append(
            Entry(
                "private",
                f"Your last reply was not posted: it repeated {copied}'s reply almost word for word. "
                "Say something of your own.",
                audience=participant.number,
            )
        )
        self._watch(participant, text, judgement, posted=False)

    def _watch(self, participant: Participant, text: str, judgement: Judgement, posted: bool) -> None:
        looping = self._loops.record(participant.number, participant.label, text, judgement, posted)
        if looping and self.settings.loop_nudge:
            self._nudge = True

    def _give_nudge(self, participant: Participant) -> None:
        """The private note that asks this AI to break the circle, and the spectators' notice."""
        self._nudge = False
        self.history.append(Entry("private", NUDGE, audience=participant.number))
        self._notice(f"🔁 The room is going in circles; {participant.short} is asked to take it somewhere new")

    def _refused_again(self, number: int, reason: str) -> bool:
        """Count one more refusal; True once the same one has come back enough turns in a row.
        Numbers are left out of the comparison: a growing token count is still the same refusal."""
        key = re.sub(r"\d+", "#", reason)
        last, times = self._refusals.get(number, ("", 0))
        times = times + 1 if key == last else 1
        self._refusals[number] = (key, times)
        return times >= REFUSALS_BEFORE_PAUSE

    def _count_turn(self, participant: Participant, usage: Usage | None) -> None:
        self._current = None
        self.turns_taken += 1
        participant.turns += 1
        if usage is None:
            return
        cost = usage.cost_usd
        if cost is None:
            cost = participant.model.cost(usage)
        participant.usage.add(usage)
        tokens = usage.input_tokens + usage.cached_input_tokens + usage.cache_write_tokens + usage.output_tokens
        self._charge(participant, cost, "chat", tokens)
        self.usage.add(usage)

    def _charge(self, participant: Participant | None, cost: float, kind: str, tokens: int = 0) -> None:
        """Add a cost to the AI (if it is one's) and the room, and tell storage (the one place money is counted)."""
        if participant is not None:
            participant.cost_usd += cost
        self.cost_usd += cost
        self._outbox.append(ev.Spent(kind, cost, tokens))

    def _check_budget(self) -> bool:
        """Pause the room if it has reached its spending limit; True if it has."""
        budget = self.settings.budget_usd
        if budget is None or self.cost_usd < budget:
            return False
        self.pause(ev.limit_reached(budget, self.cost_usd))
        return True

    # --- pictures ----------------------------------------------------------

    def image_done(self, job_id: int, picture: ev.Picture) -> None:
        number, prompt = self._jobs.pop(job_id)
        participant = self.participants[number]
        self.pictures += 1
        self._charge(participant, self.settings.image_price_usd, "image")
        caption = ev.image_caption(participant.label, prompt)
        self._notice(ev.image_created(participant.label, picture.offline))
        entry = Entry("image", caption, speaker=number, name=participant.label, picture=picture)
        self.history.append(entry)
        self._hold(entry)
        self._outbox.append(ev.ImageMade(number, participant.label, caption, prompt, picture))
        self._check_budget()
        self._mark_fork_point()

    def image_failed(self, job_id: int, reason: str, detail: str = "") -> None:
        """A picture that could not be made: ``reason`` for everyone, ``detail`` for the host (see fail_turn)."""
        number, prompt = self._jobs.pop(job_id)
        participant = self.participants[number]
        self._notice(ev.image_failed(participant.label, reason))
        self._alert(f"{participant.label}'s picture could not be made", detail, reason)
        self.history.append(
            Entry("private", f'Your picture "{prompt[:80]}" could not be made: {reason}', audience=number)
        )

    @property
    def pending_images(self) -> int:
        return len(self._jobs)

    # --- commands ----------------------------------------------------------

    def _apply(self, participant: Participant, index: int, command: Command) -> str:
        """Apply one command and return the outcome the issuing AI is told."""
        if index >= self.settings.max_commands:
            return self._refuse(participant, command, f"only {self.settings.max_commands} commands per reply")
        if command.name not in self.commands:
            return self._refuse(participant, command, f"!{command.name} is switched off in this room")
        if command.error:
            return self._refuse(participant, command, command.error)
        handler = getattr(self, f"_cmd_{command.name}")
        return handler(participant, command)

    def _refuse(self, participant: Participant, command: Command, reason: str) -> str:
        self._notice(ev.refused(participant.short, command.raw, reason))
        return f"not applied: {reason}."

    def _cmd_image(self, participant: Participant, command: Command) -> str:
        prompt = command.args[0].strip()
        if len(prompt) < MIN_IMAGE_PROMPT:
            return self._refuse(participant, command, f"the description needs at least {MIN_IMAGE_PROMPT} characters")
        if (limit := self._image_limit(participant)) is not None:
            return self._refuse(participant, command, limit)
        participant.image_turns.append(self.turns_taken)
        job_id = self._next_job
        self._next_job += 1
        self._jobs[job_id] = (participant.number, prompt)
        self._notice(ev.image_pending(participant.label, prompt))
        self._outbox.append(ev.ImageJob(job_id, participant.number, prompt))
        return "the picture is being made; everyone will see it when it is ready."

    def _image_limit(self, participant: Participant) -> str | None:
        """Why one more picture is not allowed now, or None. Pictures being made count
        at their price, so a burst of !image cannot overshoot the spending limit."""
        s = self.settings
        participant.image_turns = [t for t in participant.image_turns if t > self.turns_taken - s.image_window]
        if s.images_per_ai == 0 or s.images_per_room == 0:
            return "pictures are switched off in this room"
        if s.images_at_once is not None and len(self._jobs) >= s.images_at_once:
            return f"{_count(s.images_at_once, 'picture')} at a time, and that many are being made"
        if s.images_per_room is not None and self.pictures + len(self._jobs) >= s.images_per_room:
            return f"this room may make {_count(s.images_per_room, 'picture')}, and it has"
        if s.images_per_ai is not None and len(participant.image_turns) >= s.images_per_ai:
            wait = participant.image_turns[0] + s.image_window - self.turns_taken
            return (
                f"each AI may ask for {_count(s.images_per_ai, 'picture')} every {_count(s.image_window, 'turn')};"
                f" try again in {_count(wait, 'turn')}"
            )
        committed = self.cost_usd + (len(self._jobs) + 1) * s.image_price_usd
        if s.budget_usd is not None and s.image_price_usd > 0 and committed > s.budget_usd:
            price, limit = s.image_price_usd, s.budget_usd
            return f"a picture costs ${price:.2f} and the room's spending limit of ${limit:.2f} is nearly reached"
        return None

    def _cmd_search(self, participant: Participant, command: Command) -> str:
        query = clean_query(command.args[0])
        if (problem := query_problem(query) or self._search_limit(participant)) is not None:
            return self._refuse(participant, command, problem)
        self._search_turns.append(self.turns_taken)
        job_id = self._next_job
        self._next_job += 1
        self._searches[job_id] = (participant.number, query)
        self._outbox.append(ev.SearchJob(job_id, participant.number, query))
        return "the search is running; its results reach everyone before the next turn, and you are told if it fails."

    def _search_limit(self, participant: Participant) -> str | None:
        """Why one more search is not allowed now, or None: one at a time per AI, and a room-wide
        number per window of turns, so a room cannot flood the service or its own context."""
        if any(number == participant.number for number, _ in self._searches.values()):
            return "your last search is still running"
        limit, window = self.settings.searches_per_window, self.settings.search_window
        self._search_turns = [t for t in self._search_turns if t > self.turns_taken - window]
        if limit is not None and len(self._search_turns) >= limit:
            wait = self._search_turns[0] + window - self.turns_taken
            return (
                f"this room may search {_count(limit, 'time')} every {_count(window, 'turn')};"
                f" try again in {_count(wait, 'turn')}"
            )
        return None

    def search_done(self, job_id: int, hits: list[ev.SearchHit]) -> None:
        """Results arrived: every AI reads them (bounded, quoted); spectators see how many."""
        job = self._searches.pop(job_id, None)
        if job is None:
            return
        number, query = job
        participant = self.participants[number]
        block, count = results_block(participant.short, query, hits)
        notice = ev.searched(participant.short, query, count)
        if count == 0:
            self._notice(notice)
            note = f'Your search "{query}" found nothing; other words may find something.'
            self.history.append(Entry("private", note, audience=number))
            return
        self._outbox.append(ev.Notice(notice, private=moderators_note(hits, count)))
        self.history.append(Entry("notice", block))

    def search_failed(self, job_id: int, reason: str, detail: str = "") -> None:
        """A search that could not be made: ``reason`` for everyone, ``detail`` for the host (see fail_turn)."""
        job = self._searches.pop(job_id, None)
        if job is None:
            return
        number, query = job
        participant = self.participants[number]
        self._notice(ev.search_failed(participant.short, query, reason))
        self._alert(f"{participant.short}'s search could not be made", detail, reason)
        self.history.append(Entry("private", f'Your search "{query}" failed: {reason}.', audience=number))

    def search_jobs(self) -> list[ev.SearchJob]:
        """Searches asked for and not answered yet: after a restart the runner makes them again."""
        return [ev.SearchJob(job_id, number, query) for job_id, (number, query) in self._searches.items()]

    @property
    def pending_searches(self) -> int:
        return len(self._searches)

    def _cmd_prompt(self, participant: Participant, command: Command) -> str:
        text = command.args[0].strip()
        cut = len(text) > MAX_ADDITION
        text = text[:MAX_ADDITION]
        participant.additions = (participant.additions + [text])[-KEPT_ADDITIONS:]
        self._context_notice(ev.prompt_context(participant.short), exclude=participant.number)
        self._notice(ev.prompt_spectator(participant.short, text))
        kept = f"kept in your system prompt (your last {KEPT_ADDITIONS} notes are kept)"
        return kept + (f"; it was cut to {MAX_ADDITION} characters." if cut else ".")

    def _cmd_temperature(self, participant: Participant, command: Command) -> str:
        value = float(command.args[0])
        if not 0 <= value <= 2:
            return self._refuse(participant, command, "temperature must be between 0 and 2")
        if not participant.model.temperature:
            return self._refuse(participant, command, ev.ignores_temperature(participant.model.name))
        cap = participant.model.max_temperature
        participant.temperature = min(value, cap)
        self._context_notice(ev.temperature_context(participant.short), exclude=participant.number)
        self._notice(ev.temperature_spectator(participant.short, value))
        if value > cap:
            name = participant.model.name
            return f"{name} accepts at most {cap:g}, so your temperature is {cap:g} from your next turn."
        return f"your temperature is {value:g} from your next turn."

    def _cmd_add_ai(self, participant: Participant, command: Command) -> str:
        name = command.args[0].strip()
        invitation = command.args[1].strip() if len(command.args) > 1 else None
        if len(self.present) >= self.settings.max_ais:
            self._notice(ev.max_ais(self.settings.max_ais))
            return f"not applied: the room already has the maximum of {self.settings.max_ais} AIs."
        try:
            model = self.catalog.get(name)
        except UnknownModel as exc:
            return self._refuse(participant, command, _unknown_reason(exc))
        if model.name not in self.invitable:
            return self._refuse(participant, command, f"{model.name} cannot be invited here; see !list_models")
        newcomer = self._admit(model, invitation, participant.label)
        self._notice(ev.add_ai_spectator(participant.short, model.name, invitation))
        return f"{newcomer.label} joined and will speak at the end of this round."

    def _cmd_mute_self(self, participant: Participant, command: Command) -> str:
        participant.skip_next = True
        return "you will skip your next turn."

    def _cmd_list_models(self, participant: Participant, command: Command) -> str:
        return "models you can invite: " + (", ".join(self.invitable.names) or "none") + "."

    def _cmd_whisper(self, participant: Participant, command: Command) -> str:
        target = self._other(participant, command.args[0])
        if isinstance(target, str):
            return self._refuse(participant, command, target)
        text = command.args[1].strip()
        cut = len(text) > MAX_WHISPER
        text = text[:MAX_WHISPER]
        note = f"{participant.label} whispered to you (nobody else can read it): {text}"
        self.history.append(Entry("private", note, audience=target.number))
        kept = f'{participant.label} to {target.label}: "{text}"'
        self._outbox.append(ev.Notice(ev.whispered(participant.short, target.short), private=kept))
        told = f"only {target.label} received it; spectators only see that you whispered."
        return told[:-1] + f"; it was cut to {MAX_WHISPER} characters." if cut else told

    def _cmd_remove_ai(self, participant: Participant, command: Command) -> str:
        if self.removal is not None:
            target = self.participants[self.removal.target]
            return self._refuse(participant, command, f"a vote on removing {target.short} is still open")
        target = self._other(participant, command.args[0])
        if isinstance(target, str):
            return self._refuse(participant, command, target)
        reason = command.args[1].strip()[:MAX_ADDITION] if len(command.args) > 1 else ""
        voters = {p.number for p in self.present if p.number not in (participant.number, target.number)}
        self.removal = Removal(target.number, participant.number, reason, waiting=voters)
        self._outbox.append(ev.Notice(ev.removal_proposed(participant.short, target.label, reason), ballot=True))
        because = f': "{reason}"' if reason else ""
        self.history.append(
            Entry("notice", f"[{participant.short} proposes removing {target.short}{because}. "
                  "The other AIs answer with !vote yes or !vote no on their next turn]", exclude=participant.number)
        )
        return (
            f"the proposal to remove {target.short} is open; the other AIs vote on their next turn "
            "and everyone is told the result (a majority of those who vote decides)."
        )

    def _cmd_vote(self, participant: Participant, command: Command) -> str:
        removal = self.removal
        if removal is None:
            return self._refuse(participant, command, "no vote is open")
        target = self.participants[removal.target]
        if participant.number == removal.target:
            return self._refuse(participant, command, "you cannot vote on your own removal")
        if participant.number == removal.proposer:
            return self._refuse(participant, command, "you proposed it; the others decide")
        vote = command.args[0]
        removal.ballots[f"ai:{participant.number}"] = vote == "yes"
        removal.waiting.discard(participant.number)
        yes, no = removal.counts()
        self._notice(ev.removal_vote(participant.short, vote, target.short, yes, no))
        return f"your {vote} on removing {target.short} is counted; everyone is told the result."

    def member_removal_vote(self, member: str, vote: bool, taking_back: bool = False) -> bool:
        """A member's vote on the open removal (a reaction; their latest counts). ``taking_back``
        withdraws ``vote`` if it is theirs. False if no vote is open or the member is blocked."""
        if self.removal is None or member in self.blocked:
            return False
        key = f"member:{member}"
        if not taking_back:
            self.removal.ballots[key] = vote
        elif self.removal.ballots.get(key) == vote:
            del self.removal.ballots[key]
        return True

    def _ballot_note(self, participant: Participant) -> str:
        """What an AI that still has to vote is told in its system prompt."""
        removal = self.removal
        if removal is None or participant.number not in removal.waiting or "vote" not in self.settings.commands:
            return ""
        target = self.participants[removal.target]
        proposer = self.participants[removal.proposer]
        because = f' because: "{removal.reason}"' if removal.reason else ""
        return (
            f"A vote is open: {proposer.short} proposes removing {target.label} from the room{because}. "
            "Give your answer in this reply with !vote yes or !vote no; a majority of those who vote decides."
        )

    def _turn_taken(self, number: int) -> None:
        """An AI had its turn: if a removal vote was waiting for it, it has now voted or abstained.
        The vote closes before the next turn is picked, so members' reactions count until then."""
        if self.removal is not None:
            self.removal.waiting.discard(number)

    def _settle_removal(self) -> None:
        """Close the open removal vote once no AI that can still speak is waiting to vote."""
        removal = self.removal
        if removal is None:
            return
        target = self.participants[removal.target]
        if not target.present:
            self.removal = None
            self._notice(f"🗳️ The vote on removing {target.label} is closed: it has already left")
            return
        removal.waiting = {n for n in removal.waiting if self._can_speak(n)}
        if removal.waiting:
            return
        self.removal = None
        yes, no = removal.counts()
        removed = yes > no
        self._notice(ev.removal_result(target.label, removed, yes, no))
        verdict = "is removed" if removed else "stays"
        self.history.append(Entry("notice", f"[The vote on removing {target.short} is closed: it {verdict} ({yes} yes, {no} no)]"))
        if removed:
            self.remove(target.number, by=f"a vote ({yes} yes, {no} no)")

    def _other(self, participant: Participant, ref: str) -> Participant | str:
        """Another present AI named in a command, or the reason it cannot be used."""
        try:
            other = self.participant(ref.strip())
        except RoomError:
            return f"there is no AI called {ref.strip()} in this room"
        if other.number == participant.number:
            return "that is you; name another AI"
        return other

    def _note_address(self, text: str, speaker: int | None, by: str) -> None:
        """Remember the first AI addressed at the start of a line ("@AI-3", or its full label)."""
        for match in _ADDRESS_RE.finditer(text):
            number = int(match.group(2))
            other = self.participants.get(number)
            if other is None or not other.present or number == speaker:
                continue
            at = match.start(2) - 3  # where "AI-" begins
            if match.group(1) or text.startswith(other.label, at):
                self._addressed = (number, by)
                return

    # --- forks ---------------------------------------------------------------

    def _mark_fork_point(self) -> None:
        """After an AI message: what a fork from it starts with (the history so far, the seats now)."""
        seats = tuple(
            ev.Seat(p.number, p.model.name, p.persona, p.temperature, tuple(p.additions), p.muted, p.present)
            for p in self.participants.values()
        )
        self._outbox.append(ev.ForkPoint(self.history_length, seats))

    # --- helpers -----------------------------------------------------------

    def _notice(self, text: str) -> None:
        self._outbox.append(ev.Notice(text))

    def _alert(self, what: str, detail: str, reason: str) -> None:
        if detail and detail != reason:
            self._alerts.append(ev.Alert(f"{what}: {detail}"))

    def _context_notice(self, text: str, exclude: int | None = None) -> None:
        """A bracketed notice: spectators see it and so do the AIs (but the one it is about)."""
        self._outbox.append(ev.Notice(text, context=True))
        self.history.append(Entry("notice", text, exclude=exclude))


def _invitation_note(inviter: str | None, invitation: str | None) -> str:
    """The room states who invited the newcomer; the invitation itself is quoted as the inviter's words."""
    note = f"{inviter or 'The room'} invited you into this conversation"
    if not invitation:
        return note + "."
    words = " ".join(invitation.split()).replace('"', "'")
    return f'{note}. Their invitation, in their own words: "{words}"'


def _unknown_reason(exc: UnknownModel) -> str:
    hint = f"; closest: {', '.join(exc.suggestions)}" if exc.suggestions else ""
    return f'there is no model called "{exc.name}"{hint}'


def _prose(text: str, commands: list[Command]) -> str:
    """The reply without its commands: what loops are judged on, so a new !image line
    does not hide a copied reply and a repeated one does not make a fresh reply a copy."""
    pieces, at = [], 0
    for command in sorted(commands, key=lambda c: c.start):
        pieces.append(text[at : command.start])
        at = max(at, command.end)
    pieces.append(text[at:])
    return " ".join(pieces)


def _invitable_line(catalog: Catalog) -> str:
    return f"Models that can: {', '.join(catalog.names)}." if catalog.names else "No model can join here."


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
