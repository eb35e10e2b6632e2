//! Credentials: password hashing, access tokens, refresh tokens.
//!
//! Passwords are kept only as Argon2id PHC strings. Access tokens are JWTs
//! (HS256) signed with the server's token key, so any shard can check one
//! on its own; the one storage read at `Authenticate` is the user's
//! sign-out cutoff (`sign_outs`), which refuses tokens issued before it.
//! Refresh tokens are random; only their SHA-256 is stored.
//!
//! Hashing a password costs tens of milliseconds of CPU: callers run
//! `hash_password` and `verify_password` on the runtime's blocking pool,
//! never on a shard's event loop.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use souk_wire::api::{ApiError, ErrorStatus, Identity, Role, UnixMillis, UserId};

use crate::limits::{ACCESS_TOKEN_TTL, PASSWORD_BYTES_MAX, PASSWORD_CHARS_MIN};

/// Bytes of the HMAC key that signs access tokens.
pub const TOKEN_KEY_BYTES: usize = 32;

/// Signs and checks access tokens.
///
/// HS256, pinned: only souk verifies its tokens, once per connection (at
/// `Authenticate`), so a shared secret costs nothing that an asymmetric
/// algorithm would save, and HMAC verifies in about a microsecond, far
/// below an Ed25519 verify. If other services must one day verify tokens
/// without being able to mint them, EdDSA is the switch, behind a new
/// `kid`.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// Names the key in each token's header, so that keys can be rotated.
    kid: String,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(..)")
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// The user id.
    sub: String,
    role: String,
    /// Seconds since the epoch, as JWT has them.
    iat: u64,
    exp: u64,
    iss: String,
    aud: String,
    /// A unique id per token, for audit logs and a future deny list.
    jti: String,
    /// `iat` in milliseconds, to compare with a sign-out cutoff; tokens
    /// from before this claim count from the start of their `iat` second.
    #[serde(default)]
    iat_ms: Option<u64>,
}

/// What a genuine, current access token proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub identity: Identity,
    /// When the token was issued, for sign-out cutoffs.
    pub issued_at: UnixMillis,
}

const ISSUER: &str = "souk";
const AUDIENCE: &str = "souk-api";

impl TokenKeys {
    pub fn new(secret: &[u8]) -> TokenKeys {
        // `Validation::new` accepts exactly the one algorithm: a token
        // claiming `none` or any other algorithm is refused.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        // Expiry is checked against the request's `now` below, not the
        // library's clock, so that handlers stay deterministic.
        validation.validate_exp = false;
        let digest = Sha256::digest(secret);
        TokenKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            kid: hex::encode(&digest[..8]),
        }
    }

    /// An access token for `user`, and when it expires. `jti` (16 random
    /// bytes) makes each token unique.
    pub fn issue(
        &self,
        user: UserId,
        role: Role,
        now: UnixMillis,
        jti: [u8; 16],
    ) -> (String, UnixMillis) {
        let expires = UnixMillis(now.0 + ACCESS_TOKEN_TTL.as_millis() as u64);
        let claims = Claims {
            sub: user.0.to_string(),
            role: role_name(role).to_owned(),
            iat: now.0 / 1000,
            exp: expires.0 / 1000,
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            jti: hex::encode(jti),
            iat_ms: Some(now.0),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding)
            .expect("HS256 signing does not fail");
        (token, UnixMillis(claims.exp * 1000))
    }

    /// The identity an access token proves, if it is genuine and current.
    pub fn verify(&self, token: &str, now: UnixMillis) -> Result<Verified, ApiError> {
        let invalid = || ApiError::new(ErrorStatus::Unauthenticated, "invalid access token");
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
        if header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err(invalid());
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| invalid())?;
        let claims = data.claims;
        if claims.exp * 1000 <= now.0 {
            return Err(ApiError::new(
                ErrorStatus::Unauthenticated,
                "access token expired: refresh",
            ));
        }
        let user = claims.sub.parse().map_err(|_| invalid())?;
        let role = match claims.role.as_str() {
            "customer" => Role::Customer,
            "admin" => Role::Admin,
            _ => return Err(invalid()),
        };
        Ok(Verified {
            identity: Identity {
                user_id: UserId(user),
                role,
                access_expires_at: UnixMillis(claims.exp * 1000),
            },
            issued_at: UnixMillis(claims.iat_ms.unwrap_or(claims.iat * 1000)),
        })
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Customer => "customer",
        Role::Admin => "admin",
    }
}

/// The e-mail as stored: trimmed and lower-cased, after a shape check.
/// Whether the mailbox exists is for a confirmation mail to find out.
pub fn normalize_email(email: &str) -> Result<String, ApiError> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if !valid {
        return Err(ApiError::bad_request("not an e-mail address"));
    }
    Ok(email)
}

pub fn check_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < PASSWORD_CHARS_MIN {
        return Err(ApiError::bad_request(format!(
            "a password has at least {PASSWORD_CHARS_MIN} characters"
        )));
    }
    if password.len() > PASSWORD_BYTES_MAX {
        return Err(ApiError::bad_request(format!(
            "a password has at most {PASSWORD_BYTES_MAX} bytes"
        )));
    }
    Ok(())
}

/// How much work an Argon2id hash takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordCost {
    pub memory_kib: u32,
    pub passes: u32,
}

impl PasswordCost {
    /// The OWASP minimum (19 MiB, 2 passes): what servers use.
    pub const STANDARD: PasswordCost = PasswordCost {
        memory_kib: argon2::Params::DEFAULT_M_COST,
        passes: argon2::Params::DEFAULT_T_COST,
    };
    /// Argon2's smallest, for the simulator, which hashes thousands of
    /// passwords in a debug build. Still real Argon2id.
    pub const CHEAPEST: PasswordCost = PasswordCost {
        memory_kib: argon2::Params::MIN_M_COST,
        passes: argon2::Params::MIN_T_COST,
    };
}

/// Argon2id of `password` with `salt` (16 random bytes), as a PHC string
/// that carries its own parameters.
pub fn hash_password(password: &str, cost: PasswordCost, salt: [u8; 16]) -> String {
    let params = argon2::Params::new(
        cost.memory_kib,
        cost.passes,
        argon2::Params::DEFAULT_P_COST,
        None,
    )
    .expect("PasswordCost holds valid Argon2 parameters");
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_with_salt(password.as_bytes(), &salt)
        .expect("hashing with a 16-byte salt does not fail")
        .to_string()
}

/// Whether `password` matches `phc`, with the parameters `phc` names.
pub fn verify_password(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// A valid Argon2id hash (of a password nobody has) with the same
/// parameters as real ones: checking a login for an unknown e-mail against
/// it takes as long as a wrong password, so timing reveals no accounts.
pub const UNKNOWN_USER_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c291a3NvdWtzb3Vrc291aw$W9Y2w3K0RkqQ0X2V0pU8w1c8l0H6iJgP6b4H0p0oXrw";

/// A refresh token made of 32 random bytes, and the hash that is stored in
/// its place.
pub fn new_refresh_token(random: [u8; 32]) -> (String, [u8; 32]) {
    let token = hex::encode(random);
    let hash = refresh_token_hash(&token);
    (token, hash)
}

pub fn refresh_token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixMillis = UnixMillis(1_800_000_000_000);

    #[test]
    fn access_tokens_prove_who_and_expire() {
        let keys = TokenKeys::new(&[7; 32]);
        let (token, expires) = keys.issue(UserId(42), Role::Customer, NOW, [1; 16]);
        let identity = keys.verify(&token, NOW).unwrap().identity;
        assert_eq!(identity.user_id, UserId(42));
        assert_eq!(identity.role, Role::Customer);
        assert_eq!(identity.access_expires_at, expires);
        assert_eq!(keys.verify(&token, NOW).unwrap().issued_at, NOW);
        let expired = keys.verify(&token, expires).unwrap_err();
        assert!(expired.message.contains("expired"));
        let other = TokenKeys::new(&[8; 32]);
        assert_eq!(
            other.verify(&token, NOW).unwrap_err().status,
            ErrorStatus::Unauthenticated,
            "another server's key does not verify"
        );
        let mut forged = token.clone();
        forged.replace_range(forged.len() - 4.., "AAAA");
        assert!(keys.verify(&forged, NOW).is_err());
    }

    /// A token with these header and claims, signed with `secret`.
    fn forge(
        alg: Algorithm,
        kid: Option<String>,
        claims: serde_json::Value,
        secret: &[u8],
    ) -> String {
        let mut header = Header::new(alg);
        header.kid = kid;
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    #[test]
    fn tokens_with_the_wrong_algorithm_issuer_audience_or_key_are_refused() {
        let secret = [7u8; 32];
        let keys = TokenKeys::new(&secret);
        let exp = NOW.0 / 1000 + 600;
        let claims = |iss: &str, aud: &str| {
            serde_json::json!({"sub": "42", "role": "admin", "iat": NOW.0 / 1000, "exp": exp,
                "iss": iss, "aud": aud, "jti": "x"})
        };
        let kid = Some(keys.kid.clone());
        let good = forge(
            Algorithm::HS256,
            kid.clone(),
            claims(ISSUER, AUDIENCE),
            &secret,
        );
        assert_eq!(
            keys.verify(&good, NOW).unwrap().identity.role,
            Role::Admin,
            "the control case passes"
        );
        for (why, token) in [
            (
                "another algorithm",
                forge(
                    Algorithm::HS384,
                    kid.clone(),
                    claims(ISSUER, AUDIENCE),
                    &secret,
                ),
            ),
            (
                "wrong issuer",
                forge(
                    Algorithm::HS256,
                    kid.clone(),
                    claims("evil", AUDIENCE),
                    &secret,
                ),
            ),
            (
                "wrong audience",
                forge(
                    Algorithm::HS256,
                    kid.clone(),
                    claims(ISSUER, "other"),
                    &secret,
                ),
            ),
            (
                "unknown key id",
                forge(
                    Algorithm::HS256,
                    Some("0000".into()),
                    claims(ISSUER, AUDIENCE),
                    &secret,
                ),
            ),
            (
                "no key id",
                forge(Algorithm::HS256, None, claims(ISSUER, AUDIENCE), &secret),
            ),
        ] {
            let refused = keys.verify(&token, NOW).unwrap_err();
            assert_eq!(refused.status, ErrorStatus::Unauthenticated, "{why}");
        }
        // `alg: none`: header and claims with an empty signature.
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(format!(
            r#"{{"alg":"none","typ":"JWT","kid":"{}"}}"#,
            keys.kid
        ));
        let body = b64.encode(claims(ISSUER, AUDIENCE).to_string());
        let unsigned = format!("{header}.{body}.");
        assert_eq!(
            keys.verify(&unsigned, NOW).unwrap_err().status,
            ErrorStatus::Unauthenticated
        );
    }

    #[test]
    fn every_token_has_its_own_id() {
        let keys = TokenKeys::new(&[7; 32]);
        let (a, _) = keys.issue(UserId(1), Role::Customer, NOW, [1; 16]);
        let (b, _) = keys.issue(UserId(1), Role::Customer, NOW, [2; 16]);
        assert_ne!(a, b);
    }

    #[test]
    fn passwords_are_checked_and_verified() {
        assert!(check_password("short").is_err());
        assert!(check_password(&"x".repeat(PASSWORD_BYTES_MAX + 1)).is_err());
        let hash = hash_password("correct horse", PasswordCost::CHEAPEST, [9; 16]);
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(&hash, "correct horse"));
        assert!(!verify_password(&hash, "correct horsf"));
        assert!(!verify_password("not a hash", "correct horse"));
        assert!(
            PasswordHash::new(UNKNOWN_USER_HASH).is_ok(),
            "the stand-in hash must parse, or unknown e-mails would answer fast"
        );
        assert!(!verify_password(UNKNOWN_USER_HASH, "correct horse"));
    }

    #[test]
    fn emails_are_normalized() {
        assert_eq!(
            normalize_email(" Ada@Example.ORG ").unwrap(),
            "ada@example.org"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.org",
            "ada@example",
            "a da@example.org",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?}");
        }
    }
}
