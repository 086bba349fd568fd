//! `factorio-isr rcon`: sends one command to a configured server and prints the answer.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::config::{Config, ServerConfig};
use crate::rcon::{Connection, command};

#[derive(Debug, Args)]
pub struct RconArgs {
    #[arg(
        long,
        env = "FACTORIO_ISR_CONFIG",
        default_value = "config/servers.yml"
    )]
    config: PathBuf,
    /// The server's tag in servers.yml.
    #[arg(long)]
    server: String,
    /// Seconds to wait for the connection, and again for the answer.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// The command, e.g. `/players online` or `/sc rcon.print(game.tick)`.
    #[arg(required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// The server `tag` of `config`, or an error that lists the tags there are.
pub fn find_server<'a>(config: &'a Config, tag: &str) -> anyhow::Result<&'a ServerConfig> {
    config.server(tag).ok_or_else(|| {
        let tags: Vec<&str> = config.servers.iter().map(|s| s.tag.as_str()).collect();
        anyhow::anyhow!(
            "{}: no server `{tag}` (servers: {})",
            config.path.display(),
            tags.join(", ")
        )
    })
}

/// Connects to `server` and authenticates.
pub async fn connect(server: &ServerConfig, timeout: Duration) -> anyhow::Result<Connection> {
    let password = server.rcon_password.as_ref().with_context(|| {
        format!(
            "server {} has no RCON password (set rcon_password, or the secret or variable RCON_PASSWORD_{})",
            server.tag,
            server.tag.to_ascii_uppercase().replace('-', "_")
        )
    })?;
    let addr = format!("{}:{}", server.rcon_host, server.rcon_port);
    Connection::connect(&addr, password, timeout)
        .await
        .with_context(|| format!("server {}: RCON at {addr}", server.tag))
}

pub fn run(args: RconArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let server = find_server(&config, &args.server)?;
    let text = command::raw(&args.command.join(" "))?;
    if server.achievements_safe && crate::rcon::connection::is_lua(text.as_str()) {
        anyhow::bail!(
            "server {}: {}",
            server.tag,
            crate::rcon::RconError::LuaRefused
        );
    }
    let timeout = Duration::from_secs_f64(args.timeout.clamp(0.1, 3600.0));
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let answer = tokio.block_on(async {
        let mut conn = connect(server, timeout).await?;
        conn.exec(text.as_str(), timeout)
            .await
            .with_context(|| format!("server {}: `{}`", server.tag, args.command.join(" ")))
    })?;
    if !answer.is_empty() {
        println!("{}", answer.trim_end());
    }
    Ok(ExitCode::SUCCESS)
}
