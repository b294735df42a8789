//! Reading a tenant's log: filters and cursor pages for `GET /v1/audit/events`,
//! ascending pages for the SIEM export. Every read goes through a `TenantTx`,
//! so a tenant reaches only its own chain (row-level security on PostgreSQL).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

use super::model::StoredEvent;
use crate::db::{DbError, TenantTx, Value};

/// Page size when none is asked for, and the largest allowed.
pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Desc,
    Asc,
}

/// A parsed, validated query. Built only by [`EventQuery::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    /// Exact action, or the prefix (ending in `.`) of `area.*`.
    action: Option<ActionFilter>,
    actor: Option<String>,
    target: Option<String>,
    outcome: Option<String>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    limit: i64,
    order: Order,
    /// Continue after this sequence number (exclusive), in `order`.
    after_seq: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ActionFilter {
    Exact(String),
    Prefix(String),
}

/// A bad query parameter: its name and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("query parameter `{param}`: {message}")]
pub struct QueryError {
    pub param: String,
    pub message: String,
}

fn bad(param: &str, message: &str) -> QueryError {
    QueryError {
        param: param.to_owned(),
        message: message.to_owned(),
    }
}

fn is_action_word(w: &str) -> bool {
    !w.is_empty()
        && w.len() <= 40
        && w.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn parse_action(v: &str) -> Result<ActionFilter, QueryError> {
    let err = || {
        bad(
            "action",
            "expected area.object.verb or a prefix such as `auth.*`",
        )
    };
    let (body, prefix) = match v.strip_suffix(".*") {
        Some(b) => (b, true),
        None => (v, false),
    };
    let words: Vec<&str> = body.split('.').collect();
    if words.len() > 4 || !words.iter().all(|w| is_action_word(w)) {
        return Err(err());
    }
    if prefix {
        Ok(ActionFilter::Prefix(format!("{body}.")))
    } else if words.len() >= 2 {
        Ok(ActionFilter::Exact(body.to_owned()))
    } else {
        Err(err())
    }
}

/// An identifier filter (actor or target id): 1–200 printable characters.
fn parse_id(param: &str, v: &str) -> Result<String, QueryError> {
    if v.is_empty() || v.len() > 200 || v.chars().any(char::is_control) {
        return Err(bad(param, "expected an identifier of 1 to 200 characters"));
    }
    Ok(v.to_owned())
}

fn parse_time(param: &str, v: &str) -> Result<DateTime<Utc>, QueryError> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| bad(param, "expected an RFC 3339 timestamp"))
}

/// The opaque cursor: the order and the last sequence number returned.
pub fn encode_cursor(order: Order, seq: i64) -> String {
    let o = match order {
        Order::Desc => 'd',
        Order::Asc => 'a',
    };
    URL_SAFE_NO_PAD.encode(format!("v1:{o}:{seq}"))
}

fn decode_cursor(v: &str) -> Option<(Order, i64)> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(v).ok()?).ok()?;
    let mut parts = raw.split(':');
    let (ver, o, seq) = (parts.next()?, parts.next()?, parts.next()?);
    if ver != "v1" || parts.next().is_some() {
        return None;
    }
    let order = match o {
        "d" => Order::Desc,
        "a" => Order::Asc,
        _ => return None,
    };
    let seq: i64 = seq.parse().ok()?;
    (seq >= 0).then_some((order, seq))
}

impl EventQuery {
    /// Parses query-string pairs. Unknown, repeated or malformed parameters
    /// are errors; nothing is silently ignored.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, QueryError> {
        let mut q = EventQuery {
            action: None,
            actor: None,
            target: None,
            outcome: None,
            since: None,
            until: None,
            limit: DEFAULT_LIMIT,
            order: Order::Desc,
            after_seq: None,
        };
        let mut seen: Vec<&str> = Vec::new();
        let mut cursor: Option<(Order, i64)> = None;
        for (k, v) in pairs {
            if seen.contains(&k.as_str()) {
                return Err(bad(k, "given more than once"));
            }
            seen.push(k);
            match k.as_str() {
                "action" => q.action = Some(parse_action(v)?),
                "actor" => q.actor = Some(parse_id("actor", v)?),
                "target" => q.target = Some(parse_id("target", v)?),
                "outcome" => match v.as_str() {
                    "success" | "failure" | "denied" => q.outcome = Some(v.clone()),
                    _ => return Err(bad("outcome", "expected success, failure or denied")),
                },
                "since" => q.since = Some(parse_time("since", v)?),
                "until" => q.until = Some(parse_time("until", v)?),
                "limit" => {
                    q.limit = v
                        .parse::<i64>()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| bad("limit", "expected an integer from 1 to 500"))?;
                }
                "order" => {
                    q.order = match v.as_str() {
                        "desc" => Order::Desc,
                        "asc" => Order::Asc,
                        _ => return Err(bad("order", "expected asc or desc")),
                    }
                }
                "cursor" => {
                    cursor =
                        Some(decode_cursor(v).ok_or_else(|| bad("cursor", "not a valid cursor"))?);
                }
                _ => return Err(bad(k, "unknown query parameter")),
            }
        }
        if let (Some(s), Some(u)) = (q.since, q.until)
            && s > u
        {
            return Err(bad("until", "must not be before `since`"));
        }
        if let Some((order, seq)) = cursor {
            if order != q.order {
                return Err(bad("cursor", "the cursor belongs to the other order"));
            }
            q.after_seq = Some(seq);
        }
        Ok(q)
    }

    pub fn order(&self) -> Order {
        self.order
    }

    /// One page, and the cursor of the next page when there is more.
    pub async fn fetch(
        &self,
        tx: &mut TenantTx,
    ) -> Result<(Vec<StoredEvent>, Option<String>), DbError> {
        let mut sql = String::from("SELECT * FROM audit_events WHERE tenant_id = $1");
        let mut args: Vec<Value> = Vec::new();
        let mut push = |sql: &mut String, clause: &str, v: Value| {
            args.push(v);
            sql.push_str(&clause.replace('?', &format!("${}", args.len() + 1)));
        };
        match &self.action {
            Some(ActionFilter::Exact(a)) => push(&mut sql, " AND action = ?", a.into()),
            Some(ActionFilter::Prefix(p)) => push(
                &mut sql,
                " AND action LIKE ? ESCAPE '\\'",
                format!("{}%", p.replace('_', "\\_")).into(),
            ),
            None => {}
        }
        if let Some(a) = &self.actor {
            push(&mut sql, " AND actor_id = ?", a.into());
        }
        if let Some(t) = &self.target {
            push(&mut sql, " AND target_id = ?", t.into());
        }
        if let Some(o) = &self.outcome {
            push(&mut sql, " AND outcome = ?", o.into());
        }
        if let Some(s) = self.since {
            push(&mut sql, " AND occurred_at >= ?", s.into());
        }
        if let Some(u) = self.until {
            push(&mut sql, " AND occurred_at <= ?", u.into());
        }
        let dir = match self.order {
            Order::Desc => "DESC",
            Order::Asc => "ASC",
        };
        if let Some(seq) = self.after_seq {
            let cmp = match self.order {
                Order::Desc => " AND seq < ?",
                Order::Asc => " AND seq > ?",
            };
            push(&mut sql, cmp, seq.into());
        }
        push(
            &mut sql,
            &format!(" ORDER BY seq {dir} LIMIT ?"),
            (self.limit + 1).into(),
        );
        let mut rows: Vec<StoredEvent> = tx.fetch_all(&sql, args).await?;
        let more = rows.len() as i64 > self.limit;
        rows.truncate(usize::try_from(self.limit).unwrap_or(0));
        let next = match (more, rows.last()) {
            (true, Some(last)) => Some(encode_cursor(self.order, last.seq)),
            _ => None,
        };
        Ok((rows, next))
    }
}

/// Up to `limit` events with `seq > after`, ascending (the export's pages).
pub async fn page_after(
    tx: &mut TenantTx,
    after: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>, DbError> {
    tx.fetch_all(
        "SELECT * FROM audit_events WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        vec![after.into(), limit.into()],
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Result<EventQuery, QueryError> {
        let v: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        EventQuery::parse(&v)
    }

    #[test]
    fn good_queries_parse() {
        let q = p(&[]).unwrap();
        assert_eq!((q.limit, q.order), (DEFAULT_LIMIT, Order::Desc));
        let q = p(&[("action", "auth.*"), ("limit", "500"), ("order", "asc")]).unwrap();
        assert_eq!(q.action, Some(ActionFilter::Prefix("auth.".into())));
        let q = p(&[("action", "auth.login.failed")]).unwrap();
        assert_eq!(
            q.action,
            Some(ActionFilter::Exact("auth.login.failed".into()))
        );
        let c = encode_cursor(Order::Asc, 42);
        let q = p(&[("order", "asc"), ("cursor", &c)]).unwrap();
        assert_eq!(q.after_seq, Some(42));
        assert!(
            p(&[
                ("since", "2026-01-01T00:00:00Z"),
                ("until", "2026-01-02T00:00:00+02:00")
            ])
            .is_ok()
        );
    }

    #[test]
    fn bad_queries_name_the_parameter() {
        let d = encode_cursor(Order::Desc, 3);
        for (pairs, param) in [
            (vec![("limit", "0")], "limit"),
            (vec![("limit", "501")], "limit"),
            (vec![("limit", "x")], "limit"),
            (vec![("order", "up")], "order"),
            (vec![("outcome", "ok")], "outcome"),
            (vec![("since", "yesterday")], "since"),
            (vec![("action", "Auth.*")], "action"),
            (vec![("action", "auth")], "action"),
            (vec![("action", "a%b.c")], "action"),
            (vec![("actor", "")], "actor"),
            (vec![("cursor", "!!")], "cursor"),
            (vec![("cursor", "djE6eDox")], "cursor"),
            (vec![("order", "asc"), ("cursor", d.as_str())], "cursor"),
            (vec![("bogus", "1")], "bogus"),
            (vec![("limit", "5"), ("limit", "6")], "limit"),
            (
                vec![
                    ("since", "2026-01-02T00:00:00Z"),
                    ("until", "2026-01-01T00:00:00Z"),
                ],
                "until",
            ),
        ] {
            assert_eq!(p(&pairs).unwrap_err().param, param, "{pairs:?}");
        }
    }
}
