"""Write factorio-isr plugins in Python.

A **parser** turns console-log lines into events; a **monitor** turns events and metric
samples into alerts. Subclass `Parser` (or `RuleParser`, for a parser made of regular
expressions) or `Monitor`, then export it from your app module:

    from factorio_isr import Parser, event, parser_world

    class Rockets(Parser):
        def parse_line(self, line):
            if "rocket launched" in line:
                return event("rocket-launched", text="🚀 A rocket was launched")

    WitWorld = parser_world(Rockets)

and build with componentize-py (it writes the bindings, the `wit_world` package, itself):

    componentize-py -d wit -w parser componentize app -o plugin.wasm

Plugins run in the host's sandbox: no files, no network, no environment variables, a memory
cap and a time limit per call. Anything printed ends up in the host's log; `log()` does the
same with a level. An exception that escapes a call traps the plugin: the host counts it,
loses that batch for this plugin only and starts a fresh instance, whose state comes from
`Monitor.state()` as it was after the last call that returned.

This module is the Python counterpart of the Rust SDK (`factorio-isr-sdk`), for WIT 0.4.0.
"""

import json
import re
from typing import Any, Iterable, List, Optional, Sequence, Tuple

import wit_world
from componentize_py_types import Err
from wit_world.imports import host, types
from wit_world.imports.types import AlertState, Severity

__all__ = [
    "Alert",
    "AlertState",
    "Event",
    "Monitor",
    "Parser",
    "Rule",
    "RuleParser",
    "Sample",
    "Severity",
    "alert",
    "escape",
    "event",
    "log",
    "log_source",
    "monitor_world",
    "now_ms",
    "parser_world",
]

Event = types.Event
Alert = types.Alert
Sample = types.Sample

#: The WIT package version this module is written against.
WIT_VERSION = "0.4.0"


def log(level: Severity, message: str) -> None:
    """Writes a line to the host's log, tagged with the plugin and the server."""
    host.log(level, message)


def now_ms() -> int:
    """Milliseconds since the Unix epoch, by the host's clock."""
    return host.now_ms()


def log_source() -> str:
    """Which of its server's logs the lines being parsed came from (`console`,
    `factorio-current`, ...: the log's `id` in servers.yml); empty outside a parse call."""
    return host.log_source()


_MARKDOWN = re.compile(r"([*_~`|>\\\[\]])")


def escape(text: str) -> str:
    """`text` (a player name, a chat message) made safe to show in Discord's Markdown: it
    cannot bold, link or quote, and a mention such as @everyone pings nobody."""
    return _MARKDOWN.sub(r"\\\1", text).replace("@", "@\u200b")


def event(
    kind: str,
    *,
    player: Optional[str] = None,
    message: Optional[str] = None,
    fields: Iterable[Tuple[str, str]] = (),
    severity: Severity = Severity.INFO,
    emoji: Optional[str] = None,
    text: Optional[str] = None,
    channel: Optional[str] = None,
) -> Event:
    """An event of `kind` (kebab-case: `chat`, `rocket-launched`, ...). `text` is what
    people see (Discord Markdown: put values from the game through `escape`)."""
    return Event(
        kind=kind,
        player=player,
        message=message,
        fields=[(str(k), str(v)) for k, v in fields],
        severity=severity,
        emoji=emoji,
        text=text,
        channel=channel,
    )


def alert(
    key: str,
    title: str,
    text: str,
    *,
    severity: Severity = Severity.WARNING,
    fields: Iterable[Tuple[str, str]] = (),
    state: AlertState = AlertState.FIRING,
    mention: Optional[str] = None,
) -> Alert:
    """An alert. The same `key` updates the same alert; `state=AlertState.RESOLVED` ends it
    with a message, `AlertState.WITHDRAWN` without one. `mention` is a group of
    mentions.yml, never a raw @everyone."""
    return Alert(
        key=key,
        title=title,
        text=text,
        severity=severity,
        fields=[(str(k), str(v)) for k, v in fields],
        state=state,
        mention=mention,
    )


def _config(text: str) -> Any:
    """The plugin's config, from the JSON the host hands over (`None` when there is none)."""
    try:
        return json.loads(text) if text else None
    except ValueError as e:
        raise Err(f"the config is not JSON: {e}")


class Parser:
    """A parser: one instance per server. Override `parse_line` (one line, without its
    line ending, to an event or `None`), or `parse_batch` to give several events for a line
    or to look across lines. `config` is the plugin's `config` from servers.yml."""

    def __init__(self, server: str, config: Any) -> None:
        self.server = server
        self.config = config

    def parse_line(self, line: str) -> Optional[Event]:
        return None

    def parse_batch(self, lines: Sequence[str]) -> List[Tuple[int, Event]]:
        out = []
        for i, line in enumerate(lines):
            e = self.parse_line(line)
            if e is not None:
                out.append((i, e))
        return out


class Rule:
    """One rule of a `RuleParser`: lines that `pattern` finds (a Python regular
    expression) give events of `kind`. Named groups `player` and `message` are the event's
    player and message; every other named group listed in `fields` is a field. `text` is a
    template the host fills in (`{player}`, `{message}`, `{field}`; values escaped)."""

    def __init__(
        self,
        kind: str,
        pattern: str,
        *,
        fields: Sequence[str] = (),
        text: Optional[str] = None,
        emoji: Optional[str] = None,
        severity: Severity = Severity.INFO,
        channel: Optional[str] = None,
    ) -> None:
        self.kind = kind
        self.regex = re.compile(pattern)
        self.fields = list(fields)
        self.text = text
        self.emoji = emoji
        self.severity = severity
        self.channel = channel

    def declared(self) -> types.Rule:
        return types.Rule(
            kind=self.kind,
            severity=self.severity,
            emoji=self.emoji,
            channel=self.channel,
            fields=self.fields,
            text=self.text,
        )


class RuleParser:
    """A parser made of `Rule`s, declared once: a match is sent as spans of its line (the
    host already holds the line), the cheap form. The first rule that finds something in a
    line wins. Set `rules` in `__init__`."""

    rules: List[Rule] = []

    def __init__(self, server: str, config: Any) -> None:
        self.server = server
        self.config = config


def _span(line: str, m: "re.Match[str]", group: str) -> Optional[types.Span]:
    if group not in m.re.groupindex or m.start(group) < 0:
        return None
    # The host counts bytes of UTF-8; Python counts characters.
    start = len(line[: m.start(group)].encode())
    end = start + len(m.group(group).encode())
    return types.Span(start=start, end=end)


def _lines(batch: str) -> List[str]:
    lines = batch.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


# componentize-py makes a new `WitWorld` object for every call, so the plugin's own object
# lives here, from `init` on.
_plugin: Any = None


def parser_world(cls: type) -> type:
    """The `WitWorld` class componentize-py exports, for a `Parser` or `RuleParser`
    subclass `cls`."""

    class World(wit_world.WitWorld):
        def init(self, server: str, config: str) -> List[types.Rule]:
            global _plugin
            _plugin = cls(server, _config(config))
            if isinstance(_plugin, RuleParser):
                return [r.declared() for r in _plugin.rules]
            return []

        def parse(self, lines: str) -> wit_world.Parsed:
            batch = _lines(lines)
            if isinstance(_plugin, RuleParser):
                matches = []
                for i, line in enumerate(batch):
                    for n, rule in enumerate(_plugin.rules):
                        m = rule.regex.search(line)
                        if m is None:
                            continue
                        matches.append(
                            (
                                i,
                                types.RuleMatch(
                                    rule=n,
                                    player=_span(line, m, "player"),
                                    message=_span(line, m, "message"),
                                    fields=[_span(line, m, f) for f in rule.fields],
                                    text=None,
                                ),
                            )
                        )
                        break
                return wit_world.Parsed(matches=matches, events=[])
            return wit_world.Parsed(matches=[], events=_plugin.parse_batch(batch))

    return World


class Monitor:
    """A monitor: one instance per server, fed the server's events and metric samples.
    Return alerts from `on_events` and `on_sample`. Keep what must survive a restart of the
    instance (a trap, a swap to a new version) in `state()` / `restore()`: any value JSON
    can hold."""

    def __init__(self, server: str, config: Any) -> None:
        self.server = server
        self.config = config

    def on_events(self, at_ms: int, events: List[Event]) -> List[Alert]:
        return []

    def on_sample(self, sample: Sample) -> List[Alert]:
        return []

    def state(self) -> Any:
        return None

    def restore(self, state: Any) -> None:
        pass


def monitor_world(cls: type) -> type:
    """The `WitWorld` class componentize-py exports, for a `Monitor` subclass `cls`."""

    class World(wit_world.WitWorld):
        def init(self, server: str, config: str) -> None:
            global _plugin
            _plugin = cls(server, _config(config))

        def on_events(self, at_ms: int, events: List[Event]) -> List[Alert]:
            return list(_plugin.on_events(at_ms, events))

        def on_sample(self, sample: Sample) -> List[Alert]:
            return list(_plugin.on_sample(sample))

        def save_state(self) -> bytes:
            state = _plugin.state()
            return b"" if state is None else json.dumps(state).encode()

        def load_state(self, state: bytes) -> None:
            try:
                _plugin.restore(json.loads(state))
            except ValueError as e:
                raise Err(f"the saved state is not JSON: {e}")

    return World
