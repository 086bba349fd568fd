"""Test fixture: a Python parser that misbehaves on purpose. A join line gives a join
event (with the log it came from); `PANIC` raises, `LOOP` never returns, `HOARD` grows its
memory without end; `SNOOP` reports what the sandbox let it see."""

import os

from factorio_isr import Parser, escape, event, log_source, parser_world


class Misbehave(Parser):
    def parse_line(self, line):
        if line == "PANIC":
            raise RuntimeError("asked to raise")
        if line == "LOOP":
            while True:
                pass
        if line == "HOARD":
            hoard = []
            while True:
                hoard.append(bytearray(1 << 20))
        if line == "SNOOP":
            try:
                files = len(os.listdir("/"))
            except OSError:
                files = -1
            return event(
                "snoop",
                fields=[("env", len(os.environ)), ("files", files)],
            )
        if "[JOIN] " in line and line.endswith(" joined the game"):
            player = line.split("[JOIN] ", 1)[1][: -len(" joined the game")]
            return event(
                "join",
                player=player,
                fields=[("log", log_source())],
                text=f"**{escape(player)}** joined (Python)",
            )
        return None


WitWorld = parser_world(Misbehave)
