//! `factorio-isr reload`: asks the running instance (its admin API) to reload a server's
//! plugins, or every server's, or to roll one slot back.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

#[derive(Debug, Args)]
pub struct ReloadArgs {
    /// The server to reload (default: every server).
    #[arg(long)]
    server: Option<String>,
    /// Return the server to the version before its live one instead.
    #[arg(long, requires = "server")]
    rollback: bool,
    /// With --rollback: which plugins (default: the parsers, or the monitors of a server
    /// that follows no log).
    #[arg(long, requires = "rollback", value_parser = ["parsers", "monitors"])]
    slot: Option<String>,
    /// The running instance's HTTP address (default: http://127.0.0.1:$HEALTH_CHECK_PORT).
    #[arg(long)]
    url: Option<String>,
}

pub fn run(args: ReloadArgs) -> anyhow::Result<ExitCode> {
    let base = args.url.clone().unwrap_or_else(|| {
        let port = std::env::var("HEALTH_CHECK_PORT").unwrap_or_else(|_| "8080".into());
        format!("http://127.0.0.1:{port}")
    });
    let Some(token) =
        crate::config::SecretSource::default().lookup(&["FACTORIO_ISR_API_TOKEN".to_owned()])
    else {
        anyhow::bail!(
            "FACTORIO_ISR_API_TOKEN is not set: the running instance's admin API needs it"
        );
    };
    let path = match (&args.server, args.rollback) {
        (Some(tag), false) => format!("/api/servers/{tag}/reload"),
        (Some(tag), true) => match &args.slot {
            Some(slot) => format!("/api/servers/{tag}/rollback?slot={slot}"),
            None => format!("/api/servers/{tag}/rollback"),
        },
        (None, _) => "/api/reload".to_owned(),
    };
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, body) = tokio.block_on(async {
        let response = reqwest::Client::new()
            .post(&url)
            .bearer_auth(token.expose())
            .timeout(std::time::Duration::from_secs(120))
            .send()
            .await
            .with_context(|| format!("cannot reach the running instance at {base}"))?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        anyhow::Ok((status, body))
    })?;
    if status.is_success() {
        println!("{}", serde_json::to_string_pretty(&body)?);
        Ok(ExitCode::SUCCESS)
    } else if let Some(error) = body["error"].as_str() {
        eprintln!("error: {error} ({status})");
        Ok(ExitCode::FAILURE)
    } else {
        // A reload that some slot rejected: what each slot did.
        println!("{}", serde_json::to_string_pretty(&body)?);
        eprintln!("error: a reload was rejected ({status})");
        Ok(ExitCode::FAILURE)
    }
}
