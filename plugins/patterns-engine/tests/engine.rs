//! The engine against the stock pattern files, the Python bot's format, and bad input.

use std::path::Path;

use factorio_isr_patterns_engine::{PatternFile, RuleSet, Severity};

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn stock_files() -> Vec<PatternFile> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(repo().join("patterns")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            files.push(PatternFile::new(
                name,
                std::fs::read_to_string(&path).unwrap(),
            ));
        }
    }
    files
}

#[test]
fn stock_patterns_give_the_expected_event_for_every_test_line() {
    let table = std::fs::read_to_string(repo().join("tests/fixtures/console-lines.tsv")).unwrap();
    let rules = RuleSet::compile(&stock_files()).unwrap();
    assert!(rules.warnings().is_empty(), "{:?}", rules.warnings());
    let mut m = rules.into_matcher();
    let mut checked = 0;
    for row in table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let cols: Vec<&str> = row.split('\t').collect();
        let (line, kind) = (cols[0], cols[1]);
        let event = m.parse_line(line);
        if kind == "-" {
            assert!(event.is_none(), "{line:?} gave {event:?}");
        } else {
            let event = event.unwrap_or_else(|| panic!("no event for {line:?}"));
            assert_eq!(event.kind, kind, "{line:?}");
            let player = cols.get(2).copied().filter(|p| !p.is_empty());
            assert_eq!(event.player.as_deref(), player, "{line:?}");
            if let Some(message) = cols.get(3).copied().filter(|m| !m.is_empty()) {
                assert_eq!(event.message.as_deref(), Some(message), "{line:?}");
            }
        }
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} rows checked");
}

#[test]
fn stock_patterns_fill_the_fields_of_the_design_table() {
    let mut m = RuleSet::compile(&stock_files()).unwrap().into_matcher();
    let kick = m
        .parse_line("2026-01-01 10:00:00 [KICK] Bob.x was kicked by Admin-1. Reason: afk.")
        .unwrap();
    assert_eq!(kick.kind, "kick");
    assert_eq!(kick.player.as_deref(), Some("Bob.x"));
    assert_eq!(
        kick.fields,
        vec![
            ("by".to_owned(), "Admin-1".to_owned()),
            ("reason".to_owned(), "afk".to_owned())
        ]
    );
    let cmd = m
        .parse_line("2026-01-01 10:00:00 [COMMAND] Alice (command): game.print(1)")
        .unwrap();
    assert_eq!(
        cmd.fields,
        vec![("command".to_owned(), "game.print(1)".to_owned())]
    );
    let unban = m
        .parse_line("[UNBANNED] Bob was unbanned by Admin.")
        .unwrap();
    assert_eq!(unban.fields, vec![("by".to_owned(), "Admin".to_owned())]);
    let promote = m
        .parse_line("2026-01-01 10:00:00 [PROMOTE] Alice was promoted to admin by Bob.")
        .unwrap();
    assert_eq!(
        (promote.kind.as_str(), promote.player.as_deref()),
        ("promote", Some("Alice"))
    );
    assert_eq!(promote.fields, vec![("by".to_owned(), "Bob".to_owned())]);
    let demote = m
        .parse_line("2026-01-01 10:00:00 [DEMOTE] Alice was demoted.")
        .unwrap();
    assert_eq!((demote.kind.as_str(), demote.fields.len()), ("demote", 0));
    let whisper = m
        .parse_line("2026-01-01 10:00:00 [WHISPER] Al.ice to Bob: psst")
        .unwrap();
    assert_eq!(whisper.player.as_deref(), Some("Al.ice"));
    assert_eq!(whisper.message.as_deref(), Some("psst"));
    let crash = m
        .parse_line("  99.000 Quitting: multiplayer error.")
        .unwrap();
    assert_eq!(
        (crash.kind.as_str(), crash.severity),
        ("server-crashed", Severity::Critical)
    );
    assert_eq!(
        crash.fields,
        vec![("reason".to_owned(), "multiplayer error".to_owned())]
    );
    let desync = m
        .parse_line("  10.000 Info ClientMultiplayerManager.cpp:1: DesyncedWaitingForMap")
        .unwrap();
    assert_eq!(desync.kind, "desync");
    let goodbye = m.parse_line(" 640.911 Goodbye").unwrap();
    assert_eq!(goodbye.kind, "server-stopped");
    let mention = m
        .parse_line("2026-01-01 10:00:00 [CHAT] Alice: help @admins please")
        .unwrap();
    assert_eq!(mention.kind, "mention");
}

#[test]
fn text_is_markdown_with_player_values_escaped() {
    let mut m = RuleSet::compile(&stock_files()).unwrap().into_matcher();
    let e = m
        .parse_line("2026-01-01 10:00:00 [CHAT] a_b: **@everyone** `x`")
        .unwrap();
    assert_eq!(e.message.as_deref(), Some("**@everyone** `x`"));
    assert_eq!(
        e.text.as_deref(),
        Some("**a\\_b**: \\*\\*@\u{200b}everyone\\*\\* \\`x\\`")
    );
    assert_eq!(e.emoji.as_deref(), Some("💬"));
}

/// Rules written the way the Python bot's files were: positional groups, `\w+`, priorities,
/// a disabled rule, a rule without `type`, and templates with `{player}` / `{message}`.
const OLD_FORMAT: &str = r#"
events:
  player_join:
    pattern: '\[JOIN\] (\w+) joined the game'
    type: join
    emoji: '✅👋'
    message: '**{player}** joined the server'
    enabled: true
    priority: 2
    description: 'Player joins the server'
    channel: general

  chat_message:
    pattern: '\[CHAT\] (\w+): (.+)'
    type: chat
    emoji: '💬'
    message: '**{player}**: {message}'
    priority: 11

  shout_upper:
    pattern: '\[shout\] (\w+): (.+)'
    priority: 12

  player_death_fall:
    pattern: '(\w+) fell to their death\.$'
    type: death
    enabled: false
    priority: 16

  server_note:
    pattern: 'Server note: (.+)$'
    type: server
"#;

#[test]
fn python_bot_pattern_files_load_unchanged_with_the_same_meaning() {
    let rules = RuleSet::compile(&[PatternFile::new("old.yml", OLD_FORMAT)]).unwrap();
    assert_eq!(rules.rules().len(), 5);
    let mut m = rules.into_matcher();

    let join = m
        .parse_line("2026-01-01 10:00:00 [JOIN] Alice joined the game")
        .unwrap();
    assert_eq!(join.kind, "join");
    assert_eq!(join.player.as_deref(), Some("Alice"));
    assert_eq!(join.channel.as_deref(), Some("general"));
    assert_eq!(join.text.as_deref(), Some("**Alice** joined the server"));

    let chat = m.parse_line("[CHAT] bob: hi there").unwrap();
    assert_eq!(
        (chat.player.as_deref(), chat.message.as_deref()),
        (Some("bob"), Some("hi there"))
    );

    // Case-insensitive search, and a rule without `type` gets its name as the kind; the
    // default text is `player: message`.
    let shout = m.parse_line("[SHOUT] bob: HEY").unwrap();
    assert_eq!(shout.kind, "shout_upper");
    assert_eq!(shout.text.as_deref(), Some("bob: HEY"));

    assert!(
        m.parse_line("bob fell to their death.").is_none(),
        "disabled rule matched"
    );

    // One group in a `server` rule: it is the message too.
    let note = m.parse_line("Server note: restart at 5").unwrap();
    assert_eq!(note.message.as_deref(), Some("restart at 5"));
}

#[test]
fn lower_priority_number_wins_and_ties_break_by_file_then_rule_name() {
    let a = PatternFile::new(
        "b.yml",
        "events:\n  zed:\n    pattern: 'x'\n    priority: 5\n  alpha:\n    pattern: 'x'\n    priority: 5\n",
    );
    let b = PatternFile::new(
        "a.yml",
        "events:\n  late:\n    pattern: 'x'\n    priority: 5\n  early:\n    pattern: 'x'\n    priority: 4\n",
    );
    let mut m = RuleSet::compile(&[a.clone(), b.clone()])
        .unwrap()
        .into_matcher();
    assert_eq!(m.parse_line("x").unwrap().kind, "early");
    let order: Vec<_> = m.rules().rules().iter().map(|r| r.name.as_str()).collect();
    assert_eq!(order, ["early", "late", "alpha", "zed"]);
    // The order of the input does not matter.
    let m2 = RuleSet::compile(&[b, a]).unwrap().into_matcher();
    let order2: Vec<_> = m2.rules().rules().iter().map(|r| r.name.as_str()).collect();
    assert_eq!(order, order2);
}

#[test]
fn named_groups_become_fields_and_templates_may_use_them() {
    let f = PatternFile::new(
        "research.yml",
        "defaults:\n  emoji: '🔬'\n  channel: science\nevents:\n  research:\n    pattern: '\\[RESEARCH\\] (?P<tech>[\\w-]+) finished by (?P<force>\\w+)'\n    type: research-finished\n    message: '{tech} done for {force}'\n    severity: notice\n",
    );
    let mut m = RuleSet::compile(&[f]).unwrap().into_matcher();
    let e = m
        .parse_line("[RESEARCH] automation-2 finished by player")
        .unwrap();
    assert_eq!(e.kind, "research-finished");
    assert_eq!(e.player, None);
    assert_eq!(
        e.fields,
        vec![
            ("tech".to_owned(), "automation-2".to_owned()),
            ("force".to_owned(), "player".to_owned())
        ]
    );
    assert_eq!(e.text.as_deref(), Some("automation-2 done for player"));
    assert_eq!(
        (e.emoji.as_deref(), e.channel.as_deref()),
        (Some("🔬"), Some("science"))
    );
    assert_eq!(e.severity, Severity::Notice);
}

fn errors(files: &[PatternFile]) -> Vec<String> {
    RuleSet::compile(files)
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn an_invalid_regex_names_the_file_line_rule_and_problem() {
    let text = "events:\n  good:\n    pattern: 'ok'\n  bad:\n    type: x\n    pattern: '(?<=look)behind'\n";
    let errs = errors(&[PatternFile::new("custom.yml", text)]);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("custom.yml:6: rule `bad`, field `pattern`: invalid regex"),
        "{}",
        errs[0]
    );
    assert!(errs[0].contains("look-around"), "{}", errs[0]);
}

#[test]
fn unknown_keys_and_wrong_types_are_errors_and_all_are_reported() {
    let text = "events:\n  one:\n    pattern: 'a'\n    colour: red\n  two:\n    pattern: 'b'\n    priority: high\n  three:\n    pattern: 'c'\n    enabled: 'yes'\n  four:\n    emoji: x\n";
    let errs = errors(&[PatternFile::new("typos.yml", text)]);
    assert_eq!(errs.len(), 4, "{errs:#?}");
    assert!(
        errs[0].starts_with("typos.yml:4: rule `one`, field `colour`: unknown key `colour`"),
        "{}",
        errs[0]
    );
    assert!(
        errs[1].starts_with("typos.yml:7: rule `two`, field `priority`: expected a whole number"),
        "{}",
        errs[1]
    );
    assert!(
        errs[2].starts_with("typos.yml:10: rule `three`, field `enabled`: expected true or false"),
        "{}",
        errs[2]
    );
    assert!(
        errs[3]
            .starts_with("typos.yml:11: rule `four`, field `pattern`: the rule has no `pattern`"),
        "{}",
        errs[3]
    );
}

#[test]
fn a_template_naming_a_group_that_does_not_exist_is_an_error() {
    let text = "events:\n  r:\n    pattern: '(\\w+) deployed a (.+)'\n    message: '{player} deployed a {vehicle}'\n";
    let errs = errors(&[PatternFile::new("aai.yml", text)]);
    assert!(
        errs[0].starts_with("aai.yml:4: rule `r`, field `message`: the template uses `{vehicle}`"),
        "{}",
        errs[0]
    );
}

#[test]
fn yaml_syntax_errors_carry_their_line() {
    let errs = errors(&[PatternFile::new(
        "broken.yml",
        "events:\n  r:\n    pattern: 'a\n  x: [\n",
    )]);
    assert!(errs[0].starts_with("broken.yml:"), "{}", errs[0]);
    assert!(errs[0].contains("not valid YAML"), "{}", errs[0]);
    assert!(
        !errs[0].starts_with("broken.yml: "),
        "no line in {}",
        errs[0]
    );
}

#[test]
fn a_duplicate_rule_name_warns_naming_both_places_and_the_first_wins() {
    let a = PatternFile::new("a.yml", "events:\n  chat:\n    pattern: 'first'\n");
    let b = PatternFile::new("b.yml", "\nevents:\n  chat:\n    pattern: 'second'\n");
    let rules = RuleSet::compile(&[b, a]).unwrap();
    assert_eq!(rules.warnings().len(), 1);
    let w = rules.warnings()[0].to_string();
    assert_eq!(
        w,
        "b.yml:3: rule `chat`: this rule name is already used at a.yml:2; the first one is kept"
    );
    let mut m = rules.into_matcher();
    assert!(m.parse_line("first").is_some());
    assert!(m.parse_line("second").is_none());
}

#[test]
fn empty_huge_and_odd_lines_are_handled() {
    let mut m = RuleSet::compile(&stock_files()).unwrap().into_matcher();
    assert!(m.parse_line("").is_none());
    assert!(m.parse_line("   \t ").is_none());
    let huge_chat = format!("2026-01-01 10:00:00 [CHAT] Alice: {}", "x".repeat(1 << 20));
    let e = m.parse_line(&huge_chat).unwrap();
    assert_eq!(e.message.map(|s| s.len()), Some(1 << 20));
    assert!(m.parse_line(&"\u{FFFD}".repeat(100_000)).is_none());
    assert!(m.parse_line("[CHAT] \u{0}: \u{0}").is_none());
}

#[test]
fn no_files_or_only_disabled_rules_match_nothing() {
    let mut m = RuleSet::compile(&[]).unwrap().into_matcher();
    assert!(m.parse_line("[CHAT] a: b").is_none());
    let f = PatternFile::new(
        "off.yml",
        "events:\n  r:\n    pattern: 'a'\n    enabled: false\n",
    );
    let mut m = RuleSet::compile(&[f]).unwrap().into_matcher();
    assert!(m.parse_line("a").is_none());
}

#[test]
fn a_rule_the_prefilter_lets_through_but_that_does_not_match_falls_to_the_next_rule() {
    let f = PatternFile::new(
        "words.yml",
        "events:\n  whole:\n    pattern: 'foo\\b'\n    priority: 1\n  part:\n    pattern: 'foo'\n    priority: 2\n",
    );
    let mut m = RuleSet::compile(&[f]).unwrap().into_matcher();
    assert_eq!(m.parse_line("a foo b").unwrap().kind, "whole");
    assert_eq!(m.parse_line("foo").unwrap().kind, "whole");
    assert_eq!(m.parse_line("foobar").unwrap().kind, "part");
    // Unicode word boundaries: `é` is a word character, so there is no boundary after `foo`.
    assert_eq!(m.parse_line("fooé").unwrap().kind, "part");
    assert_eq!(m.parse_line("foo é").unwrap().kind, "whole");
}

#[test]
fn a_call_for_the_admins_is_a_mention_with_the_whole_message() {
    let mut m = RuleSet::compile(&stock_files()).unwrap().into_matcher();
    let cases = [
        ("help @admins please", "mention"),
        ("@mods", "mention"),
        ("@admin!", "mention"),
        ("hey @bob, and @Staff: the train", "mention"),
        ("@bob @moderators @bob", "mention"),
        ("@adminsX is a name", "chat"),
        ("write to x@modsy.example", "chat"),
        ("no call here", "chat"),
    ];
    for (message, kind) in cases {
        let line = format!("2026-01-01 10:00:00 [CHAT] Zoë.x-1: {message}");
        let e = m.parse_line(&line).unwrap();
        assert_eq!(e.kind, kind, "{message}");
        assert_eq!(e.player.as_deref(), Some("Zoë.x-1"), "{message}");
        assert_eq!(e.message.as_deref(), Some(message), "{message}");
    }
}
