//! The `souk` binary started as an operator starts it, for the tests that
//! need a real process (signals, SIGKILL, subcommands).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use souk_client::{ClientConfig, Trust};

pub struct Souk {
    pub child: Child,
    pub addr: SocketAddr,
    pub fingerprint: [u8; 32],
    /// The HTTP bridge's address.
    pub http: SocketAddr,
}

impl Souk {
    /// Starts `souk` on a free loopback port with `args` and `data` as its
    /// data directory (and keyspace, on CQL), and reads the address and certificate fingerprint
    /// from its banner.
    pub fn spawn(args: &[&str], data: &Path, stderr: Stdio) -> Souk {
        Souk::spawn_on(args, data, stderr, &super::storage::storage_args(data))
    }

    /// The same, storing where `storage` (flags) says.
    pub fn spawn_on(args: &[&str], data: &Path, stderr: Stdio, storage: &[String]) -> Souk {
        let mut child = Command::new(env!("CARGO_BIN_EXE_souk"))
            .args(["--listen", "127.0.0.1:0", "--pin-threads", "false"])
            .args(["--http-listen", "127.0.0.1:0"])
            .args(args)
            .args(storage)
            .arg("--data-dir")
            .arg(data)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let listening = stdout.next().unwrap().unwrap();
        let addr = listening
            .split_whitespace()
            .nth(3)
            .unwrap()
            .parse()
            .unwrap();
        let fingerprint = stdout.next().unwrap().unwrap();
        let fingerprint = hex::decode(fingerprint.rsplit(' ').next().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let http = stdout
            .find_map(|line| {
                let line = line.unwrap();
                let url = line.strip_prefix("storefront and HTTP/JSON API: ")?;
                let rest = url.split_once("://")?.1;
                rest.split('/').next()?.parse().ok()
            })
            .unwrap();
        Souk {
            child,
            addr,
            fingerprint,
            http,
        }
    }

    /// Runs `souk create-admin` on `data` (souk stopped), the password on
    /// standard input, as an operator does.
    pub fn create_admin(data: &Path, email: &str, password: &str) -> std::process::Output {
        Souk::create_admin_on(data, email, password, &super::storage::storage_args(data))
    }

    /// The same, storing where `storage` (flags) says.
    pub fn create_admin_on(
        data: &Path,
        email: &str,
        password: &str,
        storage: &[String],
    ) -> std::process::Output {
        use std::io::Write;
        let mut create = Command::new(env!("CARGO_BIN_EXE_souk"))
            .args(["create-admin", "--email", email])
            .args(storage)
            .arg("--data-dir")
            .arg(data)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = create.stdin.take().unwrap();
        stdin.write_all(format!("{password}\n").as_bytes()).unwrap();
        drop(stdin);
        create.wait_with_output().unwrap()
    }

    pub fn client_config(&self) -> ClientConfig {
        ClientConfig::new(self.addr, Trust::Fingerprint(self.fingerprint))
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test that fails leaves no server behind.
impl Drop for Souk {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
