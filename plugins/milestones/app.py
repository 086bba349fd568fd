"""Milestones: a stock example monitor written in Python.

It announces a server's milestones in Discord, once each: the 1st, 10th, 100th... rocket
launched, a player's 10th, 100th... hour on the server, and the most players ever online
together passing 10, 25, 50. Rockets come from `rocket-launched` events (a pack such as
`server-protocol`, or a pattern of your own); hours and players from the metrics engine's
samples. What it has counted survives a trap, a restart of the host and a swap to a new
version, through `state()` / `restore()`.

Config (all optional): {"rockets": [1, 10, 100], "hours": [10, 100], "online": [10, 25]}.
"""

from factorio_isr import (
    AlertState,
    Monitor,
    Severity,
    alert,
    escape,
    monitor_world,
)

DEFAULTS = {
    "rockets": [1, 10, 100, 1000],
    "hours": [10, 100, 1000],
    "online": [10, 25, 50],
}

#: A gap between two samples longer than this is not counted as time played (the host
#: was down, or RCON was).
LONGEST_GAP_MS = 10 * 60 * 1000
#: Most players whose time is kept.
MAX_PLAYERS = 10_000


def ordinal(n: int) -> str:
    if 10 <= n % 100 <= 20:
        return f"{n}th"
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th') }"


def thresholds(config: dict, name: str) -> list:
    values = config.get(name, DEFAULTS[name])
    if not isinstance(values, list) or not all(
        isinstance(v, int) and v > 0 for v in values
    ):
        raise ValueError(f"`{name}` must be a list of positive whole numbers")
    return sorted(set(values))


class Milestones(Monitor):
    def __init__(self, server, config):
        super().__init__(server, config)
        config = config or {}
        if not isinstance(config, dict):
            raise ValueError("the config is an object: {rockets, hours, online}")
        unknown = set(config) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(sorted(unknown))}")
        self.rockets_at = thresholds(config, "rockets")
        self.hours_at = thresholds(config, "hours")
        self.online_at = thresholds(config, "online")
        self.rockets = 0
        self.played_ms = {}
        self.most_online = 0
        self.announced = set()
        # Announcements are alerts that are withdrawn at the next call: told once, then
        # closed without a second message.
        self.to_close = []
        self.last_sample = None

    def announce(self, key, title, text):
        if key in self.announced:
            return []
        self.announced.add(key)
        self.to_close.append(key)
        return [alert(key, title, text, severity=Severity.NOTICE)]

    def closing(self):
        out = [alert(k, "", "", state=AlertState.WITHDRAWN) for k in self.to_close]
        self.to_close = []
        return out

    def on_events(self, at_ms, events):
        out = self.closing()
        for e in events:
            if e.kind != "rocket-launched":
                continue
            count = dict(e.fields).get("count", "")
            self.rockets = int(count) if count.isdigit() else self.rockets + 1
            for m in self.rockets_at:
                if self.rockets >= m:
                    out += self.announce(
                        f"milestone:rockets:{m}",
                        f"🚀 The {ordinal(m)} rocket",
                        f"{self.server} launched its {ordinal(m)} rocket.",
                    )
        return out

    def on_sample(self, sample):
        out = self.closing()
        if not sample.rcon_up:
            self.last_sample = None
            return out
        if self.last_sample is not None:
            at, before = self.last_sample
            gap = sample.at_ms - at
            if 0 < gap <= LONGEST_GAP_MS:
                for p in sample.players:
                    if p not in before:
                        continue
                    if p not in self.played_ms and len(self.played_ms) >= MAX_PLAYERS:
                        continue
                    self.played_ms[p] = self.played_ms.get(p, 0) + gap
                    hours = self.played_ms[p] // 3_600_000
                    for m in self.hours_at:
                        if hours >= m:
                            out += self.announce(
                                f"milestone:hours:{p}:{m}",
                                f"⏱️ {m} hours",
                                f"**{escape(p)}** has played {m} hours on {self.server}.",
                            )
        self.last_sample = (sample.at_ms, set(sample.players))
        online = len(sample.players)
        self.most_online = max(self.most_online, online)
        for m in self.online_at:
            if online >= m:
                out += self.announce(
                    f"milestone:online:{m}",
                    f"👥 {m} players at once",
                    f"{online} players are on {self.server} together.",
                )
        return out

    def state(self):
        return {
            "rockets": self.rockets,
            "played_ms": self.played_ms,
            "most_online": self.most_online,
            "announced": sorted(self.announced),
            "to_close": self.to_close,
        }

    def restore(self, state):
        self.rockets = int(state.get("rockets", 0))
        self.played_ms = {str(k): int(v) for k, v in state.get("played_ms", {}).items()}
        self.most_online = int(state.get("most_online", 0))
        self.announced = set(state.get("announced", []))
        self.to_close = list(state.get("to_close", []))


WitWorld = monitor_world(Milestones)
