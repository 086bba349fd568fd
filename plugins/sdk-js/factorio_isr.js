// Write factorio-isr plugins in JavaScript.
//
// A parser turns console-log lines into events; a monitor turns events and metric samples
// into alerts. Extend `Parser` or `Monitor`, then export the world's functions from your
// app module:
//
//     import { Parser, event, parserExports } from "./factorio_isr.js";
//
//     class Rockets extends Parser {
//       parseLine(line) {
//         if (line.includes("rocket launched")) {
//           return event("rocket-launched", { text: "🚀 A rocket was launched" });
//         }
//       }
//     }
//
//     export const { init, parse } = parserExports(Rockets);
//
// and build with componentize-js (npm: @bytecodealliance/componentize-js):
//
//     componentize-js --wit wit --world-name parser --disable http fetch-event --out plugin.wasm app.js
//
// Plugins run in the host's sandbox: no files, no network, no environment variables, a
// memory cap and a time limit per call (`--disable http fetch-event` leaves out the HTTP
// interfaces, which the host does not offer). An exception that escapes a call traps the
// plugin: the host counts it, loses that batch for this plugin only and starts a fresh
// instance, whose state comes from `Monitor.state()` as it was after the last call that
// returned.
//
// WIT values in JavaScript: records are objects with camelCase fields, `option<T>` is the
// value or `undefined`, enums are their names as strings ("warning"), `u64` values are
// BigInt (`atMs`, `sample.atMs`, `sample.tick`), `list<u8>` is a Uint8Array.
//
// This module is the JavaScript counterpart of the Rust SDK (`factorio-isr-sdk`), for WIT
// 0.4.0.

import {
  log as hostLog,
  logSource as hostLogSource,
  nowMs as hostNowMs,
} from "factorio-isr:plugin/host@0.4.0";

/** The WIT package version this module is written against. */
export const WIT_VERSION = "0.4.0";

/** Writes a line to the host's log ("debug", "info", "notice", "warning", "critical"). */
export function log(level, message) {
  hostLog(level, String(message));
}

/** Milliseconds since the Unix epoch, by the host's clock (a BigInt). */
export function nowMs() {
  return hostNowMs();
}

/** Which of its server's logs the lines being parsed came from (`console`,
 * `factorio-current`, ...: the log's `id` in servers.yml); "" outside a parse call. */
export function logSource() {
  return hostLogSource();
}

/** `text` (a player name, a chat message) made safe to show in Discord's Markdown: it
 * cannot bold, link or quote, and a mention such as @everyone pings nobody. */
export function escape(text) {
  return String(text)
    .replace(/([*_~`|>\\[\]])/g, "\\$1")
    .replace(/@/g, "@\u200b");
}

function pairs(fields) {
  return fields.map(([k, v]) => [String(k), String(v)]);
}

/** An event of `kind` (kebab-case: "chat", "rocket-launched", ...). `text` is what people
 * see (Discord Markdown: put values from the game through `escape`). */
export function event(
  kind,
  { player, message, fields = [], severity = "info", emoji, text, channel } = {},
) {
  return { kind, player, message, fields: pairs(fields), severity, emoji, text, channel };
}

/** An alert. The same `key` updates the same alert; `state: "resolved"` ends it with a
 * message, "withdrawn" without one. `mention` is a group of mentions.yml, never a raw
 * @everyone. */
export function alert(
  key,
  title,
  text,
  { severity = "warning", fields = [], state = "firing", mention } = {},
) {
  return { key, title, text, severity, fields: pairs(fields), state, mention };
}

function parseConfig(text) {
  try {
    return text ? JSON.parse(text) : null;
  } catch (e) {
    // A thrown string is the `err` of `init`: the host rejects the plugin with it.
    throw `the config is not JSON: ${e.message}`;
  }
}

function lines(batch) {
  const all = batch.split("\n");
  if (all.length && all[all.length - 1] === "") all.pop();
  return all;
}

/** A parser: one instance per server. Override `parseLine` (one line, without its line
 * ending, to an event or undefined), or `parseBatch` to give several events for a line or
 * to look across lines. `config` is the plugin's `config` from servers.yml (null if none).
 */
export class Parser {
  constructor(server, config) {
    this.server = server;
    this.config = config;
  }

  parseLine(_line) {
    return undefined;
  }

  parseBatch(batch) {
    const out = [];
    batch.forEach((line, i) => {
      const e = this.parseLine(line);
      if (e) out.push([i, e]);
    });
    return out;
  }
}

/** A monitor: one instance per server, fed the server's events and metric samples. Return
 * alerts from `onEvents` and `onSample`. Keep what must survive a restart of the instance
 * (a trap, a swap to a new version) in `state()` / `restore()`: any value JSON can hold. */
export class Monitor {
  constructor(server, config) {
    this.server = server;
    this.config = config;
  }

  onEvents(_atMs, _events) {
    return [];
  }

  onSample(_sample) {
    return [];
  }

  state() {
    return null;
  }

  restore(_state) {}
}

/** The parser world's functions, for a `Parser` subclass: `export const { init, parse } =
 * parserExports(MyParser);` */
export function parserExports(cls) {
  let plugin;
  return {
    init(server, config) {
      plugin = new cls(server, parseConfig(config));
      return [];
    },
    parse(batch) {
      return { matches: [], events: plugin.parseBatch(lines(batch)) };
    },
  };
}

/** The monitor world's functions, for a `Monitor` subclass: `export const { init,
 * onEvents, onSample, saveState, loadState } = monitorExports(MyMonitor);` */
export function monitorExports(cls) {
  let plugin;
  return {
    init(server, config) {
      plugin = new cls(server, parseConfig(config));
    },
    onEvents(atMs, events) {
      return plugin.onEvents(atMs, events);
    },
    onSample(sample) {
      return plugin.onSample(sample);
    },
    saveState() {
      const state = plugin.state();
      return state === null || state === undefined
        ? new Uint8Array()
        : new TextEncoder().encode(JSON.stringify(state));
    },
    loadState(state) {
      let value;
      try {
        value = JSON.parse(new TextDecoder().decode(state));
      } catch (e) {
        throw `the saved state is not JSON: ${e.message}`;
      }
      plugin.restore(value);
    },
  };
}
