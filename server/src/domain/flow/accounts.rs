//! Accounts: register, login, refresh, sign-outs, profile and addresses.

use std::cell::RefCell;
use std::rc::Rc;

use super::*;

/// Credentials just issued, with the refresh-token family they belong to.
pub(super) struct Granted {
    grant: SessionGrant,
    family: [u8; 16],
    issued_at: UnixMillis,
}

/// Binds a grant's identity to the connection, remembering its refresh
/// family so that logout can revoke it.
pub(super) fn bind(session: &RefCell<Session>, granted: Granted) -> SessionGrant {
    let mut session = session.borrow_mut();
    let identity = Identity {
        user_id: granted.grant.user_id,
        role: granted.grant.role,
        access_expires_at: granted.grant.access_expires_at,
    };
    session.sign_in(identity, granted.issued_at);
    session.refresh_family = Some(granted.family);
    granted.grant
}

fn random_bytes<const N: usize, P: Ports>(ports: &P) -> [u8; N] {
    let mut bytes = [0u8; N];
    ports.fill_random(&mut bytes);
    bytes
}

pub(super) async fn register_user<P: Ports>(
    ports: &Rc<P>,
    register: souk_wire::api::Register,
    now: UnixMillis,
) -> Result<Granted, ApiError> {
    let email = rules::normalize_email(&register.email)?;
    rules::check_password(&register.password)?;
    let password = register.password;
    let cost = ports.state().borrow().commerce.password_cost;
    let salt = random_bytes(ports.as_ref());
    let password_hash = ports
        .offload(move || rules::hash_password(&password, cost, salt))
        .await
        .ok_or_else(|| ApiError::new(ErrorStatus::Internal, "password hashing failed"))?;
    let id = UserId(ports.state().borrow_mut().ids.next(now));
    let user = UserRecord {
        id,
        email,
        password_hash,
        name: register.name,
        role: Role::Customer,
        created_at: now,
    };
    match ports.store().create_user(&user).await {
        Ok(()) => {}
        Err(StorageError::Conflict(_)) => {
            return Err(ApiError::new(
                ErrorStatus::Conflict,
                "an account with this e-mail exists: sign in",
            ));
        }
        Err(error) => return Err(storage_failure(error)),
    }
    grant(ports, &user, None, now).await
}

/// Signs in, and moves the device's guest cart into the user's cart.
pub(super) async fn login<P: Ports>(
    ports: &Rc<P>,
    session: &RefCell<Session>,
    login: souk_wire::api::Login,
    now: UnixMillis,
) -> Response {
    let device = login.device_id.clone();
    let remote = session.borrow().remote;
    let granted = log_in(ports, login, remote, now).await?;
    let grant = bind(session, granted);
    if let Some(device) = device {
        // A failed merge leaves the guest cart where it was; the login
        // itself has succeeded.
        if let Err(error) = super::carts::merge_guest_cart(ports, grant.user_id, device).await {
            debug!(%error, "guest cart not merged at login");
        }
    }
    Ok(ResponseBody::SessionGrant(grant))
}

async fn log_in<P: Ports>(
    ports: &Rc<P>,
    login: souk_wire::api::Login,
    remote: Option<std::net::IpAddr>,
    now: UnixMillis,
) -> Result<Granted, ApiError> {
    let refused = || ApiError::new(ErrorStatus::Unauthenticated, "wrong e-mail or password");
    let email = rules::normalize_email(&login.email).map_err(|_| refused())?;
    if login.password.len() > limits::PASSWORD_BYTES_MAX {
        return Err(refused());
    }
    let mut keys = vec![LoginKey::Account(email.clone())];
    keys.extend(remote.map(LoginKey::Address));
    let attempt_id = u64::from_le_bytes(random_bytes(ports.as_ref()));
    // Refused before any hashing: a brute-force run costs us nothing more.
    login_attempt(ports, &keys, Attempt::Begin, attempt_id, now).await?;
    let user = ports
        .store()
        .user_by_email(&email)
        .await
        .map_err(storage_failure)?;
    let phc = user
        .as_ref()
        .map_or(rules::UNKNOWN_USER_HASH.to_owned(), |u| {
            u.password_hash.clone()
        });
    let password = login.password;
    let matches = ports
        .offload(move || rules::verify_password(&phc, &password))
        .await
        .ok_or_else(|| ApiError::new(ErrorStatus::Internal, "password check failed"))?;
    match user {
        Some(user) if matches => {
            let succeeded = Attempt::Succeeded { forgive: true };
            login_attempt(ports, &keys, succeeded, attempt_id, now).await?;
            grant(ports, &user, None, now).await
        }
        _ => Err(refused()),
    }
}

/// Ends this connection's session (its refresh-token family is revoked),
/// or with `all_devices` every session of the user.
pub(super) async fn logout<P: Ports>(
    ports: &Rc<P>,
    session: &RefCell<Session>,
    all_devices: bool,
    now: UnixMillis,
) -> Response {
    if all_devices {
        let user = domain::require_customer(&session.borrow(), now)?;
        sign_out_everywhere(ports, user, now).await?;
        // A retry whose first reply was lost is told what happened.
        session.borrow_mut().end_signed_out();
        return Ok(ResponseBody::Empty);
    }
    let family = {
        let mut session = session.borrow_mut();
        session.identity = None;
        session.refresh_family.take()
    };
    if let Some(family) = family {
        ports
            .sessions()
            .revoke_token_family(&family)
            .await
            .map_err(storage_failure)?;
    }
    Ok(ResponseBody::Empty)
}

/// Makes `refresh_token`'s family the session's, so that a logout revokes
/// it: how a client without a connection-long session (the HTTP bridge,
/// which holds the token in a cookie) names the session it ends. An
/// unknown token leaves the session as it is.
pub async fn adopt_refresh_family<P: Ports>(
    ports: &Rc<P>,
    session: &RefCell<Session>,
    refresh_token: &str,
) -> Result<(), ApiError> {
    let hash = rules::refresh_token_hash(refresh_token);
    let record = ports
        .sessions()
        .refresh_token(&hash)
        .await
        .map_err(storage_failure)?;
    if let Some(record) = record {
        session.borrow_mut().refresh_family = Some(record.family);
    }
    Ok(())
}

pub(super) async fn update_profile<P: Ports>(
    ports: &Rc<P>,
    user: UserId,
    name: Option<String>,
) -> Response {
    let mut record = user_record(ports, user).await?;
    record.name = name.filter(|n| !n.trim().is_empty());
    ports
        .store()
        .update_user(&record)
        .await
        .map_err(storage_failure)?;
    profile(ports, user).await
}

pub(super) async fn delete_address<P: Ports>(
    ports: &Rc<P>,
    user: UserId,
    address_id: AddressId,
) -> Response {
    let existed = ports
        .store()
        .delete_address(user, address_id)
        .await
        .map_err(storage_failure)?;
    if !existed {
        return Err(ApiError::new(
            ErrorStatus::NotFound,
            format!("no address {}", address_id.0),
        ));
    }
    Ok(ResponseBody::Empty)
}

/// Asks each key's owner about a login attempt (or Redis, with
/// `--redis`, so that every node counts together); the first refusal wins.
/// `id` names this attempt, so that its success takes back its own count.
async fn login_attempt<P: Ports>(
    ports: &Rc<P>,
    keys: &[LoginKey],
    attempt: Attempt,
    id: u64,
    now: UnixMillis,
) -> Result<(), ApiError> {
    if let Some(redis) = ports.shared_limits() {
        for key in keys {
            let text = key.text();
            let (max, forgive) = match key {
                LoginKey::Account(_) => (limits::LOGIN_FAILURES_PER_ACCOUNT, true),
                // As on a shard: an address's count is shared by everyone
                // behind it, so a success takes back only its own.
                LoginKey::Address(_) => (limits::LOGIN_FAILURES_PER_ADDRESS, false),
            };
            match attempt {
                Attempt::Begin => {
                    let window = limits::LOGIN_FAILURE_WINDOW.as_millis() as u64;
                    let wait = redis
                        .attempt_begin(&text, id, max, window, now)
                        .await
                        .map_err(storage_failure)?;
                    if let Some(wait) = wait {
                        return Err(throttle::too_many_failures(wait));
                    }
                }
                Attempt::Succeeded { .. } => redis
                    .attempt_succeeded(&text, id, forgive)
                    .await
                    .map_err(storage_failure)?,
            }
        }
        return Ok(());
    }
    let placement = placement(ports);
    let calls = keys.iter().map(|key| {
        let owner = placement.text_owner(&key.text());
        let call = ShardCall::LoginAttempt {
            key: key.clone(),
            attempt,
        };
        call_owner(ports, owner, call)
    });
    for answer in join_all(calls).await {
        match answer? {
            ShardAnswer::Throttled(result) => result?,
            other => unreachable!("a login attempt answered with {other:?}"),
        }
    }
    Ok(())
}

/// Issues an access token and a refresh token (of a new family, or of
/// `family` when rotating).
async fn grant<P: Ports>(
    ports: &Rc<P>,
    user: &UserRecord,
    rotating: Option<(&[u8; 32], [u8; 16])>,
    now: UnixMillis,
) -> Result<Granted, ApiError> {
    let tokens = ports.state().borrow().tokens.clone();
    let (access_token, access_expires_at) =
        tokens.issue(user.id, user.role, now, random_bytes(ports.as_ref()));
    let (refresh_token, token_hash) = rules::new_refresh_token(random_bytes(ports.as_ref()));
    let family = match rotating {
        Some((_, family)) => family,
        None => random_bytes(ports.as_ref()),
    };
    let record = RefreshTokenRecord {
        token_hash,
        user_id: user.id,
        family,
        issued_at: now,
        expires_at: UnixMillis(now.0 + limits::REFRESH_TOKEN_TTL.as_millis() as u64),
        rotated_at: None,
        revoked: false,
    };
    let stored = match rotating {
        None => ports.sessions().put_refresh_token(&record).await,
        Some((old, _)) => ports.sessions().rotate_refresh_token(old, &record).await,
    };
    match stored {
        Ok(()) => {}
        Err(StorageError::Conflict(_)) => {
            return Err(ApiError::new(
                ErrorStatus::Unauthenticated,
                "refresh token already used: sign in again",
            ));
        }
        Err(error) => return Err(storage_failure(error)),
    }
    let grant = SessionGrant {
        user_id: user.id,
        role: user.role,
        access_token,
        access_expires_at,
        refresh_token,
    };
    Ok(Granted {
        grant,
        family,
        issued_at: now,
    })
}

/// Rotates a refresh token. Presenting one that was already rotated means
/// it was copied: the whole family is revoked, the thief's copy with the
/// owner's.
pub(super) async fn refresh<P: Ports>(
    ports: &Rc<P>,
    token: &str,
    now: UnixMillis,
) -> Result<Granted, ApiError> {
    let refused = |why: &str| ApiError::new(ErrorStatus::Unauthenticated, why.to_owned());
    let hash = rules::refresh_token_hash(token);
    let Some(record) = ports
        .sessions()
        .refresh_token(&hash)
        .await
        .map_err(storage_failure)?
    else {
        return Err(refused("unknown refresh token: sign in again"));
    };
    if record.rotated_at.is_some() {
        let revoked = ports.sessions().revoke_token_family(&record.family).await;
        warn!(
            user = record.user_id.0,
            ?revoked,
            "a rotated refresh token was reused; its family is revoked"
        );
        return Err(refused("refresh token already used: sign in again"));
    }
    if record.revoked || record.expires_at <= now {
        return Err(refused("refresh token expired or revoked: sign in again"));
    }
    signed_out_since(ports, &record).await?;
    let user = ports
        .store()
        .user(record.user_id)
        .await
        .map_err(storage_failure)?
        .ok_or_else(|| refused("the account no longer exists"))?;
    let granted = grant(ports, &user, Some((&hash, record.family)), now).await?;
    // A sign-out everywhere that landed while the token rotated still
    // wins: the new token never leaves the server.
    if let Err(error) = signed_out_since(ports, &record).await {
        let revoked = ports.sessions().revoke_token_family(&record.family).await;
        debug!(
            user = record.user_id.0,
            ?revoked,
            "signed out while refreshing"
        );
        return Err(error);
    }
    Ok(granted)
}

/// Refuses a refresh token issued at or before its user's sign-out cutoff.
async fn signed_out_since<P: Ports>(
    ports: &Rc<P>,
    token: &RefreshTokenRecord,
) -> Result<(), ApiError> {
    let cutoff = ports
        .sessions()
        .signed_out_at(token.user_id)
        .await
        .map_err(storage_failure)?;
    match cutoff {
        Some(cutoff) if token.issued_at <= cutoff => Err(domain::signed_out_everywhere()),
        _ => Ok(()),
    }
}

/// Ends every session of `user` begun by `at`: the durable cutoff refuses
/// their refresh and access tokens from now on, on every node; then every
/// shard of this node is told, so that connections already signed in as
/// the user lose their identity at their next request, and with `--redis`
/// so is every other node (pub/sub, at most once: a node that misses it
/// keeps such connections until their access token expires, at most
/// `ACCESS_TOKEN_TTL`).
async fn sign_out_everywhere<P: Ports>(
    ports: &Rc<P>,
    user: UserId,
    at: UnixMillis,
) -> Result<(), ApiError> {
    // A refresh that began after `at` and finished before the cutoff
    // landed issued tokens after it: a second cutoff, taken once the first
    // is stored, is later than every such refresh's tokens (and every later
    // refresh sees the first). Every token a cutoff can refuse has expired
    // once the refresh-token lifetime has passed.
    let keep = limits::REFRESH_TOKEN_TTL.as_millis() as u64;
    let store = |at: UnixMillis| async move {
        ports
            .sessions()
            .sign_out_everywhere(user, at, UnixMillis(at.0 + keep))
            .await
            .map_err(storage_failure)
    };
    store(at).await?;
    let at = ports.now().max(at);
    store(at).await?;
    if let Some(redis) = &ports.shared_limits()
        && let Err(error) = redis.publish_sign_out(user, at).await
    {
        // Other nodes' open connections then end with their access token.
        warn!(user = user.0, %error, "a sign-out everywhere was not published");
    }
    let mut unreached: Vec<ShardId> = placement(ports).shards().collect();
    for attempt in 1..=limits::SIGN_OUT_ATTEMPTS {
        let calls = unreached
            .iter()
            .map(|&owner| call_owner(ports, owner, ShardCall::SignOut { user, at }));
        let answers = join_all(calls).await;
        unreached = unreached
            .into_iter()
            .zip(answers)
            .filter_map(|(owner, answer)| answer.is_err().then_some(owner))
            .collect();
        if unreached.is_empty() {
            return Ok(());
        }
        if attempt < limits::SIGN_OUT_ATTEMPTS {
            ports.sleep(limits::SETTLE_RETRY_DELAY).await;
        }
    }
    // The cutoff is durable; only open connections on these shards keep
    // their identity, until their access token expires.
    warn!(
        user = user.0,
        shards = ?unreached,
        "shards not told of a sign-out everywhere"
    );
    Ok(())
}

async fn user_record<P: Ports>(ports: &Rc<P>, user: UserId) -> Result<UserRecord, ApiError> {
    ports
        .store()
        .user(user)
        .await
        .map_err(storage_failure)?
        .ok_or_else(|| ApiError::new(ErrorStatus::Unauthenticated, "the account no longer exists"))
}

pub(super) async fn profile<P: Ports>(ports: &Rc<P>, user: UserId) -> Response {
    let record = user_record(ports, user).await?;
    Ok(ResponseBody::Profile(Profile {
        user_id: record.id,
        email: record.email,
        name: record.name,
        role: record.role,
        created_at: record.created_at,
    }))
}

/// Creates (id 0) or replaces one of the user's addresses. At most
/// `ADDRESSES_MAX` per user; one default, so setting a new default clears
/// the old one.
pub(super) async fn upsert_address<P: Ports>(
    ports: &Rc<P>,
    user: UserId,
    mut address: Address,
    now: UnixMillis,
) -> Response {
    let existing = ports
        .store()
        .addresses(user)
        .await
        .map_err(storage_failure)?;
    if address.id == AddressId(0) {
        if existing.len() >= wire_limits::ADDRESSES_MAX {
            return Err(ApiError::new(
                ErrorStatus::LimitExceeded,
                format!(
                    "at most {} addresses per account",
                    wire_limits::ADDRESSES_MAX
                ),
            ));
        }
        address.id = AddressId(ports.state().borrow_mut().ids.next(now));
    } else if !existing.iter().any(|a| a.id == address.id) {
        return Err(ApiError::new(
            ErrorStatus::NotFound,
            format!("no address {}", address.id.0),
        ));
    }
    if address.is_default {
        for mut other in existing
            .into_iter()
            .filter(|a| a.is_default && a.id != address.id)
        {
            other.is_default = false;
            ports
                .store()
                .put_address(user, &other)
                .await
                .map_err(storage_failure)?;
        }
    }
    ports
        .store()
        .put_address(user, &address)
        .await
        .map_err(storage_failure)?;
    Ok(ResponseBody::Address(address))
}
