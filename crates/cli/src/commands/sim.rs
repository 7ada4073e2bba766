//! `datacap sim`: runs the provider sim (datacap-sim) standalone on loopback, so an operator
//! can point a datacap configuration at it and watch the whole system work before
//! connecting a real tenant.
//!
//! It prints the base URLs as a config snippet, then serves until Ctrl-C.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use datacap_sim::{Endpoints, Provider, Scenario, Sim};

/// Arguments of `datacap sim`.
#[derive(clap::Args)]
pub struct Args {
    /// Scenario file (TOML, see docs/sim.md; examples in config/sim/).
    #[arg(long, value_name = "FILE")]
    scenario: PathBuf,
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8085")]
    listen: SocketAddr,
    /// Serve https with the sim's fake, test-only certificate; its CA is
    /// config/sim/keys/FAKE-TEST-ONLY-sim-tls-ca.pem (clients such as msal refuse http).
    #[arg(long)]
    https: bool,
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let scenario = Scenario::from_file(&args.scenario).context("invalid scenario")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let snippet = snippet(&scenario);
        let sim = if args.https {
            Sim::start_https(scenario, args.listen).await
        } else {
            Sim::start(scenario, args.listen).await
        }
        .context("cannot start the sim")?;
        let text = format!("{}{snippet}", urls(sim.endpoints()));
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .context("cannot write stdout")?;
        drop(stdout);
        tokio::signal::ctrl_c()
            .await
            .context("cannot wait for Ctrl-C")?;
        sim.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// The base URLs, as the `[google]` and `[microsoft]` sections of a datacap config.
fn urls(e: &Endpoints) -> String {
    format!(
        "# datacap sim listening on {base}; Ctrl-C stops it.\n\
         # Control endpoint: {control} (docs/sim.md).\n\
         [google]\n\
         # authorize (connect flow): {google_authorize}\n\
         token_url = \"{google_token}\"\n\
         gmail_base = \"{gmail}\"\n\
         calendar_base = \"{calendar}\"\n\
         directory_base = \"{directory}\"\n\
         \n\
         [microsoft]\n\
         # token: {{login_base}}/{{tenant}}/oauth2/v2.0/token\n\
         login_base = \"{login}\"\n\
         graph_base = \"{graph}\"\n",
        base = e.base,
        control = e.control_url,
        google_token = e.google_token_url,
        google_authorize = e.google_authorize_url,
        gmail = e.gmail_base,
        calendar = e.calendar_base,
        directory = e.directory_base,
        login = e.microsoft_login_base,
        graph = e.graph_base,
    )
}

/// The tenants of the scenario with their credentials, as comments.
fn snippet(scenario: &Scenario) -> String {
    let mut text = String::from("\n# Tenants in this scenario:\n");
    for tenant in &scenario.tenants {
        let provider = match tenant.provider {
            Provider::Google => "google",
            Provider::Microsoft => "microsoft",
        };
        text.push_str(&format!(
            "#   {} ({provider}, domain {}, tenant id {}, {} users)\n",
            tenant.name,
            tenant.domain,
            tenant.tenant_id,
            tenant.users.len()
        ));
        if let Some(sa) = &tenant.service_account {
            text.push_str(&format!(
                "#     service account {} (client id {})\n",
                sa.client_email, sa.client_id
            ));
        }
        if let Some(client) = &tenant.client {
            text.push_str(&format!(
                "#     client id {} / secret {}\n",
                client.client_id, client.client_secret
            ));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_names_every_base_url() {
        let text = urls(&Endpoints::at("http://127.0.0.1:9"));
        for needle in [
            "token_url = \"http://127.0.0.1:9/google/token\"",
            "gmail_base = \"http://127.0.0.1:9/google/gmail/v1\"",
            "login_base = \"http://127.0.0.1:9/microsoft\"",
            "graph_base = \"http://127.0.0.1:9/graph/v1.0\"",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
        // The snippet is a config datacap itself accepts, endpoints and all.
        let config = crate::config::parse(&text, "snippet", Vec::new()).expect("a datacap config");
        let expected = crate::config::parse(
            "[google]\ntoken_url = \"http://127.0.0.1:9/google/token\"\n",
            "expected",
            Vec::new(),
        )
        .expect("config");
        assert_eq!(config.google.token_url, expected.google.token_url);
    }
}
