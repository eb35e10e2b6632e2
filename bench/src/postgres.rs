//! A throwaway PostgreSQL for anchors: initialised in a temporary
//! directory, started on a free loopback port with fsync on, driven with
//! pgbench, stopped when dropped. Installed with apt when missing (as root);
//! if it cannot be had, `start` says why and the caller skips the anchor.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    work: tempfile::TempDir,
    /// Set when running as root: PostgreSQL refuses to run as root, so
    /// its server commands run as this user.
    run_as: Option<String>,
}

/// What pgbench measured.
#[derive(Debug, Clone, Copy)]
pub struct PgbenchResult {
    pub transactions_per_second: f64,
    pub p50_us: u64,
    pub p99_us: u64,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn find_bin() -> Option<PathBuf> {
    let from_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let candidates = from_config.into_iter().chain(
        fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path().join("bin")),
    );
    candidates
        .into_iter()
        .find(|dir| dir.join("initdb").exists() && dir.join("pgbench").exists())
}

fn install() -> Result<(), String> {
    if !is_root() {
        return Err("PostgreSQL is not installed and installing it needs root".into());
    }
    let status = Command::new("sh")
        .args(["-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-contrib"])
        .status()
        .map_err(|e| format!("apt-get: {e}"))?;
    status
        .success()
        .then_some(())
        .ok_or_else(|| "apt-get install postgresql failed".into())
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

fn check(output: std::io::Result<Output>, what: &str) -> Result<Output, String> {
    let output = output.map_err(|e| format!("{what}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(output)
}

impl Postgres {
    /// Starts a fresh server, or says why it cannot.
    pub fn start() -> Result<Postgres, String> {
        let bin = match find_bin() {
            Some(bin) => bin,
            None => {
                install()?;
                find_bin().ok_or("PostgreSQL binaries not found after installing")?
            }
        };
        let work = tempfile::tempdir().map_err(|e| e.to_string())?;
        let run_as = is_root().then(|| "postgres".to_owned());
        if run_as.is_some() {
            check(
                Command::new("chown")
                    .arg("-R")
                    .arg("postgres")
                    .arg(work.path())
                    .output(),
                "chown",
            )?;
        }
        let postgres = Postgres {
            bin,
            data: work.path().join("data"),
            port: free_port()?,
            work,
            run_as,
        };
        postgres.server_command(
            "initdb",
            &[
                "-D",
                &postgres.data_str(),
                "-U",
                "souk",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
        )?;
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c max_connections=300",
            postgres.port,
            postgres.work.path().display()
        );
        let log = postgres.work.path().join("postgres.log");
        postgres.server_command(
            "pg_ctl",
            &[
                "-D",
                &postgres.data_str(),
                "-o",
                &options,
                "-l",
                &log.display().to_string(),
                "-w",
                "start",
            ],
        )?;
        Ok(postgres)
    }

    fn data_str(&self) -> String {
        self.data.display().to_string()
    }

    fn server_command(&self, program: &str, args: &[&str]) -> Result<Output, String> {
        let program = self.bin.join(program);
        let output = match &self.run_as {
            Some(user) => Command::new("runuser")
                .args(["-u", user, "--"])
                .arg(&program)
                .args(args)
                .current_dir(self.work.path())
                .output(),
            None => Command::new(&program).args(args).output(),
        };
        check(output, &program.display().to_string())
    }

    /// Runs SQL as the `souk` superuser.
    pub fn psql(&self, sql: &str) -> Result<(), String> {
        let psql = self.bin.join("psql");
        check(
            Command::new(psql)
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "souk",
                    "-d",
                    "postgres",
                ])
                .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
                .output(),
            "psql",
        )
        .map(|_| ())
    }

    /// Runs a pgbench script with `clients` connections for `seconds`.
    pub fn pgbench(
        &self,
        script: &str,
        clients: usize,
        seconds: u64,
    ) -> Result<PgbenchResult, String> {
        let run = tempfile::tempdir().map_err(|e| e.to_string())?;
        let script_path = run.path().join("script.sql");
        fs::write(&script_path, script).map_err(|e| e.to_string())?;
        let output = check(
            Command::new(self.bin.join("pgbench"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "souk",
                    "-n",
                    "-l",
                ])
                .args([
                    "-c",
                    &clients.to_string(),
                    "-j",
                    &clients.min(2).to_string(),
                ])
                .args(["-T", &seconds.to_string(), "-f"])
                .arg(&script_path)
                .arg("postgres")
                .current_dir(run.path())
                .output(),
            "pgbench",
        )?;
        let text = String::from_utf8_lossy(&output.stdout);
        let tps = text
            .lines()
            .find(|line| line.starts_with("tps ="))
            .and_then(|line| line.split_whitespace().nth(2))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("no tps in pgbench output:\n{text}"))?;
        let (p50_us, p99_us) = latency_percentiles(run.path())?;
        Ok(PgbenchResult {
            transactions_per_second: tps,
            p50_us,
            p99_us,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

/// p50 and p99 from pgbench's per-transaction logs (third column: µs).
fn latency_percentiles(dir: &Path) -> Result<(u64, u64), String> {
    let mut latencies = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| e.to_string())?.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with("pgbench_log")
        {
            continue;
        }
        let text = fs::read_to_string(entry.path()).map_err(|e| e.to_string())?;
        latencies.extend(
            text.lines()
                .filter_map(|line| line.split_whitespace().nth(2)?.parse::<u64>().ok()),
        );
    }
    if latencies.is_empty() {
        return Err("pgbench wrote no transaction log".into());
    }
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    Ok((at(0.50), at(0.99)))
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.server_command(
            "pg_ctl",
            &["-D", &self.data_str(), "-m", "fast", "-w", "stop"],
        );
    }
}
