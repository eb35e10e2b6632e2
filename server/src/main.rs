//! The `souk` binary.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use souk_server::Server;
use souk_server::config::{Cli, Command, Config, LogFormat};
use tracing::error;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::resolve(cli.options) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("souk: {error}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&config),
    }
}

fn init_logging(config: &Config) {
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn serve(config: &Config) -> ExitCode {
    let server = match Server::start(config) {
        Ok(server) => server,
        Err(error) => {
            error!("cannot start: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let mut banner = format!(
        "souk listening on {} (QUIC, ALPN souk/1) with {} shards\ncertificate SHA-256 fingerprint: {}\n",
        server.local_addr(),
        config.shards,
        hex::encode(server.fingerprint())
    );
    if config.tls == souk_server::config::TlsSource::SelfSigned {
        banner.push_str("(self-signed: clients pin this fingerprint)\n");
    }
    // One write, errors ignored: a supervisor that closed stdout after
    // reading the address must not bring the shop down.
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(banner.as_bytes())
        .and_then(|()| stdout.flush());
    drop(stdout);
    if let Err(error) = wait_for_signal() {
        error!("cannot wait for signals: {error}");
    }
    match server.shutdown() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            error!("unclean shutdown: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Blocks until SIGINT or SIGTERM.
fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
        }
        Ok(())
    })
}
