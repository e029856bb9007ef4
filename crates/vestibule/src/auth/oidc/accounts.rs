//! Which account a verified provider login becomes: the linked user, a user found by a
//! verified e-mail (then linked), or a new user without a usable password; and linking an
//! identity from a logged-in session. Apart from the protocol in `mod.rs`, which only proves
//! who the provider says the person is.

use super::{NO_PASSWORD, RelyingParty, Verified, err};
use crate::auth::{User, Username};
use crate::error::{ErrorCode, Result};

impl RelyingParty {
    /// The Vestibule user `v` is: the linked one; else, with `oidc.link_verified_email`, the
    /// user named after the verified e-mail (then linked); else, with `oidc.signup`, a new user
    /// (no usable password) linked to it.
    ///
    /// # Errors
    /// 403 `account_disabled`, 403 `signup_disabled` (no linked user and signup off), 409
    /// `username_taken` / 422 `invalid_username` (the username claim cannot name a new user),
    /// 503 `store_unavailable`.
    pub async fn resolve_user(&self, v: &Verified) -> Result<User> {
        let inner = &self.0;
        let linked = inner.identities.user_for(&v.issuer, &v.subject).await?;
        let user = match linked {
            Some(id) => inner.users.by_id(id).await?,
            None => None,
        };
        if let Some(user) = user {
            return active(user);
        }
        if inner.settings.link_verified_email
            && v.email_verified
            && let Some(email) = &v.email
            && let Some(user) = inner.users.by_username(email).await?
        {
            inner
                .identities
                .link(user.id, &v.provider, &v.issuer, &v.subject, Some(email))
                .await?;
            audit!("oidc.link", user_id = user.id, provider = %v.provider, how = "verified_email", "identity linked by a verified e-mail");
            return active(user);
        }
        if !inner.settings.signup {
            return Err(err(
                ErrorCode::SignupDisabled,
                "no account is linked to this identity and signup through providers is off",
            )
            .with_hint("set oidc.signup = true, or link the identity from a logged-in session"));
        }
        let name = v.username.clone().unwrap_or_else(|| v.subject.clone());
        let username = Username::parse(&name)?;
        let user = inner.users.create(&username, NO_PASSWORD).await?;
        if let Err(e) = inner
            .identities
            .link(
                user.id,
                &v.provider,
                &v.issuer,
                &v.subject,
                v.email.as_deref(),
            )
            .await
        {
            let _ = inner.users.undo_signup(user.id).await;
            return Err(e.into());
        }
        audit!("signup", user_id = user.id, provider = %v.provider, "user signed up through an OpenID provider");
        Ok(user)
    }
}

impl RelyingParty {
    /// Links the identity `v` proved to `user_id` (a link flow: `v.link_user`); nobody logs in.
    /// Linking it again to the same user is a success.
    ///
    /// # Errors
    /// 409 `oidc_identity_taken` (the identity belongs to another user), 503 `store_unavailable`.
    pub async fn link(&self, v: &Verified, user_id: i64) -> Result<()> {
        let ids = &self.0.identities;
        match ids
            .link(
                user_id,
                &v.provider,
                &v.issuer,
                &v.subject,
                v.email.as_deref(),
            )
            .await
        {
            Ok(()) => {
                audit!("oidc.link", user_id, provider = %v.provider, how = "session", "identity linked from a logged-in session");
                Ok(())
            }
            Err(crate::auth::UserError::Taken) => {
                if ids
                    .users_of(&v.issuer, &v.subject)
                    .await?
                    .contains(&user_id)
                {
                    return Ok(());
                }
                audit!("oidc.link_refused", user_id, provider = %v.provider, reason = "identity_taken", "identity belongs to another user");
                Err(err(
                    ErrorCode::OidcIdentityTaken,
                    "this identity is linked to another account",
                )
                .with_hint("log in with it and unlink it there first"))
            }
            Err(e) => Err(e.into()),
        }
    }
}

fn active(user: User) -> Result<User> {
    if user.is_active {
        Ok(user)
    } else {
        Err(err(ErrorCode::AccountDisabled, "this account is disabled"))
    }
}
