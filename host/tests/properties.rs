//! Property tests for everything that reads bytes from outside the process: the RCON packet
//! decoder, the line splitter, `${VAR}` expansion, the Lua string escaper (checked against a
//! real Lua 5.2, Factorio's), the pattern-file reader and the parsers of the game's stats
//! and `/evolution` answers. Each runs a bounded number of cases (`PROPTEST_CASES`, default
//! 256), so CI stays quick; a failure prints the smallest input that shows it.

use std::path::Path;

use bytes::BytesMut;
use factorio_isr::config::Config;
use factorio_isr::rcon::command::{lua_string, parse_lua_string};
use factorio_isr::rcon::packet::{Codec, FrameError, Kind, Packet};
use factorio_isr::readings::query::{parse_evolution_command, parse_stats};
use factorio_isr::tail::lines::LineSplitter;
use factorio_isr_patterns_engine::{PatternFile, RuleSet};
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

/// Cuts `bytes` at the given points (taken modulo its length), in order.
fn chunks(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|c| c % (bytes.len() + 1))
        .chain([0, bytes.len()])
        .collect();
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| bytes[w[0]..w[1]].to_vec()).collect()
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Auth),
        Just(Kind::AuthResponseOrExec),
        Just(Kind::Response)
    ]
}

proptest! {
    // Failures are kept as tests of their own, not in a regression file.
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Whatever a peer sends, in whatever pieces, the decoder answers with packets, "more
    /// please" or an error, never a panic, and never keeps a body over its cap.
    #[test]
    fn the_rcon_decoder_survives_any_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
        max in 10usize..300,
    ) {
        let mut codec = Codec::new(max);
        let mut buf = BytesMut::new();
        'feed: for chunk in chunks(&bytes, &cuts) {
            buf.extend_from_slice(&chunk);
            loop {
                match codec.decode(&mut buf) {
                    Ok(Some(p)) => prop_assert!(p.body.len() <= max * 3, "{}", p.body.len()),
                    Ok(None) => break,
                    Err(FrameError::BadLength(..) | FrameError::BadTerminator) => break 'feed,
                    Err(e) => prop_assert!(false, "unexpected {e}"),
                }
            }
            prop_assert!(buf.len() <= bytes.len());
        }
    }

    /// Packets written by the encoder come back the same, however the stream is cut.
    #[test]
    fn rcon_packets_round_trip_through_any_cuts(
        packets in proptest::collection::vec(
            (any::<i32>(), kind(), "[^\u{0}]{0,200}"),
            1..5,
        ),
        cuts in proptest::collection::vec(any::<usize>(), 0..10),
    ) {
        let mut codec = Codec::new(4096);
        let mut wire = BytesMut::new();
        let sent: Vec<Packet> = packets
            .into_iter()
            .map(|(id, kind, body)| Packet { id, kind, body })
            .collect();
        for p in &sent {
            codec.encode(p.clone(), &mut wire).unwrap();
        }
        let mut got = Vec::new();
        let mut buf = BytesMut::new();
        for chunk in chunks(&wire, &cuts) {
            buf.extend_from_slice(&chunk);
            while let Some(p) = codec.decode(&mut buf).unwrap() {
                got.push(p);
            }
        }
        prop_assert_eq!(got, sent);
        prop_assert!(buf.is_empty());
    }

    /// The line splitter gives the same lines however the bytes arrive, each one the
    /// reference cut: up to the newline, `\r` dropped, at most `max` bytes kept.
    #[test]
    fn lines_do_not_depend_on_how_the_bytes_arrive(
        bytes in proptest::collection::vec(
            prop_oneof![Just(b'\n'), Just(b'\r'), Just(0xff), Just(0xe2), any::<u8>()],
            0..400,
        ),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
        max in 1usize..40,
    ) {
        let mut splitter = LineSplitter::new(max);
        let mut got = Vec::new();
        for chunk in chunks(&bytes, &cuts) {
            splitter.push(&chunk, &mut got);
        }
        got.extend(splitter.finish());
        let mut want = Vec::new();
        let mut pieces: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
        if pieces.last().is_some_and(|l| l.is_empty()) {
            pieces.pop();
        }
        for raw in pieces {
            let kept = &raw[..raw.len().min(max)];
            let kept = kept.strip_suffix(b"\r").unwrap_or(kept);
            want.push((
                String::from_utf8_lossy(kept).into_owned(),
                raw.len().saturating_sub(max) as u64,
            ));
        }
        let got: Vec<(String, u64)> = got.into_iter().map(|l| (l.text, l.truncated_bytes)).collect();
        prop_assert_eq!(got, want);
    }

    /// A variable's value is the value, whatever it holds, and never shows in an error.
    #[test]
    fn a_variable_is_taken_as_it_is_and_never_shown(value in "\\PC{0,40}|[ -~\n\t]{0,40}") {
        let text = "servers:\n  prod:\n    name: \"${NAME}\"\n    rcon_password: ${PASS}\n    log_path: /x\n";
        let env = |v: &str| (v == "NAME" || v == "PASS").then(|| value.clone());
        let config = Config::from_text(Path::new("servers.yml"), text, &env);
        let config = config.map_err(|e| e.to_string());
        prop_assert!(config.is_ok(), "{:?}", config.err());
        let config = config.unwrap();
        let server = &config.servers[0];
        prop_assert_eq!(server.name.as_deref(), Some(value.as_str()));
        prop_assert_eq!(server.rcon_password.as_ref().map(|p| p.expose()), Some(value.as_str()));
    }

    /// A value put where a number belongs is refused without showing it.
    #[test]
    fn a_wrong_variable_is_refused_without_being_shown(value in "[a-zA-Z#:*&!\\[\\]{}\"' ]{6,24}") {
        let text = "servers:\n  prod:\n    rcon_port: ${PORT}\n    log_path: /x\n";
        prop_assume!(!text.contains(value.trim()) && value.trim().len() >= 4);
        let env = |v: &str| (v == "PORT").then(|| value.clone());
        match Config::from_text(Path::new("servers.yml"), text, &env) {
            Ok(_) => prop_assert!(false, "{value:?} was taken as a port"),
            Err(e) => {
                let e = e.to_string();
                prop_assert!(!e.contains(value.trim()), "{e}");
                prop_assert!(e.starts_with("servers.yml:3: "), "{e}");
            }
        }
    }

    /// A Lua literal from the escaper is one line, and Lua 5.2 (Factorio's) reads back
    /// exactly the text it was made from; so does the host's own reader.
    #[test]
    fn the_lua_escaper_round_trips_through_real_lua(text in "\\PC{0,60}|[\u{0}-\u{7f}]{0,60}") {
        let literal = lua_string(&text);
        prop_assert!(!literal.contains(['\n', '\r', '\0']), "{literal:?}");
        let lua = mlua::Lua::new();
        let back: mlua::LuaString = lua.load(format!("return {literal}")).eval().unwrap();
        prop_assert_eq!(&*back.as_bytes(), text.as_bytes());
        let (parsed, rest) = parse_lua_string(&literal).unwrap();
        prop_assert_eq!(parsed, text);
        prop_assert_eq!(rest, "");
    }

    /// Any pattern file, however broken, gives rules or errors with a line inside it; never
    /// a panic.
    #[test]
    fn the_pattern_file_reader_survives_any_text(
        lines in proptest::collection::vec(
            prop_oneof![
                Just("events:".to_owned()),
                Just("defaults:".to_owned()),
                "  [a-z_]{1,8}:",
                "    (pattern|type|message|emoji|priority|enabled|severity|channel): \\PC{0,20}",
                "    pattern: '[\\[\\]()?*+.\\\\a-z<>P]{0,16}'",
                "\\PC{0,30}",
            ],
            0..30,
        ),
    ) {
        let text = lines.join("\n");
        let n = text.lines().count().max(1);
        match RuleSet::compile(&[PatternFile::new("x.yml", &text)]) {
            Ok(rules) => {
                for w in rules.warnings() {
                    prop_assert!(w.line.is_none_or(|l| l <= n + 1), "{w}");
                }
            }
            Err(errors) => {
                prop_assert!(!errors.0.is_empty());
                for e in &errors.0 {
                    prop_assert!(e.line.is_none_or(|l| l <= n + 1), "{e}");
                }
            }
        }
    }

    /// `/evolution` answers: any text gives factors between 0 and 1 only; real answers
    /// give their factors back.
    #[test]
    fn evolution_answers_give_factors_between_0_and_1(
        noise in prop_oneof![
            "\\PC{0,80}",
            "([A-Za-z]{0,6} - )?[Ee]volution [Ff]actor: [0-9.]{0,10}\\PC{0,10}",
        ],
        planets in proptest::collection::vec(("[A-Z][a-z]{2,8}", 0u32..=10_000), 0..4),
    ) {
        for (_, f) in parse_evolution_command(&noise) {
            prop_assert!((0.0..=1.0).contains(&f), "{noise:?}: {f}");
        }
        let answer: Vec<String> = planets
            .iter()
            .map(|(p, f)| format!("{p} - Evolution factor: {:.4}. (Time 10%) (Pollution 85%) (Spawner kills 5%)", f64::from(*f) / 10_000.0))
            .collect();
        let got = parse_evolution_command(&answer.join("\n"));
        prop_assert_eq!(got.len(), planets.len());
        for ((surface, f), (p, want)) in got.iter().zip(&planets) {
            prop_assert_eq!(surface, &p.to_ascii_lowercase());
            prop_assert!((f - f64::from(*want) / 10_000.0).abs() < 1e-9);
        }
    }

    /// The stats program's answer: any text is an answer or an error, never a panic; the
    /// evolution it gives is between 0 and 1.
    #[test]
    fn stats_answers_never_panic_and_stay_in_range(
        lines in proptest::collection::vec(
            prop_oneof![
                "tick=[0-9]{0,22}",
                "played=[0-9a-z]{0,22}",
                "player=\\PC{0,12}",
                "evolution=\\PC{0,10}=[-0-9.eEinfa]{0,12}",
                "\\PC{0,20}",
            ],
            0..12,
        ),
    ) {
        let text = lines.join("\n");
        // An answer is one with a tick: the last `tick=` line's number.
        let tick = (text.lines().map(str::trim))
            .filter_map(|l| l.strip_prefix("tick="))
            .next_back()
            .and_then(|v| v.parse().ok());
        match parse_stats(&text) {
            Ok(answer) => {
                prop_assert_eq!(Some(answer.tick), tick);
                for (_, f) in answer.evolution {
                    prop_assert!((0.0..=1.0).contains(&f), "{f}");
                }
            }
            Err(e) => {
                prop_assert_eq!(tick, None::<u64>);
                prop_assert!(e.to_string().contains("gave no tick"), "{e}");
            }
        }
    }
}
