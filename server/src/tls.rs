//! The server's TLS identity and its QUIC crypto configuration.
//!
//! With `--cert/--key` souk serves that chain. Without them it creates a
//! self-signed certificate in the data directory on first start and reuses it
//! afterwards, so that a client which pinned its fingerprint keeps working
//! across restarts.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use souk_wire::api::ALPN;

use crate::config::TlsSource;

pub const SELF_SIGNED_CERT_FILE: &str = "cert.pem";
pub const SELF_SIGNED_KEY_FILE: &str = "key.pem";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("{path} holds no usable PEM {what}")]
    Pem { path: PathBuf, what: &'static str },
    #[error("cannot create a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("QUIC crypto configuration refused: {0}")]
    Quic(String),
}

/// A certificate chain with its key.
#[derive(Debug)]
pub struct TlsIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// SHA-256 of the leaf certificate's DER: what clients pin.
    pub fingerprint: [u8; 32],
    /// Whether this start created the self-signed certificate.
    pub created: bool,
}

pub fn fingerprint(cert: &CertificateDer<'_>) -> [u8; 32] {
    Sha256::digest(cert.as_ref()).into()
}

/// Loads the configured identity, or the self-signed one in `data_dir`,
/// creating it if absent.
pub fn load_or_create(source: &TlsSource, data_dir: &Path) -> Result<TlsIdentity, TlsError> {
    match source {
        TlsSource::Files { cert, key } => load(cert, key, false),
        TlsSource::SelfSigned => {
            let cert = data_dir.join(SELF_SIGNED_CERT_FILE);
            let key = data_dir.join(SELF_SIGNED_KEY_FILE);
            if cert.exists() && key.exists() {
                return load(&cert, &key, false);
            }
            create_self_signed(&cert, &key)?;
            load(&cert, &key, true)
        }
    }
}

fn load(cert_path: &Path, key_path: &Path, created: bool) -> Result<TlsIdentity, TlsError> {
    let read = |path: &Path| {
        fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(cert_path)?)
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::Pem {
            path: cert_path.to_path_buf(),
            what: "certificate",
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::Pem {
            path: cert_path.to_path_buf(),
            what: "certificate",
        });
    };
    let fingerprint = fingerprint(leaf);
    let key = PrivateKeyDer::from_pem_slice(&read(key_path)?).map_err(|_| TlsError::Pem {
        path: key_path.to_path_buf(),
        what: "private key",
    })?;
    Ok(TlsIdentity {
        chain,
        key,
        fingerprint,
        created,
    })
}

fn create_self_signed(cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
    let names = vec!["localhost".to_owned(), "souk.local".to_owned()];
    let certified = rcgen::generate_simple_self_signed(names)?;
    write_private(key_path, certified.signing_key.serialize_pem().as_bytes())?;
    fs::write(cert_path, certified.cert.pem()).map_err(|source| TlsError::Write {
        path: cert_path.to_path_buf(),
        source,
    })
}

/// Writes a secret readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let error = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(error)?;
    file.write_all(bytes).map_err(error)?;
    file.sync_all().map_err(error)
}

/// The rustls crypto provider souk uses everywhere (ring: no C toolchain
/// surprises, and fast AES-GCM/ChaCha20 on x86-64 and ARM).
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The QUIC server crypto: TLS 1.3 only, ALPN `souk/1`, 0-RTT enabled (the
/// request layer admits early data only for safe reads).
pub fn quic_server_crypto(
    identity: &TlsIdentity,
) -> Result<quinn::crypto::rustls::QuicServerConfig, TlsError> {
    let mut tls = rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.max_early_data_size = u32::MAX;
    quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| TlsError::Quic(e.to_string()))
}

/// The HTTP bridge's TLS: 1.3 and 1.2 (browsers and CDNs still speak
/// it), HTTP/2 preferred by ALPN, HTTP/1.1 otherwise. No early data: a
/// replayed HTTP request has no safe-read gate in front of it.
pub fn http_server_crypto(identity: &TlsIdentity) -> Result<rustls::ServerConfig, TlsError> {
    let mut tls = rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_identity_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(&TlsSource::SelfSigned, dir.path()).unwrap();
        assert!(first.created);
        let second = load_or_create(&TlsSource::SelfSigned, dir.path()).unwrap();
        assert!(!second.created);
        assert_eq!(first.fingerprint, second.fingerprint);
        let mode = fs::metadata(dir.path().join(SELF_SIGNED_KEY_FILE))
            .unwrap()
            .permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.mode() & 0o777, 0o600);
        quic_server_crypto(&second).unwrap();
    }

    #[test]
    fn garbage_pem_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("k.pem");
        fs::write(&cert, "not a certificate").unwrap();
        fs::write(&key, "not a key").unwrap();
        let source = TlsSource::Files { cert, key };
        assert!(matches!(
            load_or_create(&source, dir.path()),
            Err(TlsError::Pem { .. })
        ));
    }
}
