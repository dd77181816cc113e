//! Sign-in flows: the gate's check of a CONNECT, login / refresh / logout, first-boot
//! setup, password changes, and device / node credentials.
//!
//! Passwords and tokens arrive sealed (the gate and the local CLI seal them) and
//! leave sealed: a token in a reply is sealed, and the gate opens it only on the
//! client's own connection. Nothing here logs a password, a token or a hash.

use cubeos_contract::api::Deleted;
use cubeos_contract::api::registry::{
    AuthConnect, AuthLogin, AuthLogout, Granted, IssuedToken, LoggedOut, PasswordChanged, Refreshed, Revoked, Session,
    Setup, SetupState, TokenIssue, TokensRevoked, UserPasswd,
};
use cubeos_contract::envelope::Caller;
use cubeos_contract::models::User;
use cubeos_contract::roles::Role;
use cubeos_contract::secret::Secret;
use cubeos_contract::topics;
use zeroize::Zeroizing;

use crate::error::{RegistryError, Result};
use crate::throttle::Refused;
use crate::tokens::{self, Kind, TOKEN_PREFIX};
use crate::{Registry, settings, users};

/// What a sign-in secret proved: a user's password (the user as just read), or a
/// token.
enum Verified {
    Password(User),
    Token(Granted),
}

impl Verified {
    fn granted(self) -> Granted {
        match self {
            Verified::Password(user) => Granted {
                user: user.username,
                role: user.role,
                session: None,
            },
            Verified::Token(granted) => granted,
        }
    }

    /// The user whose password it was; a token is never taken for a password.
    fn user(self) -> Result<User> {
        match self {
            Verified::Password(user) => Ok(user),
            Verified::Token(_) => Err(wrong_credentials()),
        }
    }
}

fn wrong_credentials() -> RegistryError {
    RegistryError::Unauthorized("wrong username or password".into())
}

impl Registry {
    fn throttle_keys(username: &str, address: &str) -> Vec<String> {
        vec![format!("user:{username}"), format!("addr:{address}")]
    }

    /// Checks a password (or, with `tokens`, also a token) for `username`.
    ///
    /// A password attempt is counted against the user and the address before it
    /// is checked ([`throttle`](crate::throttle)), and refused without a hash while
    /// either is locked out. Tokens are not throttled: 256 random bits cannot be
    /// guessed, and a flood of wrong passwords must not lock a dashboard's session
    /// out.
    async fn check_secret(
        &self,
        username: &str,
        secret: &Secret,
        address: Option<&str>,
        tokens: bool,
    ) -> Result<Verified> {
        let plain = self.secrets.reveal(secret)?;
        let user = cubeos_contract::validate::truncate(username, 64);
        let address = address.unwrap_or("local");
        if plain.starts_with(TOKEN_PREFIX) {
            if !tokens {
                return Err(wrong_credentials());
            }
            return match self.check_token(username, &plain).await? {
                Some(granted) => Ok(Verified::Token(granted)),
                None => {
                    tracing::info!(%user, address, "sign-in failed: unknown or expired token");
                    Err(wrong_credentials())
                }
            };
        }
        let keys = Self::throttle_keys(username, address);
        let attempt = match self.throttle.attempt(&keys).await {
            Ok(attempt) => attempt,
            Err(Refused::Locked(wait)) => {
                let wait = wait.as_secs().max(1);
                tracing::info!(%user, address, wait_s = wait, "sign-in refused: locked out");
                return Err(RegistryError::Unauthorized(format!(
                    "locked out, try again in {wait} s (too many failed sign-ins)"
                )));
            }
            Err(Refused::Busy) => {
                tracing::info!(%user, address, "sign-in refused: too many at once");
                return Err(RegistryError::Busy(
                    "too many sign-ins at once; try again in a moment".into(),
                ));
            }
        };
        // An attempt that ends in an error (the hasher busy, say) counts as failed.
        match self.check_password(username, plain).await? {
            Some(user) => {
                attempt.succeeded();
                Ok(Verified::Password(user))
            }
            None => {
                tracing::info!(%user, address, "sign-in failed");
                Err(wrong_credentials())
            }
        }
    }

    /// The user, if `plain` is their password. An unknown user costs the same
    /// hash as a known one.
    async fn check_password(&self, username: &str, plain: Zeroizing<String>) -> Result<Option<User>> {
        let user = users::get(&self.store, username).await?;
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        Ok(self.hasher.verify(plain, stored).await?.then_some(user).flatten())
    }

    async fn check_token(&self, subject: &str, token: &str) -> Result<Option<Granted>> {
        let Some(info) = tokens::check(&self.store, subject, token).await? else {
            return Ok(None);
        };
        Ok(match info.kind {
            // A session takes the user's role as it is now, not as it was at login.
            Kind::Session => users::get(&self.store, subject).await?.map(|user| Granted {
                user: user.username,
                role: user.role,
                session: Some(info.id),
            }),
            Kind::Device => Some(Granted {
                user: info.subject,
                role: Role::Device,
                session: Some(info.id),
            }),
            Kind::Node => Some(Granted {
                user: info.subject,
                role: Role::Node,
                session: Some(info.id),
            }),
        })
    }

    /// `auth.connect`: without credentials, a client is `anonymous`, which may only
    /// sign in (`auth.login`, `setup.status`) or run first-boot `setup`.
    pub async fn auth_connect(&self, args: AuthConnect) -> Result<Granted> {
        match (args.username, args.password) {
            (Some(username), Some(password)) => Ok(self
                .check_secret(&username, &password, args.address.as_deref(), true)
                .await?
                .granted()),
            (None, None) => Ok(Granted {
                user: String::new(),
                role: Role::Anonymous,
                session: None,
            }),
            _ => {
                Err(cubeos_contract::validate::FieldError::new("password", "username and password go together").into())
            }
        }
    }

    /// `setup.status`: whether first-boot setup is done, so that a client without
    /// credentials knows whether to run `setup` or to sign in.
    pub async fn setup_status(&self) -> Result<SetupState> {
        Ok(SetupState {
            setup_complete: settings::setup_complete(&self.store).await?,
        })
    }

    /// A new session for `user`, its token sealed for the trip back.
    async fn new_session(&self, user: &User) -> Result<Session> {
        let issued = tokens::issue(
            &self.store,
            Kind::Session,
            &user.username,
            Some(user.id),
            Some(self.auth.session_ttl),
        )
        .await?;
        Ok(Session {
            user: user.username.clone(),
            role: user.role,
            session: issued.id,
            token: Secret::new(self.secrets.seal(&issued.token)?),
            expires_at: issued.expires_at,
            expires_in: issued.expires_at.map(|_| self.auth.session_ttl.as_secs()),
        })
    }

    /// `auth.login`: a password for a session token.
    pub async fn auth_login(&self, caller: &Caller, args: AuthLogin) -> Result<Session> {
        let user = self
            .check_secret(&args.username, &args.password, caller.address.as_deref(), false)
            .await?
            .user()?;
        self.new_session(&user).await
    }

    /// `auth.refresh`: a fresh token and expiry for the caller's session.
    pub async fn auth_refresh(&self, caller: &Caller) -> Result<Refreshed> {
        let Some(session) = caller.session.as_deref().filter(|_| caller.role.is_person()) else {
            return Err(RegistryError::Unauthorized(
                "no session to refresh: sign in with auth.login first".into(),
            ));
        };
        let issued = tokens::rotate(&self.store, session, self.auth.session_ttl).await?;
        Ok(Refreshed {
            session: issued.id,
            token: Secret::new(self.secrets.seal(&issued.token)?),
            expires_at: issued.expires_at,
            expires_in: issued.expires_at.map(|_| self.auth.session_ttl.as_secs()),
        })
    }

    /// `auth.logout`: ends the caller's session, or all of the user's.
    pub async fn auth_logout(&self, caller: &Caller, args: AuthLogout) -> Result<LoggedOut> {
        let ended = if args.all {
            let user = users::require(&self.store, &caller.user).await?;
            tokens::revoke_sessions_of(&self.store, user.id, None).await?
        } else {
            match caller.session.as_deref() {
                Some(id) if tokens::revoke(&self.store, id).await? => vec![id.to_owned()],
                _ => Vec::new(),
            }
        };
        // The connection asking is left to close itself: ending it now would race
        // this very reply. Its token is gone, so it cannot come back.
        let others: Vec<String> = ended
            .iter()
            .filter(|id| Some(id.as_str()) != caller.session.as_deref())
            .cloned()
            .collect();
        self.announce_revoked(&others, &[]).await;
        Ok(LoggedOut { ended: ended.len() })
    }

    /// `setup`: the first admin, once. Returns a session for them.
    pub async fn setup(&self, args: Setup) -> Result<Session> {
        // Checked first (and again in the transaction): a late caller costs no hash.
        if settings::setup_complete(&self.store).await? {
            return Err(setup_done());
        }
        let plain = self.secrets.reveal(&args.password)?;
        users::check_password(&plain)?;
        let hash = self.hasher.hash(plain).await?;
        let user = {
            let _w = self.writing().await;
            let mut tx = self.store.writer.begin().await?;
            if settings::setup_complete(&self.store).await? {
                return Err(setup_done());
            }
            let user = users::create(&mut tx, &args.username, &hash, Role::Admin).await?;
            settings::mark_setup_complete(&mut tx).await?;
            tx.commit().await?;
            self.publish_system().await?;
            user
        };
        tracing::info!(user = %user.username, "setup complete: first admin created");
        self.new_session(&user).await
    }

    /// `user.add`.
    pub async fn user_add(&self, new: users::NewUser) -> Result<User> {
        let plain = self.secrets.reveal(&new.password)?;
        users::check_password(&plain)?;
        let hash = self.hasher.hash(plain).await?;
        let mut conn = self.store.writer.acquire().await?;
        users::create(&mut conn, &new.username, &hash, new.role).await
    }

    /// `user.passwd`: a person changes their own password (proving the current
    /// one), or an admin sets anyone's. The user's other sessions end.
    pub async fn user_passwd(&self, caller: &Caller, args: UserPasswd) -> Result<PasswordChanged> {
        let target = args.username.clone().unwrap_or_else(|| caller.user.clone());
        let privileged = matches!(caller.role, Role::Admin | Role::System);
        if target != caller.user && !privileged {
            return Err(RegistryError::Forbidden(
                "only an admin may set another user's password".into(),
            ));
        }
        let user = if privileged {
            users::require(&self.store, &target).await?
        } else {
            let current = args
                .current_password
                .as_ref()
                .ok_or_else(|| cubeos_contract::validate::FieldError::new("current_password", "required"))?;
            self.check_secret(&target, current, caller.address.as_deref(), false)
                .await?
                .user()?
        };
        let plain = self.secrets.reveal(&args.password)?;
        users::check_password(&plain)?;
        let hash = self.hasher.hash(plain).await?;
        users::set_password_hash(&self.store, &user.username, &hash).await?;
        let keep = (target == caller.user).then_some(caller.session.as_deref()).flatten();
        let ended = tokens::revoke_sessions_of(&self.store, user.id, keep).await?;
        self.announce_revoked(&ended, &[]).await;
        Ok(PasswordChanged {
            user: user.username,
            sessions_ended: ended.len(),
        })
    }

    /// `user.delete`: the user, their sessions, and their live connections.
    pub async fn user_delete(&self, username: &str) -> Result<Deleted> {
        let user = users::delete(&self.store, username).await?;
        self.announce_revoked(&[], std::slice::from_ref(&user.username)).await;
        Ok(Deleted { deleted: user.username })
    }

    /// `user.role`: live connections end, so the new role applies from the next one.
    pub async fn user_role(&self, username: &str, role: Role) -> Result<User> {
        let user = users::set_role(&self.store, username, role).await?;
        self.announce_revoked(&[], std::slice::from_ref(&user.username)).await;
        Ok(user)
    }

    /// `token.issue`: a credential for a device or node, bound to its id.
    pub async fn token_issue(&self, args: TokenIssue) -> Result<IssuedToken> {
        cubeos_contract::validate::name("id", &args.id)?;
        if args.kind == Kind::Session {
            return Err(cubeos_contract::validate::FieldError::new("kind", "must be device or node").into());
        }
        let issued = tokens::issue(&self.store, args.kind, &args.id, None, None).await?;
        Ok(IssuedToken {
            id: issued.id,
            kind: args.kind,
            subject: args.id,
            token: Secret::new(self.secrets.seal(&issued.token)?),
        })
    }

    /// `token.revoke`: a token by its id, or every credential of a device or node
    /// by its name.
    pub async fn token_revoke(&self, id_or_name: &str) -> Result<TokensRevoked> {
        let revoked = tokens::revoke_by_id_or_subject(&self.store, id_or_name).await?;
        if revoked.is_empty() {
            return Err(RegistryError::NotFound {
                what: "token",
                name: id_or_name.to_owned(),
            });
        }
        self.announce_revoked(&revoked, &[]).await;
        Ok(TokensRevoked { revoked })
    }

    /// Tells the gate which live connections to end. Ids and names only.
    async fn announce_revoked(&self, sessions: &[String], users: &[String]) {
        if sessions.is_empty() && users.is_empty() {
            return;
        }
        let event = Revoked {
            sessions: sessions.to_vec(),
            users: users.to_vec(),
        };
        if let Err(e) = self.bus.publish_event(&topics::auth_revoked(), &event).await {
            tracing::warn!(error = %e, "revocation not announced");
        }
    }
}

fn setup_done() -> RegistryError {
    RegistryError::Protected("setup is already complete".into())
}
