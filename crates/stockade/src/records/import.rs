//! Parsing a CSV import into records (pure: bytes in, rows or problems out).
//!
//! - The header row names top-level fields (`^[a-z][a-z0-9_]{0,62}$`); a
//!   column named `key` is the record key. Duplicate or invalid names: the
//!   whole file is refused.
//! - Every value is kept as a string (no number or boolean inference); an
//!   empty cell is stored as an empty string (an empty `key` cell: no key).
//! - Quoting is strict: a quote that opens a cell and never closes, or text
//!   after the quote that closes a cell, refuses the whole file with its line
//!   ([`check_quoting`]; the `csv` crate accepts both silently).
//! - Formula injection: a cell whose first significant character is `=`,
//!   `+`, `-`, `@`, tab or CR is refused with its line, unless it is a plain
//!   number (`-12.5`, `+3`, `-1e5`), or the caller asked for
//!   [`FormulaCells::Escape`], which stores it prefixed with `'`. Invisible
//!   characters (byte-order mark, zero-width and other default-ignorable
//!   characters) and white space before it are skipped, and it is compared
//!   after NFKC, so `＝`, `＋`, `－`, `＠` and their small, superscript and
//!   subscript forms count as `=`, `+`, `-`, `@` ([`looks_like_formula`]).
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
    check_quoting(text.as_bytes())?;
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

/// Refuses the quoting the `csv` crate accepts without a word (it has no
/// strict mode: BurntSushi/rust-csv#77): a quote that opens a cell and is
/// never closed (the rest of the file becomes one cell), and text after the
/// quote that closes a cell (`"a"b` reads as `ab`). This is not a second CSV
/// parser: it follows only what decides quoting in `csv_core` with the
/// settings [`parse`] uses (a `"` opens a quoted cell only as the first
/// byte of a cell; inside, `""` is a quote and `"` ends the quoting; cells
/// end at `,`, records at `\n` or `\r`), and leaves every other rule,
/// and the reading of the cells, to the `csv` crate. A `"` inside an unquoted
/// cell (`5" screen`) stays an ordinary character, as in `csv`. Bytes are
/// enough: these delimiters never occur inside a multi-byte UTF-8 character.
pub fn check_quoting(bytes: &[u8]) -> Result<(), ParseError> {
    #[derive(Clone, Copy)]
    enum State {
        CellStart,
        Unquoted,
        /// Inside quotes opened on line `from`.
        Quoted {
            from: u64,
        },
        /// A `"` inside quotes: a closing quote, or the first of `""`.
        QuoteSeen {
            from: u64,
        },
    }
    let mut line = 1u64;
    let mut state = State::CellStart;
    for &b in bytes {
        state = match (state, b) {
            (State::CellStart, b'"') => State::Quoted { from: line },
            (State::Quoted { from }, b'"') => State::QuoteSeen { from },
            (State::QuoteSeen { from }, b'"') => State::Quoted { from },
            (State::CellStart | State::Unquoted | State::QuoteSeen { .. }, b',' | b'\r') => {
                State::CellStart
            }
            (State::CellStart | State::Unquoted | State::QuoteSeen { .. }, b'\n') => {
                line += 1;
                State::CellStart
            }
            (State::QuoteSeen { .. }, _) => {
                return Err(ParseError::Malformed {
                    line,
                    message: "text after the closing quote of a cell (a quoted cell ends at a comma or the end of its line; write a quote inside it as \"\")"
                        .to_owned(),
                });
            }
            (State::Quoted { from }, b'\n') => {
                line += 1;
                State::Quoted { from }
            }
            (quoted @ State::Quoted { .. }, _) => quoted,
            (State::CellStart | State::Unquoted, _) => State::Unquoted,
        };
    }
    match state {
        State::Quoted { from } => Err(ParseError::Malformed {
            line: from,
            message: "a quote opened on this line is never closed".to_owned(),
        }),
        _ => Ok(()),
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
    if !looks_like_formula(cell) {
        return Ok(cell.to_owned());
    }
    match formula {
        FormulaCells::Escape => Ok(format!("'{cell}")),
        FormulaCells::Reject => Err(
            "starts with =, +, -, @, tab or CR (a spreadsheet formula; also behind invisible characters or white space, and in full-width form); send ?formula_cells=escape to store it prefixed with '"
                .to_owned(),
        ),
    }
}

/// The characters a spreadsheet may take as the start of a formula.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Whether a spreadsheet could read `cell` as a formula: its first
/// significant character, after NFKC, is one of [`FORMULA_STARTS`], and the
/// cell is not a plain number. Skipped before it: default-ignorable
/// characters (byte-order mark, zero-width space and joiners, bidi controls,
/// soft hyphen, variation selectors, …; what some readers drop) and white
/// space other than tab and CR (what an import that trims drops).
pub fn looks_like_formula(cell: &str) -> bool {
    let rest = cell.trim_start_matches(|c: char| {
        crate::text::is_default_ignorable(c) || (c.is_whitespace() && c != '\t' && c != '\r')
    });
    let rest = crate::text::nfkc(rest);
    rest.starts_with(FORMULA_STARTS) && !is_plain_number(&rest)
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
            Err(ParseError::Malformed { line: 3, .. })
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

    fn malformed_at(s: &str) -> (u64, String) {
        match parse(s.as_bytes(), 100, FormulaCells::Reject) {
            Err(ParseError::Malformed { line, message }) => (line, message),
            other => panic!("{s:?}: {other:?}"),
        }
    }

    #[test]
    fn unterminated_quotes_refuse_the_file_at_the_opening_line() {
        // The merged-rows attack: one open quote swallows the rest.
        let (line, message) = malformed_at("name,amount\nA,\"1\nB,2\nC,3\n");
        assert_eq!(line, 2);
        assert!(message.contains("never closed"), "{message}");
        assert_eq!(malformed_at("a,b\n1,2\n3,\"x\n\n\n").0, 3);
        assert_eq!(malformed_at("\"a,b\n1,2\n").0, 1);
        // A closed multi-line cell before it does not shift the line.
        assert_eq!(malformed_at("a,b\n\"x\ny\",1\n2,\"open\n").0, 4);
        assert_eq!(malformed_at("a\n\"\"\"\n").0, 2);
    }

    #[test]
    fn text_after_a_closing_quote_refuses_the_file_at_its_line() {
        for (csv, line) in [
            ("a,b\n\"x\"y,2\n", 2),
            ("a,b\n1,2\n3,\"4\" \n", 3),
            ("a,b\n1,\"multi\nline\"tail\n", 3),
            ("a,b\n\"x\"\"\"y,2\n", 2),
            ("\"a\"b,c\n1,2\n", 1),
        ] {
            let (got, message) = malformed_at(csv);
            assert_eq!(got, line, "{csv:?}");
            assert!(message.contains("closing quote"), "{message}");
        }
    }

    #[test]
    fn well_formed_quoting_still_reads() {
        let rows = ok("a,b\r\n\"x \"\"q\"\"\",\"\"\r\n5\" screen,\"l1\r\nl2\"\r\n\"\",\"\"\"\"\n");
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].data, json!({"a": "x \"q\"", "b": ""}));
        assert_eq!(rows[1].data, json!({"a": "5\" screen", "b": "l1\r\nl2"}));
        assert_eq!(rows[2].data, json!({"a": "", "b": "\""}));
        assert_eq!(rows[2].line, 4);
        assert!(check_quoting(b"").is_ok() && check_quoting(b"\"\"").is_ok());
    }

    #[test]
    fn hidden_and_full_width_formula_starts_are_caught() {
        for bad in [
            "\u{feff}=cmd|' /C calc'!A0",
            "\u{200b}=1+1",
            "\u{200c}\u{200d}+cmd",
            "\u{2060}-2+3",
            "\u{202e}@SUM(A1)",
            "\u{00ad}=1",
            "\u{fe0f}=1",
            "\u{feff}\t=1",
            "\u{200b}\r=1",
            "＝1+1",
            "＋cmd",
            "－2+3",
            "＠SUM(A1)",
            "﹦1",
            "﹢1+1",
            "﹫x",
            "⁼1",
            "₊1+1",
            " =1+1",
            "\u{3000}=1",
            "\u{a0}@x",
            "\n=1",
            "\u{200b} \u{feff}＝HYPERLINK(\"http://x\")",
        ] {
            assert!(looks_like_formula(bad), "{bad:?}");
            let s = format!("a\n\"{}\"\n", bad.replace('"', "\"\""));
            let errs = rows_err(&s);
            assert_eq!(
                (errs[0].line, errs[0].field.as_deref()),
                (2, Some("a")),
                "{bad:?}"
            );
            let rows = parse(s.as_bytes(), 9, FormulaCells::Escape).unwrap();
            assert_eq!(rows[0].data["a"], format!("'{bad}"), "{bad:?}");
        }
        for fine in [
            "\u{feff}-12.5",
            "\u{200b}+3",
            "－12",
            "＋１２",
            " -1e5",
            "a\u{200b}=b",
            "x＝y",
            "\u{200b}",
            "",
            "   ",
            "−1+1",
        ] {
            assert!(!looks_like_formula(fine), "{fine:?}");
            let rows = ok(&format!("a\n\"{fine}\"\n"));
            assert_eq!(rows[0].data["a"], fine, "stored as sent");
        }
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
