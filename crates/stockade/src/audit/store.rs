//! Audit storage: append inside the caller's transaction; verify a chain.

use super::head::{self, Head};
use super::model::{AuditError, GENESIS_HASH, NewEvent, StoredEvent, VerifyReport};
use super::pii;
use crate::clock::Clock;
use crate::db::{Db, DbError, TenantTx};
use crate::ids::{EventId, TenantId};

/// Events read per round trip while verifying (memory stays bounded: at
/// most three pages are alive, one hashed, one queued, one being read).
const VERIFY_PAGE: i64 = 5000;

/// Events per multi-row `INSERT`: 16 bound values per event plus the tenant
/// (`$1`) stays far below SQLite's 32,766 and PostgreSQL's 65,535 limits.
const INSERT_CHUNK: usize = 1000;

/// Bound values per event in the `INSERT` (every column but `tenant_id`).
const INSERT_COLUMNS: usize = 19;

/// Appends `event` to the tenant's chain inside `tx`: [`append_many`] with a
/// batch of one. The event commits or rolls back with the change it describes.
pub async fn append(
    tx: &mut TenantTx,
    clock: &dyn Clock,
    event: NewEvent,
) -> Result<StoredEvent, AuditError> {
    let mut stored = append_many(tx, clock, vec![event]).await?;
    stored.pop().ok_or(AuditError::InvalidDetails)
}

/// Appends `events`, in order, to the tenant's chain inside `tx`, with one
/// head read and update and one head signature for the whole batch, and
/// multi-row `INSERT`s. The events commit or roll back with the change they
/// describe. The head row is upserted first (`seq = seq + n`), so on
/// PostgreSQL its row lock serialises appends of one tenant and the sequence
/// stays gapless; SQLite has a single writer anyway. Every event of a batch
/// gets the same `occurred_at`.
pub async fn append_many(
    tx: &mut TenantTx,
    clock: &dyn Clock,
    events: Vec<NewEvent>,
) -> Result<Vec<StoredEvent>, AuditError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let key = tx.audit_head_key().ok_or(AuditError::HeadKeyMissing)?;
    let tenant = tx.tenant();
    let now = clock.now();
    let n = i64::try_from(events.len()).map_err(|_| AuditError::InvalidDetails)?;
    let genesis = Head {
        base_seq: 0,
        base_hash: GENESIS_HASH.to_owned(),
        seq: 0,
        hash: GENESIS_HASH.to_owned(),
    };
    // A missing head is created as if the genesis head (seq 0, signed) had
    // just been moved on by `n`: the check below then sees a valid head.
    let (last, prev_hash, base_seq, base_hash, prev_sig): (
        i64,
        String,
        i64,
        String,
        Option<String>,
    ) = tx
        .fetch_one(
            "INSERT INTO audit_heads (tenant_id, seq, hash, updated_at, sig) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (tenant_id) DO UPDATE SET seq = audit_heads.seq + $2, updated_at = $4 \
             RETURNING seq, hash, base_seq, base_hash, sig",
            vec![
                n.into(),
                GENESIS_HASH.into(),
                now.into(),
                head::sign(&key, tenant, &genesis).into(),
            ],
        )
        .await?;
    let mut h = Head {
        base_seq,
        base_hash,
        seq: last - n,
        hash: prev_hash,
    };
    // A head that was not validly signed stays unsigned (see `head`).
    let intact = head::check(&key, tenant, &h, prev_sig.as_deref());
    let mut stored = Vec::with_capacity(events.len());
    let mut seq = h.seq;
    for event in events {
        seq += 1;
        let subject = match event.subject() {
            Some(user) => Some(pii::for_append(tx, user, now).await?),
            None => None,
        };
        let e = event.seal(tenant, seq, EventId::new(), now, h.hash, subject.as_ref())?;
        h.hash = e.hash.clone();
        stored.push(e);
    }
    h.seq = seq;
    let sig = intact.then(|| head::sign(&key, tenant, &h));
    if !intact {
        tracing::error!(%tenant, seq, "audit chain head signature invalid: not re-signing");
    }
    tx.execute(
        "UPDATE audit_heads SET hash = $2, sig = $3 WHERE tenant_id = $1",
        vec![h.hash.into(), sig.into()],
    )
    .await?;
    for chunk in stored.chunks(INSERT_CHUNK) {
        insert_rows(tx, chunk).await?;
    }
    crate::ops::metrics::audit_appended(tenant == TenantId::PLATFORM, stored.len());
    Ok(stored)
}

/// One multi-row `INSERT` of sealed events.
async fn insert_rows(tx: &mut TenantTx, rows: &[StoredEvent]) -> Result<(), AuditError> {
    let mut sql = String::with_capacity(300 + rows.len() * 110);
    sql.push_str(
        "INSERT INTO audit_events (tenant_id, seq, id, occurred_at, actor_type, actor_id, \
         impersonator_id, ip, user_agent, request_id, action, target_type, target_id, outcome, \
         details, prev_hash, hash, subject_id, pii, pii_digest) VALUES ",
    );
    let mut args = Vec::with_capacity(rows.len() * INSERT_COLUMNS);
    for (i, e) in rows.iter().enumerate() {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str("($1");
        for c in 0..INSERT_COLUMNS {
            // `$2` onwards: the tenant is `$1`.
            let n = 2 + i * INSERT_COLUMNS + c;
            sql.push_str(",$");
            sql.push_str(&n.to_string());
        }
        sql.push(')');
        args.extend([
            e.seq.into(),
            e.id.into(),
            e.occurred_at.into(),
            e.actor_type.clone().into(),
            e.actor_id.clone().into(),
            e.impersonator_id.clone().into(),
            e.ip.clone().into(),
            e.user_agent.clone().into(),
            e.request_id.clone().into(),
            e.action.clone().into(),
            e.target_type.clone().into(),
            e.target_id.clone().into(),
            e.outcome.clone().into(),
            e.details.clone().into(),
            e.prev_hash.clone().into(),
            e.hash.clone().into(),
            e.subject_id.clone().into(),
            e.pii.clone().into(),
            e.pii_digest.clone().into(),
        ]);
    }
    tx.execute(&sql, args).await?;
    Ok(())
}

/// Where a walk along a chain has got to.
struct Walk {
    expected: i64,
    prev: String,
    checked: u64,
}

/// The first place a chain does not hold: (seq, reason).
type Break = (i64, String);

/// Checks one page of events (ascending `seq`) against the walk so far.
fn check_page(mut w: Walk, page: Vec<StoredEvent>) -> Result<Walk, (Break, Walk)> {
    for e in page {
        let problem = if e.seq != w.expected {
            Some((w.expected, format!("event {} is missing", w.expected)))
        } else if e.prev_hash != w.prev {
            Some((
                e.seq,
                "its previous hash does not match the event before it".to_owned(),
            ))
        } else if e.clear_fields_in_v2() {
            Some((
                e.seq,
                "it holds ip or user agent in clear beside its sealed personal data".to_owned(),
            ))
        } else if !e.hash_matches() {
            Some((e.seq, "its content does not match its hash".to_owned()))
        } else {
            None
        };
        if let Some(b) = problem {
            return Err((b, w));
        }
        w.prev = e.hash;
        w.expected += 1;
        w.checked += 1;
    }
    Ok(w)
}

/// Walks one tenant's chain from the start and compares its end with the head.
///
/// A reader task fetches the next page while the current one is hashed on
/// a blocking thread, so reading and hashing overlap on two cores. The whole
/// walk reads in one read transaction (one snapshot with the head).
pub async fn verify_tenant(db: &Db, tenant: TenantId) -> Result<VerifyReport, DbError> {
    let key = db
        .audit_head_key()
        .ok_or_else(|| DbError::Guard("the audit head key is not installed".to_owned()))?;
    let mut tx = db.tenant_read(tenant).await?;
    let head = head::read(&mut tx).await?;
    // After a retention purge the chain starts at the checkpoint.
    let (expected, prev) = match &head {
        Some((h, _)) => (h.base_seq + 1, h.base_hash.clone()),
        None => (1, GENESIS_HASH.to_owned()),
    };
    let (pages, mut received) = tokio::sync::mpsc::channel(1);
    let reader = tokio::spawn(read_pages(tx, expected, pages));
    let mut walk = Walk {
        expected,
        prev,
        checked: 0,
    };
    while let Some(page) = received.recv().await {
        let page = page?;
        walk = match tokio::task::spawn_blocking(move || check_page(walk, page)).await {
            Ok(Ok(w)) => w,
            Ok(Err(((seq, reason), w))) => {
                reader.abort();
                return Ok(VerifyReport {
                    tenant_id: tenant,
                    ok: false,
                    events_checked: w.checked,
                    head_seq: seq - 1,
                    head_hash: w.prev,
                    first_bad_seq: Some(seq),
                    reason: Some(reason),
                });
            }
            Err(e) => return Err(DbError::Guard(format!("audit verification failed: {e}"))),
        };
    }
    let Walk {
        expected,
        prev,
        checked,
    } = walk;
    let last = expected - 1;
    let problem = match &head {
        None if last == 0 => None,
        None => Some((1, "the chain head record is missing".to_owned())),
        Some((h, _)) if h.seq > last => Some((
            last + 1,
            format!("events {} to {} are missing from the end", last + 1, h.seq),
        )),
        Some((h, _)) if h.seq < last => Some((
            h.seq + 1,
            format!("events after {} are not covered by the chain head", h.seq),
        )),
        Some((h, _)) if h.hash != prev => {
            Some((last, "the chain head hash does not match".to_owned()))
        }
        Some((h, sig)) if !head::check(&key, tenant, h, sig.as_deref()) => Some((
            last + 1,
            match sig {
                None => "the chain head signature is missing".to_owned(),
                Some(_) => "the chain head signature does not match \
                            (head or retention checkpoint rewritten)"
                    .to_owned(),
            },
        )),
        Some(_) => None,
    };
    Ok(match problem {
        Some((seq, reason)) => VerifyReport {
            first_bad_seq: Some(seq),
            reason: Some(reason),
            ok: false,
            tenant_id: tenant,
            events_checked: checked,
            head_seq: last,
            head_hash: prev,
        },
        None => VerifyReport {
            tenant_id: tenant,
            ok: true,
            events_checked: checked,
            head_seq: last,
            head_hash: prev,
            first_bad_seq: None,
            reason: None,
        },
    })
}

/// Sends the events from `from` on, ascending, in pages of [`VERIFY_PAGE`],
/// until the end of the chain or until the receiver is gone.
async fn read_pages(
    mut tx: TenantTx,
    mut from: i64,
    pages: tokio::sync::mpsc::Sender<Result<Vec<StoredEvent>, DbError>>,
) {
    loop {
        let page: Result<Vec<StoredEvent>, DbError> = tx
            .fetch_all(
                "SELECT tenant_id, seq, id, occurred_at, actor_type, actor_id, impersonator_id, \
                 ip, user_agent, request_id, action, target_type, target_id, outcome, details, \
                 prev_hash, hash, subject_id, pii, pii_digest FROM audit_events \
                 WHERE tenant_id = $1 AND seq >= $2 \
                 ORDER BY seq LIMIT $3",
                vec![from.into(), VERIFY_PAGE.into()],
            )
            .await;
        let more = match &page {
            Ok(p) => {
                if let Some(last) = p.last() {
                    from = last.seq + 1;
                }
                p.len() as i64 == VERIFY_PAGE
            }
            Err(_) => false,
        };
        if pages.send(page).await.is_err() || !more {
            return;
        }
    }
}

/// Verifies every tenant's chain and the platform's own.
pub async fn verify_all(db: &Db) -> Result<Vec<VerifyReport>, DbError> {
    let mut tx = db.global_read().await?;
    let tenants: Vec<(TenantId,)> = tx
        .fetch_all("SELECT id FROM tenants ORDER BY id", vec![])
        .await?;
    drop(tx);
    let mut reports = Vec::with_capacity(tenants.len() + 1);
    reports.push(verify_tenant(db, TenantId::PLATFORM).await?);
    for (tenant,) in tenants {
        reports.push(verify_tenant(db, tenant).await?);
    }
    Ok(reports)
}
