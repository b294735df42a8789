//! Typed ids: UUIDv7 (time-ordered) newtypes, never bare `Uuid`s, so a user id
//! cannot be passed where a tenant id is expected.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            sqlx::Type, utoipa::ToSchema,
        )]
        #[sqlx(transparent)]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh UUIDv7.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

typed_id!(
    /// A tenant (one customer organisation of the SaaS).
    TenantId
);
typed_id!(
    /// A global user identity (may belong to several tenants).
    UserId
);
typed_id!(
    /// One audit event.
    EventId
);

impl TenantId {
    /// The reserved tenant id under which the platform's own audit log is
    /// chained (platform actions, system jobs). No real tenant can have it:
    /// real ids are UUIDv7 and this is the nil UUID.
    pub const PLATFORM: TenantId = TenantId(Uuid::nil());
}
typed_id!(
    /// A server-side session (one sign-in of one user into one tenant).
    SessionId
);
