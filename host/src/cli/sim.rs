//! `factorio-isr sim`: runs the fake Factorio server until SIGINT or SIGTERM.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::sim::{Api, Sim, SimOptions};

#[derive(Debug, Args)]
pub struct SimArgs {
    /// The RCON port (0: any free port; the one taken is printed).
    #[arg(long, default_value_t = 27015)]
    rcon_port: u16,
    #[arg(long, default_value = "127.0.0.1")]
    rcon_host: IpAddr,
    /// The RCON password.
    #[arg(long, env = "FACTORIO_ISR_SIM_PASSWORD", hide_env_values = true)]
    password: String,
    /// The console log to write.
    #[arg(long)]
    log: Option<PathBuf>,
    /// The `factorio-current.log` to write (the server's stdout: start, saves, desyncs, quit).
    #[arg(long)]
    current_log: Option<PathBuf>,
    /// Game updates per second.
    #[arg(long, default_value_t = 60.0)]
    ups: f64,
    /// Which Factorio to imitate.
    #[arg(long, value_enum, default_value_t = Version::V2_0)]
    factorio: Version,
    /// Mean milliseconds between player actions (join, chat, leave); 0 keeps players still.
    #[arg(long, default_value_t = 0)]
    activity_ms: u64,
    /// Seed of the map and of the players' behaviour.
    #[arg(long, default_value_t = 3_141_592_653)]
    seed: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Version {
    #[value(name = "1.1")]
    V1_1,
    #[value(name = "2.0")]
    V2_0,
}

pub fn run(args: SimArgs) -> anyhow::Result<ExitCode> {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    tokio.block_on(async {
        let sim = Sim::start(SimOptions {
            rcon_addr: SocketAddr::new(args.rcon_host, args.rcon_port),
            password: args.password,
            log: args.log.clone(),
            current_log: args.current_log.clone(),
            ups: args.ups,
            api: match args.factorio {
                Version::V1_1 => Api::V1_1,
                Version::V2_0 => Api::V2_0,
            },
            seed: args.seed,
            activity: (args.activity_ms > 0).then(|| Duration::from_millis(args.activity_ms)),
            ..SimOptions::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the simulated server: {e}"))?;
        // Whoever started the simulation may have stopped reading its output: a closed
        // stdout must not stop the server.
        let mut out = std::io::stdout();
        let _ = writeln!(out, "RCON listening on {}", sim.rcon_addr());
        if let Some(log) = &args.log {
            let _ = writeln!(out, "console log: {}", log.display());
        }
        if let Some(log) = &args.current_log {
            let _ = writeln!(out, "factorio-current.log: {}", log.display());
        }
        let _ = out.flush();
        super::run::wait_for_signal().await;
        Ok(ExitCode::SUCCESS)
    })
}
