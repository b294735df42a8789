//! Pure rules of records: names, what a document may be, the text a value
//! is blind-indexed as, JSON merge patch, cursors and `If-Match`. This file
//! must not encrypt, store or read records (that is `stockade::records`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// The blind-index "field" of a record's optional key. Not a valid field
/// name, so it never collides with a declared indexed field.
pub const KEY_FIELD: &str = "$key";

/// Longest record key, in characters.
pub const MAX_KEY_CHARS: usize = 256;

/// Most indexed fields one collection may declare.
pub const MAX_INDEXED_FIELDS: usize = 32;

/// Collection and field names: `^[a-z][a-z0-9_]{0,62}$`.
pub fn valid_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && s.len() <= 63
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A record key: 1 to 256 characters, no control characters.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.chars().count() <= MAX_KEY_CHARS && !key.chars().any(char::is_control)
}

/// The text a top-level value is indexed (and filtered) as: a string as
/// itself, a number or boolean as its JSON text. Objects, arrays and null
/// are not indexed.
pub fn index_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// RFC 7386 JSON merge patch: `null` removes a member, objects merge
/// recursively, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(changes) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(map) = target {
        for (k, v) in changes {
            if v.is_null() {
                map.remove(k);
            } else {
                merge_patch(map.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// An opaque list cursor: the last id a page looked at.
pub fn encode_cursor(after: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(after.as_bytes())
}

pub fn decode_cursor(s: &str) -> Option<Uuid> {
    let bytes = URL_SAFE_NO_PAD.decode(s).ok()?;
    Uuid::from_slice(&bytes).ok()
}

/// The version an `If-Match` header names: `3` or `"3"` (also `W/"3"`).
pub fn parse_if_match(value: &str) -> Option<i64> {
    let v = value.trim();
    let v = v.strip_prefix("W/").unwrap_or(v);
    let v = v
        .strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(v);
    v.parse::<i64>().ok().filter(|n| *n >= 1)
}

/// A record as the API returns it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Record {
    pub id: Uuid,
    pub collection: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[schema(value_type = Object)]
    pub data: Value,
    /// Optimistic-concurrency version: 1 at creation, +1 per update; send it
    /// back as `If-Match`.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One page of records.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecordPage {
    pub items: Vec<Record>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names() {
        for ok in ["a", "orders", "order_items2", &"a".repeat(63)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "1a",
            "_a",
            "Orders",
            "a-b",
            "a b",
            "é",
            &"a".repeat(64),
            "$key",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn keys() {
        assert!(valid_key("INV-2026-001"));
        assert!(!valid_key(""));
        assert!(!valid_key("a\nb"));
        assert!(!valid_key(&"k".repeat(257)));
    }

    #[test]
    fn index_texts() {
        assert_eq!(index_text(&json!("paid")).as_deref(), Some("paid"));
        assert_eq!(index_text(&json!(12)).as_deref(), Some("12"));
        assert_eq!(index_text(&json!(true)).as_deref(), Some("true"));
        assert_eq!(index_text(&json!(null)), None);
        assert_eq!(index_text(&json!([1])), None);
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1]});
        merge_patch(
            &mut doc,
            &json!({"a": null, "b": {"c": 5}, "e": "x", "f": 1}),
        );
        assert_eq!(doc, json!({"b": {"c": 5, "d": 3}, "e": "x", "f": 1}));
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let id = Uuid::now_v7();
        assert_eq!(decode_cursor(&encode_cursor(id)), Some(id));
        assert_eq!(decode_cursor("not a cursor"), None);
        assert_eq!(decode_cursor("AAAA"), None);
    }

    #[test]
    fn if_match_forms() {
        assert_eq!(parse_if_match("3"), Some(3));
        assert_eq!(parse_if_match("\"3\""), Some(3));
        assert_eq!(parse_if_match("W/\"12\""), Some(12));
        assert_eq!(parse_if_match("*"), None);
        assert_eq!(parse_if_match("0"), None);
        assert_eq!(parse_if_match("abc"), None);
    }
}
