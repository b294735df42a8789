//! The PostgreSQL connection pool: scoped transactions carry their scope from
//! the first statement, and a connection that died while idle is replaced
//! before it is handed out.

use stockade::db::POOL_PING_AFTER_IDLE;
use stockade::ids::{TenantId, UserId};

use crate::testkit::TestDb;

/// `BEGIN` and the scope's setting travel together (`Db::begin`): every kind
/// of scoped transaction sees its own id in the setting RLS reads.
#[tokio::test]
async fn scoped_transactions_carry_their_scope() {
    let Some(t) = TestDb::postgres().await else {
        return;
    };
    let tenant = TenantId(uuid::Uuid::new_v4());
    let user = UserId(uuid::Uuid::new_v4());
    for write in [true, false] {
        let mut tx = if write {
            t.db.tenant_tx(tenant).await.unwrap()
        } else {
            t.db.tenant_read(tenant).await.unwrap()
        };
        let (same,): (bool,) = tx
            .fetch_one(
                "SELECT current_setting('stockade.tenant_id') = CAST($1 AS TEXT)",
                vec![],
            )
            .await
            .unwrap();
        assert!(same, "tenant scope (write: {write})");
        let mut tx = if write {
            t.db.user_tx(user).await.unwrap()
        } else {
            t.db.user_read(user).await.unwrap()
        };
        let rows: Vec<(bool, String)> = tx
            .fetch_all(
                "SELECT current_setting('stockade.user_id') = CAST($1 AS TEXT), \
                 COALESCE(current_setting('stockade.tenant_id', true), '')",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            rows,
            vec![(true, String::new())],
            "user scope, and no tenant (write: {write})"
        );
    }
    // The setting is transaction-local: a global transaction on the same
    // pool sees none.
    let mut g = t.db.global_read().await.unwrap();
    let rows: Option<(String,)> = g
        .fetch_optional(
            "SELECT COALESCE(current_setting('stockade.tenant_id', true), '')",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(rows, Some((String::new(),)));
}

/// Kills every other connection to the test database, as a database restart
/// or a proxy's idle timeout would; returns how many it killed.
async fn kill_other_connections(t: &TestDb) -> i64 {
    let owner = &crate::testkit::owner_pool(&t.db).await;
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()) AS killed",
    )
    .fetch_one(owner)
    .await
    .unwrap()
}

async fn one_read(t: &TestDb) -> Result<i64, stockade::db::DbError> {
    let mut g = t.db.global_read().await?;
    let row: Option<(i64,)> = g.fetch_optional("SELECT CAST(1 AS BIGINT)", vec![]).await?;
    Ok(row.map_or(0, |(n,)| n))
}

/// The pool pings a connection only after it sat idle (`POOL_PING_AFTER_IDLE`),
/// so a connection that died while idle is replaced before use: the request
/// that gets it never sees the dead one.
#[tokio::test]
async fn a_connection_that_died_while_idle_is_replaced_before_use() {
    let Some(t) = TestDb::postgres().await else {
        return;
    };
    for round in 0..2 {
        // Warm connections sit idle in the pool.
        let (a, b) = tokio::join!(one_read(&t), one_read(&t));
        assert_eq!((a.unwrap(), b.unwrap()), (1, 1));
        // Released connections are pinged by sqlx on their way back, in a
        // task of their own: let them settle, then kill them.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(kill_other_connections(&t).await >= 1, "round {round}");
        tokio::time::sleep(POOL_PING_AFTER_IDLE + std::time::Duration::from_millis(200)).await;
        for n in 0..4 {
            assert_eq!(
                one_read(&t).await.unwrap(),
                1,
                "read {n} of round {round} got a dead connection"
            );
        }
    }
}
