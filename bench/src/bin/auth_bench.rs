//! What authentication costs: one Argon2id login check, and one access
//! token verified (which souk does once per connection, at `Authenticate`,
//! never per request).
//!
//!     cargo run --release -p souk-bench --bin auth-bench

use std::time::{Duration, Instant};

use clap::Parser;
use souk_bench::median;
use souk_server::domain::accounts::{TokenKeys, hash_password, verify_password};
use souk_wire::api::{Role, UnixMillis, UserId};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// Login checks timed (each is tens of milliseconds).
    #[arg(long, default_value_t = 20)]
    logins: usize,
    /// Seconds of token verification per run.
    #[arg(long, default_value_t = 2)]
    seconds: u64,
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

fn main() {
    let args = Args::parse();
    let phc = hash_password("correct horse battery");
    let mut logins = Vec::new();
    for _ in 0..args.logins {
        let began = Instant::now();
        assert!(verify_password(&phc, "correct horse battery"));
        logins.push(began.elapsed().as_secs_f64() * 1000.0);
    }
    let keys = TokenKeys::new(&[7; 32]);
    let now = UnixMillis(1_800_000_000_000);
    let (token, _) = keys.issue(UserId(42), Role::Customer, now);
    let mut verifies = Vec::new();
    for _ in 0..args.runs {
        let deadline = Instant::now() + Duration::from_secs(args.seconds);
        let began = Instant::now();
        let mut n = 0u64;
        while Instant::now() < deadline {
            for _ in 0..1000 {
                assert!(keys.verify(&token, now).is_ok());
            }
            n += 1000;
        }
        verifies.push(began.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
    println!(
        "Argon2id (m=19 MiB, t=2, p=1) login check: median {:.1} ms of one core ({} checks)",
        median(logins),
        args.logins
    );
    println!(
        "HS256 access-token verify (with its claims): median {:.2} µs ({} runs of {} s)",
        median(verifies),
        args.runs,
        args.seconds
    );
}
