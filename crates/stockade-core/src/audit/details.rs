//! How an event's `details` is presented (read API, NDJSON export, webhook
//! push): as the JSON object it is, not as a string holding JSON. It must
//! not change what is stored or hashed.
//!
//! What is stored and hashed does not change: `StoredEvent::details` keeps the
//! canonical text (`serde_json`'s compact form of the object, keys in
//! ascending order). Presenting it as an object loses nothing, because that
//! text is exactly what any reader gets back by writing the object compactly
//! with sorted keys — so a receiver recomputes the hash from the object (see
//! `docs/audit-events.md`, "Hash"). A stored text that would not come back
//! byte for byte (never written by Stockade: every append goes through
//! `NewEvent::seal`) is presented as the original string instead, so the
//! hash still recomputes and nothing is silently normalised.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// The object `text` holds, when writing it back gives exactly `text`.
pub fn as_object(text: &str) -> Option<Value> {
    let value: Value = serde_json::from_str(text).ok()?;
    // Compared as text: `Value == &str` would compare a JSON string.
    let written = value.to_string();
    (value.is_object() && written.as_str() == text).then_some(value)
}

/// Serialises the stored details text as its object (or, for a text that
/// would not round-trip, as the text itself).
pub fn serialize<S: Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
    match as_object(text) {
        Some(object) => object.serialize(s),
        None => s.serialize_str(text),
    }
}

/// Reads details presented either way back into the canonical text, so a
/// line of the export deserialises into a `StoredEvent` whose
/// `compute_hash` is the event's hash.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(text) => Ok(text),
        object @ Value::Object(_) => Ok(object.to_string()),
        _ => Err(serde::de::Error::custom(
            "details must be a JSON object (or its canonical text)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_texts_are_presented_as_objects_and_read_back_exactly() {
        for text in [
            r#"{}"#,
            r#"{"a":"x","b":1}"#,
            r#"{"changes":{"audit_retention_days":{"new":120,"old":90}},"n":-7,"f":1.5}"#,
            r#"{"quote":"a \"b\" \\ c\n\t\u0001 é 😀 \u007f"}"#,
            r#"{"big":18446744073709551615,"neg":-9223372036854775808,"x":[1,{"k":null}]}"#,
        ] {
            let canonical = serde_json::from_str::<Value>(text).unwrap().to_string();
            let object = as_object(&canonical).unwrap();
            assert!(object.is_object());
            let back = deserialize(object).unwrap();
            assert_eq!(back, canonical);
        }
    }

    #[test]
    fn texts_that_would_not_round_trip_stay_strings() {
        for text in [
            r#"{ "a": 1 }"#,
            r#"{"b":1,"a":2}"#,
            "[1]",
            "1",
            "not json",
            "",
        ] {
            assert_eq!(as_object(text), None, "{text}");
            let presented = serialize(text, serde_json::value::Serializer).unwrap();
            assert_eq!(presented, Value::String(text.to_owned()));
            assert_eq!(deserialize(presented).unwrap(), text);
        }
        assert!(deserialize(serde_json::json!([1])).is_err());
        assert!(deserialize(serde_json::json!(1)).is_err());
    }
}
