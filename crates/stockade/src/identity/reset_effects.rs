//! What a password change or a completed password reset does beyond the
//! new hash, inside the same transaction (issue #17 item 5):
//!
//! - every outstanding reset link of the user dies
//!   ([`invalidate_reset_links`]): a link sent before, or alongside, the one
//!   used, or before the password was changed, cannot set it again;
//! - a **reset** (account recovery: whoever holds the mailbox) also revokes,
//!   in every tenant of the user, the API keys they created, unless that
//!   tenant's setting `keep_api_keys_on_password_reset` keeps them; the
//!   tenant's `auth.password.reset_completed` event names the keys revoked
//!   (`revoked_api_keys`) and counts those kept, and the user is sent a notice
//!   (kind `password_reset_notice`) naming the keys revoked and kept — by
//!   name and prefix, never a secret.

use chrono::{DateTime, Utc};
use zeroize::Zeroizing;

use super::store as users;
use crate::apikeys::{self, KeyEnv, KeyName};
use crate::audit::{self, Actor, NewEvent, RequestContext, Target};
use crate::db::{DbError, GlobalTx, UserTx};
use crate::email::{self, Message};
use crate::http::ApiError;
use crate::http::AuthState;
use crate::ids::{TenantId, UserId};

/// Kills every reset link of `user` not used yet; the number killed. Call it
/// after the user's row was written in `tx` (the new hash): that row lock
/// orders concurrent confirmations and changes of one user, so a link
/// claimed by a later one is seen as dead.
pub(crate) async fn invalidate_reset_links(
    tx: &mut GlobalTx,
    user: UserId,
    now: DateTime<Utc>,
) -> Result<u64, DbError> {
    tx.execute(
        "UPDATE password_resets SET used_at = $2 WHERE user_id = $1 AND used_at IS NULL",
        vec![user.into(), now.into()],
    )
    .await
}

/// The API keys one tenant revoked or kept.
struct TenantKeys {
    slug: String,
    revoked: Vec<KeyName>,
    kept: Vec<KeyName>,
}

/// In every tenant of the transaction's user: revokes their API keys (unless
/// the tenant keeps them) and audits the reset; then queues the notice and
/// commits.
pub(crate) async fn complete_reset(
    tx: UserTx,
    state: &AuthState,
    email_to: &str,
    email_verified: bool,
    context: &RequestContext,
) -> Result<(), ApiError> {
    let user = tx.user();
    let now = state.clock.now();
    let env = KeyEnv::for_config(&state.config);
    let mut tx = tx;
    let memberships = users::memberships_in(&mut tx).await?;
    let actor = Actor::User {
        id: user,
        impersonator: None,
    };
    let mut ttx = tx.scoped(TenantId::PLATFORM).await?;
    let mut report = Vec::new();
    for m in &memberships {
        ttx = ttx.rescope(m.tenant_id).await?;
        let keep = crate::tenancy::settings::load(&mut ttx)
            .await?
            .keep_api_keys_on_password_reset;
        let (revoked, kept) = if keep {
            (
                Vec::new(),
                apikeys::live_created_by(&mut ttx, user, env).await?,
            )
        } else {
            (
                apikeys::revoke_created_by_named(&mut ttx, user, now, env).await?,
                Vec::new(),
            )
        };
        // One event per tenant (not one per key), naming the keys.
        let event = NewEvent::new(actor.clone(), "auth.password.reset_completed")
            .target(Target::new("user", user))
            .details(serde_json::json!({
                "api_keys_revoked": revoked.len(),
                "revoked_api_keys": revoked,
                "api_keys_kept": kept.len(),
                "email_verified": email_verified,
            }))
            .context(context.clone());
        audit::append(&mut ttx, state.clock.as_ref(), event)
            .await
            .map_err(ApiError::internal)?;
        report.push(TenantKeys {
            slug: m.slug.clone(),
            revoked,
            kept,
        });
    }
    let mut tx = ttx.into_global().await?;
    let body = notice(&report);
    email::enqueue(
        &mut tx,
        state.clock.as_ref(),
        &state.master(),
        &Message {
            to: email_to,
            kind: "password_reset_notice",
            subject: "Your password was reset",
            body: &body,
        },
        state.config.is_production(),
    )
    .await
    .map_err(ApiError::internal)?;
    tx.commit().await?;
    Ok(())
}

/// The notice's text: what the reset ended, key by key.
fn notice(report: &[TenantKeys]) -> Zeroizing<String> {
    let list = |pick: fn(&TenantKeys) -> &[KeyName]| -> String {
        report
            .iter()
            .flat_map(|t| {
                pick(t)
                    .iter()
                    .map(move |k| format!("- {}: \"{}\" ({})\n", t.slug, k.name, k.prefix))
            })
            .collect()
    };
    let revoked = list(|t| &t.revoked);
    let kept = list(|t| &t.kept);
    let mut text = String::from(
        "The password of your account was just reset with a link sent to this address, \
         and every session of yours was signed out.\n\n",
    );
    match revoked.is_empty() {
        true => text.push_str("No API key of yours was revoked.\n"),
        false => {
            text.push_str("These API keys you created were revoked; create new ones where you still need them:\n");
            text.push_str(&revoked);
        }
    }
    if !kept.is_empty() {
        text.push_str(
            "\nThese API keys you created keep working (their tenant keeps API keys on a \
             password reset); revoke any you do not recognise:\n",
        );
        text.push_str(&kept);
    }
    text.push_str(
        "\nIf you did not reset your password, someone else may control your email: \
         secure it, reset your password again, and tell your administrator.",
    );
    Zeroizing::new(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, prefix: &str) -> KeyName {
        KeyName {
            id: uuid::Uuid::nil(),
            name: name.to_owned(),
            prefix: prefix.to_owned(),
        }
    }

    #[test]
    fn the_notice_names_keys_by_tenant_name_and_prefix() {
        let text = notice(&[
            TenantKeys {
                slug: "acme".into(),
                revoked: vec![key("ci deploy", "stk_test_0123456789abcdef")],
                kept: vec![],
            },
            TenantKeys {
                slug: "beta".into(),
                revoked: vec![],
                kept: vec![key("backup", "stk_test_fedcba9876543210")],
            },
        ]);
        assert!(text.contains("revoked"));
        assert!(text.contains("- acme: \"ci deploy\" (stk_test_0123456789abcdef)\n"));
        assert!(text.contains("keep working"));
        assert!(text.contains("- beta: \"backup\" (stk_test_fedcba9876543210)\n"));
        let none = notice(&[]);
        assert!(none.contains("No API key of yours was revoked."));
        assert!(!none.contains("keep working"));
    }
}
