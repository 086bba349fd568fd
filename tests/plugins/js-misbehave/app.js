// Test fixture: a JavaScript parser that misbehaves on purpose. A join line gives a join
// event (with the log it came from, and "js" as its version); `PANIC` throws, `LOOP` never
// returns.

import { Parser, escape, event, logSource, parserExports } from "./factorio_isr.js";

class Misbehave extends Parser {
  parseLine(line) {
    if (line === "PANIC") throw new Error("asked to throw");
    if (line === "LOOP") {
      for (;;) {}
    }
    const m = /\[JOIN\] (\S+) joined the game$/.exec(line);
    if (!m) return undefined;
    return event("join", {
      player: m[1],
      fields: [["log", logSource()], ["version", "misbehave"]],
      text: `**${escape(m[1])}** joined (JavaScript)`,
    });
  }
}

export const { init, parse } = parserExports(Misbehave);
