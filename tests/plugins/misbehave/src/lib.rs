//! A parser that misbehaves on demand, to test the sandbox.
//!
//! Each line is echoed as an `echo` event, except: `LOOP` spins forever, `ALLOC` allocates
//! until it is stopped, `PANIC` panics, `PRINT` prints 10,000 lines to stdout, `LOG` calls
//! the host log 1,000 times, `SNOOP` reports what of the environment, filesystem and
//! network it can reach, `BADINDEX` returns an event for a line that does not exist, `NOW`
//! reports the host's clock (WIT 0.2.0's `host.now-ms`).
//! Its config string picks a misbehaviour for `init` instead: `fail`, `panic`, `loop`,
//! `print` (prints to stdout and stderr, then starts); or `trap`, which makes every line
//! panic.

use factorio_isr_sdk::{Event, Parser, Severity, export_parser, log};

struct Misbehave {
    seen: u64,
    trap: bool,
}

impl Parser for Misbehave {
    fn new(_server: &str, config: &str) -> Result<Self, String> {
        match config.trim_matches('"') {
            "fail" => Err("asked to fail".into()),
            "panic" => panic!("asked to panic in init"),
            "print" => {
                println!("hello from init");
                eprintln!("and a word on stderr");
                Ok(Self {
                    seen: 0,
                    trap: false,
                })
            }
            "loop" => loop {
                std::hint::black_box(());
            },
            "trap" => Ok(Self {
                seen: 0,
                trap: true,
            }),
            _ => Ok(Self {
                seen: 0,
                trap: false,
            }),
        }
    }

    fn parse_line(&mut self, line: &str) -> Option<Event> {
        self.seen += 1;
        assert!(!self.trap, "asked to trap on every line");
        match line {
            "LOOP" => loop {
                std::hint::black_box(());
            },
            "ALLOC" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "PANIC" => panic!("asked to panic"),
            "PRINT" => {
                for i in 0..10_000 {
                    println!("line {i} of noise");
                }
                None
            }
            "NOW" => Some(Event::new("now").field("ms", factorio_isr_sdk::now_ms().to_string())),
            "SOURCE" => Some(Event::new("source").message(factorio_isr_sdk::log_source())),
            "SNOOP" => {
                // What the sandbox lets through: it should be nothing.
                let env = std::env::vars().count();
                let fs = std::fs::read_dir("/").is_ok()
                    || std::fs::read_to_string("/etc/hostname").is_ok();
                let net = std::net::TcpStream::connect("127.0.0.1:80").is_ok();
                Some(
                    Event::new("snoop")
                        .field("env", env.to_string())
                        .field("fs", fs.to_string())
                        .field("net", net.to_string()),
                )
            }
            "LOG" => {
                for i in 0..1_000 {
                    log(Severity::Info, &format!("log {i}"));
                }
                None
            }
            _ => Some(
                Event::new("echo")
                    .message(line)
                    .field("seen", self.seen.to_string()),
            ),
        }
    }

    fn parse_batch(&mut self, lines: &[&str]) -> Vec<(u32, Event)> {
        let mut out: Vec<(u32, Event)> = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            if *line == "BADINDEX" {
                out.push((u32::MAX, Event::new("bogus")));
            } else if *line == "MANY" {
                // Far more events for one line than any parser has reason to give.
                for n in 0..10_000 {
                    out.push((i as u32, Event::new("many").field("n", n.to_string())));
                }
            } else if let Some(e) = self.parse_line(line) {
                out.push((i as u32, e));
            }
        }
        out
    }
}

export_parser!(Misbehave);
