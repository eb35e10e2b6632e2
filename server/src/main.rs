//! The `souk` binary.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use souk_server::Server;
use souk_server::config::{Cli, Command, Config, CreateAdminArgs, ImportArgs, LogFormat};
use souk_server::import;
use souk_wire::api::{Currency, UnixMillis};
use tracing::error;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::resolve(cli.options.clone()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("souk: {error}");
            return ExitCode::from(2);
        }
    };
    let command = cli.command.unwrap_or(Command::Serve);
    let mut config = config;
    if matches!(command, Command::Import(_) | Command::CreateAdmin(_)) && cli.options.log.is_none()
    {
        // A tool's output is its summary; only problems are logged.
        config.log = "warn".into();
    }
    init_logging(&config);
    match command {
        Command::Serve => serve(&config),
        Command::Import(args) => import(&config, &args),
        Command::CreateAdmin(args) => match create_admin(&config, &args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("souk create-admin: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn import(config: &Config, args: &ImportArgs) -> ExitCode {
    match run_import(config, args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("souk import: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_import(config: &Config, args: &ImportArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let currency = Currency::new(&args.currency)
        .map_err(|_| anyhow::anyhow!("--currency {:?} is not an ISO 4217 code", args.currency))?;
    anyhow::ensure!(
        (0..=souk_wire::limits::STOCK_UNITS_MAX).contains(&args.initial_stock),
        "--initial-stock out of range"
    );
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("cannot open {}", args.file.display()))?;
    let rows = ProgressBar::new_spinner().with_message("reading rows");
    let defaults = import::Defaults {
        currency,
        stock: args.initial_stock,
    };
    let parsed = import::parse(std::io::BufReader::new(file), args.format, defaults, |n| {
        rows.set_position(n)
    })?;
    rows.finish_and_clear();
    let (runtime, store) = souk_server::server::open_store_for_tool(config)
        .context("cannot open the store (is souk running on this data directory? stop it first)")?;
    let bar = ProgressBar::new(parsed.products.len() as u64).with_style(
        ProgressStyle::with_template("writing products {bar:40} {pos}/{len}")
            .expect("a valid template"),
    );
    let now = UnixMillis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64,
    );
    let summary = runtime.block_on(async {
        let summary =
            import::store(store.as_ref(), &parsed, now, |n| bar.set_position(n as u64)).await;
        let closed = store.close().await;
        summary.and_then(|s| closed.map(|()| s).map_err(Into::into))
    })?;
    bar.finish_and_clear();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{}: {} rows read; products: {} new, {} updated, {} unchanged; {} new SKUs stocked; {} categories; {} rows rejected",
        args.file.display(),
        parsed.rows,
        summary.new,
        summary.updated,
        summary.unchanged,
        summary.stocked,
        parsed.categories.len(),
        parsed.rejected.len() + summary.conflicts.len(),
    );
    for rejected in parsed.rejected.iter().take(REJECTIONS_SHOWN) {
        let _ = writeln!(
            out,
            "  rejected line {}: {}",
            rejected.line, rejected.reason
        );
    }
    if parsed.rejected.len() > REJECTIONS_SHOWN {
        let _ = writeln!(
            out,
            "  ... and {} more",
            parsed.rejected.len() - REJECTIONS_SHOWN
        );
    }
    for conflict in &summary.conflicts {
        let _ = writeln!(out, "  rejected {conflict}");
    }
    Ok(())
}

fn create_admin(config: &Config, args: &CreateAdminArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\r', '\n']);
    let id = souk_server::server::create_admin(config, &args.email, password, args.name.clone())?;
    let mut out = std::io::stdout().lock();
    let email = souk_server::domain::accounts::normalize_email(&args.email)
        .unwrap_or_else(|_| args.email.clone());
    let _ = writeln!(out, "admin {email} created (user id {})", id.0);
    Ok(())
}

/// Rejected rows listed one by one; past this only their count is shown.
const REJECTIONS_SHOWN: usize = 50;

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
    if let Some(http) = server.http_addr() {
        let scheme = if config.http_tls { "https" } else { "http" };
        banner.push_str(&format!(
            "storefront and HTTP/JSON API: {scheme}://{http}/ (OpenAPI: /v1/openapi.json)\n"
        ));
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
