//! Parsing a CSV import into records (pure: bytes in, rows or problems out).
//!
//! - The header row names top-level fields (`^[a-z][a-z0-9_]{0,62}$`); a
//!   column named `key` is the record key. Duplicate or invalid names: the
//!   whole file is refused.
//! - Every value is kept as a string (no number or boolean inference); an
//!   empty cell is stored as an empty string (an empty `key` cell: no key).
//! - Formula injection: a cell starting with `=`, `+`, `-`, `@`, tab or CR is
//!   refused with its line, unless it is a plain number (`-12.5`, `+3`,
//!   `-1e5`), or the caller asked for [`FormulaCells::Escape`], which stores
//!   it prefixed with `'`.
//! - Lines are 1-based physical lines of the file (the header is line 1).

use serde::Serialize;
use serde_json::{Map, Value};

use super::model::{valid_key, valid_name};

/// The column that holds the record key.
pub const KEY_COLUMN: &str = "key";
/// Row problems listed in one answer (the count says how many in all).
pub const MAX_LISTED_ERRORS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormulaCells {
    Reject,
    Escape,
}

/// One record to import.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportRow {
    pub line: u64,
    pub key: Option<String>,
    pub data: Value,
}

/// A problem with one row (or cell).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    pub line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

/// Why a file was refused; nothing is imported in any case.
#[derive(Debug, PartialEq)]
pub enum ParseError {
    NotUtf8,
    /// Bad quotes, ragged rows: the line where the CSV stops making sense.
    Malformed {
        line: u64,
        message: String,
    },
    Header(String),
    TooManyRows(usize),
    Rows(Vec<RowError>),
}

/// Parses `bytes` (an optional UTF-8 byte-order mark first).
pub fn parse(
    bytes: &[u8],
    max_rows: usize,
    formula: FormulaCells,
) -> Result<Vec<ImportRow>, ParseError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|_| ParseError::NotUtf8)?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(text.as_bytes());
    let header = reader.headers().map_err(|e| malformed(&e, 1))?.clone();
    let columns = check_header(&header)?;
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        let line = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(malformed(&e, line)),
        }
        let line = record.position().map_or(line, csv::Position::line);
        if rows.len() >= max_rows {
            return Err(ParseError::TooManyRows(max_rows));
        }
        let mut key = None;
        let mut data = Map::new();
        for (column, cell) in columns.iter().zip(record.iter()) {
            let value = match check_cell(cell, formula) {
                Ok(v) => v,
                Err(message) => {
                    errors.push(RowError {
                        line,
                        field: Some(column.clone()),
                        message,
                    });
                    continue;
                }
            };
            if column == KEY_COLUMN {
                if value.is_empty() {
                    continue;
                }
                if !valid_key(&value) {
                    errors.push(RowError {
                        line,
                        field: Some(column.clone()),
                        message: "a key is 1 to 256 characters, no control characters".to_owned(),
                    });
                }
                key = Some(value);
            } else {
                data.insert(column.clone(), Value::String(value));
            }
        }
        rows.push(ImportRow {
            line,
            key,
            data: Value::Object(data),
        });
    }
    duplicate_keys(&rows, &mut errors);
    if errors.is_empty() {
        Ok(rows)
    } else {
        errors.sort_by_key(|e| e.line);
        Err(ParseError::Rows(errors))
    }
}

fn malformed(e: &csv::Error, fallback_line: u64) -> ParseError {
    let line = e.position().map_or(fallback_line, csv::Position::line);
    let message = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("this row has {len} cells; the header has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => "not UTF-8".to_owned(),
        _ => "malformed CSV".to_owned(),
    };
    ParseError::Malformed {
        line: line.max(1),
        message,
    }
}

fn check_header(header: &csv::StringRecord) -> Result<Vec<String>, ParseError> {
    let mut columns: Vec<String> = Vec::new();
    if header.is_empty() || header.iter().all(str::is_empty) {
        return Err(ParseError::Header("the file has no header row".to_owned()));
    }
    for name in header.iter() {
        if !valid_name(name) {
            return Err(ParseError::Header(format!(
                "`{}` is not a field name (a-z, 0-9 and _, starting with a letter, at most 63)",
                name.chars().take(64).collect::<String>()
            )));
        }
        if columns.iter().any(|c| c == name) {
            return Err(ParseError::Header(format!("`{name}` appears twice")));
        }
        columns.push(name.to_owned());
    }
    Ok(columns)
}

/// The stored value of a cell, or why it is refused.
fn check_cell(cell: &str, formula: FormulaCells) -> Result<String, String> {
    let risky = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if !risky || is_plain_number(cell) {
        return Ok(cell.to_owned());
    }
    match formula {
        FormulaCells::Escape => Ok(format!("'{cell}")),
        FormulaCells::Reject => Err(
            "starts with =, +, -, @, tab or CR (a spreadsheet formula); send ?formula_cells=escape to store it prefixed with '"
                .to_owned(),
        ),
    }
}

/// `[+-]digits[.digits][e[+-]digits]`, nothing else.
fn is_plain_number(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match s.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e.strip_prefix(['+', '-']).unwrap_or(e))),
        None => (s, None),
    };
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((i, f)) => (digits(i) || i.is_empty()) && (digits(f) || (f.is_empty() && digits(i))),
        None => digits(mantissa),
    };
    mantissa_ok && exponent.is_none_or(digits)
}

fn duplicate_keys(rows: &[ImportRow], errors: &mut Vec<RowError>) {
    let mut seen: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for row in rows {
        if let Some(key) = &row.key {
            if let Some(first) = seen.get(key.as_str()) {
                errors.push(RowError {
                    line: row.line,
                    field: Some(KEY_COLUMN.to_owned()),
                    message: format!("the same key as line {first}"),
                });
            } else {
                seen.insert(key, row.line);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(s: &str) -> Vec<ImportRow> {
        parse(s.as_bytes(), 100, FormulaCells::Reject).unwrap()
    }

    fn rows_err(s: &str) -> Vec<RowError> {
        match parse(s.as_bytes(), 100, FormulaCells::Reject) {
            Err(ParseError::Rows(e)) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn good_file_with_bom_key_and_quotes() {
        let rows = ok("\u{feff}key,name,total\nA-1,\"Smith, Ada\",-12.5\n,\"multi\nline\",3\n");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].key.as_deref(), Some("A-1"));
        assert_eq!(
            rows[0].data,
            json!({"name": "Smith, Ada", "total": "-12.5"})
        );
        assert_eq!(rows[0].line, 2);
        assert_eq!(rows[1].key, None);
        assert_eq!(rows[1].data["name"], "multi\nline");
        assert_eq!(rows[1].line, 3);
        assert!(ok("a,b\n").is_empty());
    }

    #[test]
    fn formula_cells() {
        for bad in [
            "=1+1", "+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx", "-", "+", "=", "-1-1", "1e5x",
        ] {
            let s = format!("a\n\"{bad}\"\n");
            if bad == "1e5x" {
                assert!(parse(s.as_bytes(), 9, FormulaCells::Reject).is_ok());
                continue;
            }
            let errs = rows_err(&s);
            assert_eq!(errs.len(), 1, "{bad:?}");
            assert_eq!((errs[0].line, errs[0].field.as_deref()), (2, Some("a")));
        }
        for fine in ["-12.5", "+3", "-1e5", "-.5", "+7.", "12", "a=b", "-0"] {
            let rows = ok(&format!("a\n{fine}\n"));
            assert_eq!(rows[0].data["a"], fine);
        }
        let rows = parse(b"a\n=HYPERLINK(1)\n", 9, FormulaCells::Escape).unwrap();
        assert_eq!(rows[0].data["a"], "'=HYPERLINK(1)");
    }

    #[test]
    fn bad_files() {
        assert_eq!(
            parse(b"a\n\xff\n", 9, FormulaCells::Reject),
            Err(ParseError::NotUtf8)
        );
        assert!(matches!(
            parse(b"a,b\n1,2\n3\n", 9, FormulaCells::Reject),
            Err(ParseError::Malformed { line: 3, .. })
        ));
        assert!(matches!(
            parse(b"a,b\n1,2\n\"3,4\n", 9, FormulaCells::Reject),
            Err(ParseError::Malformed { .. }) | Err(ParseError::Rows(_))
        ));
        for header in ["a,a\n", "a,B\n", "a,\n", "1a\n", "\n", ""] {
            assert!(
                matches!(
                    parse(header.as_bytes(), 9, FormulaCells::Reject),
                    Err(ParseError::Header(_))
                ),
                "{header:?}"
            );
        }
        assert_eq!(
            parse(b"a\n1\n2\n3\n", 2, FormulaCells::Reject),
            Err(ParseError::TooManyRows(2))
        );
    }

    #[test]
    fn duplicate_and_bad_keys_are_row_errors() {
        let errs = rows_err("key,a\nk1,x\nk2,y\nk1,z\n");
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].line, 4);
        assert!(errs[0].message.contains("line 2"));
        let long = "k".repeat(300);
        assert_eq!(rows_err(&format!("key\n{long}\n"))[0].line, 2);
    }
}
