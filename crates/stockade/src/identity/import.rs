//! Parsing a user import file (`stockade users import FILE.csv --tenant SLUG`):
//! users from another system, with their existing bcrypt hashes.
//!
//! Pure: reads bytes, returns validated rows or every problem found. The file
//! has a header row naming the columns `email`, `name`, `password_hash` and,
//! optionally, `role` (default `viewer`), in any order. Error messages never
//! repeat a cell's content (a hash, above all), only its line and column.
//!
//! This file reads the file as a whole (size and row limits, UTF-8, CSV
//! shape, every problem collected); what each column and cell must hold is
//! `import/columns.rs`. Writing the users is `import_store.rs`.

use std::collections::HashMap;
use std::io::Read;

use secrecy::SecretString;
use serde::Serialize;

use super::Email;

mod columns;

use columns::Columns;

/// The role given to imported users when the file has no `role` column or
/// leaves the cell empty.
pub const DEFAULT_ROLE: &str = "viewer";

/// Upper bound on the bytes one row may take on average (an email of 254
/// bytes, a name of 200 characters of up to 4 bytes, a 60-byte hash, a role,
/// quotes and separators fit well within it). The whole input is limited to
/// `(max_rows + 1) * MAX_ROW_BYTES`, so a hostile file cannot make the parser
/// allocate without bound.
pub const MAX_ROW_BYTES: u64 = 4096;

/// One user to import.
#[derive(Debug)]
pub struct ImportRow {
    pub email: Email,
    pub name: String,
    /// A well-formed bcrypt hash (`$2a$`/`$2b$`/`$2y$`).
    pub password_hash: SecretString,
    pub role: String,
}

/// A problem with one row. `line` is the 1-based line where the row starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    pub line: u64,
    pub message: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Why an import file was refused. Nothing is imported in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Some rows are invalid; all of them are listed.
    #[error("{} problem(s) in the file, nothing imported", .0.len())]
    Rows(Vec<RowError>),
    /// The header row is missing or wrong.
    #[error("bad header row: {0}")]
    Header(String),
    /// The file is not UTF-8 text.
    #[error("the file is not valid UTF-8 (line {line})")]
    NotUtf8 { line: u64 },
    /// More data rows than allowed.
    #[error("too many rows: at most {max} allowed")]
    TooManyRows { max: usize },
    /// More bytes than `max_rows` rows can take.
    #[error("the file is too large: at most {max_bytes} bytes allowed")]
    TooLarge { max_bytes: u64 },
    /// The file could not be read or is not CSV.
    #[error("could not read the file as CSV: {0}")]
    Read(String),
}

impl ImportError {
    /// The per-row problems (empty for a whole-file error).
    pub fn row_errors(&self) -> &[RowError] {
        match self {
            Self::Rows(errors) => errors,
            _ => &[],
        }
    }
}

/// Parses and validates an import file with at most `max_rows` data rows.
///
/// Returns every row, or every problem found (not only the first): invalid
/// email, name, hash or role, duplicate emails (case-insensitive), rows with
/// the wrong number of columns. Whole-file problems (bad header, not UTF-8,
/// too many rows, too large) stop the parse at once.
pub fn parse_import(reader: impl Read, max_rows: usize) -> Result<Vec<ImportRow>, ImportError> {
    let max_bytes = u64::try_from(max_rows)
        .unwrap_or(u64::MAX)
        .saturating_add(1)
        .saturating_mul(MAX_ROW_BYTES);
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(LimitedReader {
            inner: reader,
            remaining: max_bytes,
            exceeded: false,
        });

    let columns = match csv.headers() {
        Ok(header) => Columns::from_header(header)?,
        Err(e) => return Err(whole_file_error(&e, csv.get_ref(), max_bytes)),
    };

    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut record = csv::StringRecord::new();
    let mut count: usize = 0;
    loop {
        match csv.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                count = count.saturating_add(1);
                if count > max_rows {
                    return Err(ImportError::TooManyRows { max: max_rows });
                }
                let line = record.position().map_or(0, csv::Position::line);
                if let Some(row) = columns.parse_row(&record, line, &mut seen, &mut errors) {
                    rows.push(row);
                }
            }
            Err(e) => match e.kind() {
                csv::ErrorKind::UnequalLengths {
                    pos,
                    expected_len,
                    len,
                } => {
                    count = count.saturating_add(1);
                    if count > max_rows {
                        return Err(ImportError::TooManyRows { max: max_rows });
                    }
                    errors.push(RowError {
                        line: pos.as_ref().map_or(0, csv::Position::line),
                        message: format!("expected {expected_len} columns, found {len}"),
                    });
                }
                _ => return Err(whole_file_error(&e, csv.get_ref(), max_bytes)),
            },
        }
    }

    if errors.is_empty() {
        Ok(rows)
    } else {
        Err(ImportError::Rows(errors))
    }
}

fn whole_file_error<R>(e: &csv::Error, reader: &LimitedReader<R>, max_bytes: u64) -> ImportError {
    if reader.exceeded {
        return ImportError::TooLarge { max_bytes };
    }
    match e.kind() {
        csv::ErrorKind::Utf8 { pos, .. } => ImportError::NotUtf8 {
            line: pos.as_ref().map_or(1, csv::Position::line),
        },
        csv::ErrorKind::Io(io) => ImportError::Read(io.kind().to_string()),
        // Other kinds carry no cell content, only positions and counts.
        _ => ImportError::Read(e.to_string()),
    }
}

/// A reader that fails (instead of silently truncating) once more than
/// `remaining` bytes have been read.
struct LimitedReader<R> {
    inner: R,
    remaining: u64,
    exceeded: bool,
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Ask for one byte more than allowed, so that reaching the limit
        // exactly is fine and going past it is noticed.
        let want = usize::try_from(self.remaining.saturating_add(1))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let Some(window) = buf.get_mut(..want) else {
            return Ok(0);
        };
        let n = self.inner.read(window)?;
        let n64 = u64::try_from(n).unwrap_or(u64::MAX);
        if n64 > self.remaining {
            self.exceeded = true;
            return Err(std::io::Error::other("input too large"));
        }
        self.remaining = self.remaining.saturating_sub(n64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    pub(super) fn hash() -> String {
        // A well-formed $2b$ hash (cost 4, random salt).
        bcrypt::hash("Imported-Pass-1", 4).unwrap()
    }

    pub(super) fn parse(s: &str) -> Result<Vec<ImportRow>, ImportError> {
        parse_import(s.as_bytes(), 1000)
    }

    pub(super) fn row_errors(s: &str) -> Vec<RowError> {
        match parse(s) {
            Err(ImportError::Rows(e)) => e,
            other => panic!("expected row errors, got {other:?}"),
        }
    }

    #[test]
    fn good_file() {
        let h = hash();
        let y = format!("$2y${}", &h[4..]);
        let file = format!(
            "email,name,password_hash,role\n\
             Alice@Example.com,Alice Smith,{h},admin\n\
             bob@example.com,\"Bob, Jr.\",{y},\n\
             carol@example.com, Carol ,{h},billing_ops-2\n"
        );
        let rows = parse(&file).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].email.key(), "alice@example.com");
        assert_eq!(rows[0].email.as_str(), "Alice@Example.com");
        assert_eq!(rows[0].name, "Alice Smith");
        assert_eq!(rows[0].password_hash.expose_secret(), h);
        assert_eq!(rows[0].role, "admin");
        assert_eq!(rows[1].name, "Bob, Jr.");
        assert_eq!(rows[1].role, DEFAULT_ROLE);
        assert_eq!(rows[1].password_hash.expose_secret(), y);
        assert_eq!(rows[2].name, "Carol");
        assert_eq!(rows[2].role, "billing_ops-2");
    }

    #[test]
    fn header_only_is_empty_import() {
        assert!(parse("email,name,password_hash\n").unwrap().is_empty());
    }

    #[test]
    fn all_errors_are_reported() {
        let h = hash();
        let file = format!(
            "email,name,password_hash,role\n\
             bad,,nope,BAD\n\
             ok@example.com,Ok,{h},admin\n\
             x@example.com,X,{h}\n\
             ok@example.com,Dup,{h},\n\
             y@example.com,Y,$2b$04$short,\n"
        );
        let errs = row_errors(&file);
        let got: Vec<(u64, &str)> = errs
            .iter()
            .map(|e| (e.line, e.message.split(':').next().unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                (2, "email"),
                (2, "name"),
                (2, "password_hash"),
                (2, "role"),
                (4, "expected 4 columns, found 3"),
                (5, "email"),
                (6, "password_hash"),
            ]
        );
        let err = parse(&file).unwrap_err();
        assert_eq!(err.row_errors().len(), 7);
        assert!(err.to_string().contains("7 problem"));
    }

    #[test]
    fn hashes_are_never_echoed() {
        let h = hash();
        let almost = format!("{}!", &h[..59]);
        let file = format!(
            "email,name,password_hash\n\
             a@example.com,A,{almost}\n\
             a@example.com,A,{h}\n\
             b@example.com,B,{h},extra\n"
        );
        let err = parse(&file).unwrap_err();
        let all = format!("{err} {err:?} {:?}", err.row_errors());
        assert!(!all.contains(&h[7..]), "{all}");
        assert!(!all.contains(&almost[7..]), "{all}");
        // Nor in the Debug of a parsed row.
        let rows = parse(&format!("email,name,password_hash\na@example.com,A,{h}\n")).unwrap();
        assert!(!format!("{rows:?}").contains(&h[7..]));
    }

    #[test]
    fn too_many_rows() {
        let h = hash();
        let mut file = "email,name,password_hash\n".to_owned();
        for i in 0..3 {
            file.push_str(&format!("u{i}@example.com,U,{h}\n"));
        }
        assert_eq!(parse_import(file.as_bytes(), 3).unwrap().len(), 3);
        assert!(matches!(
            parse_import(file.as_bytes(), 2),
            Err(ImportError::TooManyRows { max: 2 })
        ));
        assert!(matches!(
            parse_import(file.as_bytes(), 0),
            Err(ImportError::TooManyRows { max: 0 })
        ));
    }

    #[test]
    fn too_large() {
        // One enormous cell is refused without being read in full.
        let mut file = "email,name,password_hash\na@example.com,\"".to_owned();
        file.push_str(&"x".repeat(100_000));
        file.push_str("\",h\n");
        assert!(matches!(
            parse_import(file.as_bytes(), 2),
            Err(ImportError::TooLarge { max_bytes: 12_288 })
        ));
        // The same bytes are fine when the row budget allows them.
        assert!(matches!(
            parse_import(file.as_bytes(), 100),
            Err(ImportError::Rows(_))
        ));
    }

    #[test]
    fn not_utf8() {
        let mut bytes = b"email,name,password_hash\na@example.com,".to_vec();
        bytes.extend_from_slice(&[0xff, 0xfe, 0x80]);
        bytes.extend_from_slice(b",x\n");
        assert!(matches!(
            parse_import(bytes.as_slice(), 10),
            Err(ImportError::NotUtf8 { line: 2 })
        ));
        assert!(matches!(
            parse_import(&[0xc3u8, 0x28, b',', b'\n'][..], 10),
            Err(ImportError::NotUtf8 { line: 1 })
        ));
    }

    #[test]
    fn hostile_csv_gives_clean_errors() {
        let h = hash();
        // Unbalanced quote: swallows the rest of the file into one cell.
        let unbalanced =
            format!("email,name,password_hash\n\"a@example.com,A,{h}\nb@example.com,B,{h}\n");
        assert!(parse(&unbalanced).is_err());
        // Quote in the middle of a cell, stray quotes, NUL bytes, very wide rows.
        for body in [
            format!("a@exa\"mple.com,A,{h}\n"),
            format!("a@example.com,\"A\"B\",{h}\n"),
            format!("a@example.com,A\0,{h}\n"),
            format!("{}\n", ",".repeat(10_000)),
            "\"\"\"\n".to_owned(),
            "\n\n\n".to_owned(),
        ] {
            let _ = parse(&format!("email,name,password_hash\n{body}"));
        }
        // Binary garbage.
        let mut seed: u32 = 0x1234_5678;
        for len in [1usize, 7, 64, 1000, 20_000] {
            let garbage: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    (seed >> 16) as u8
                })
                .collect();
            assert!(parse_import(garbage.as_slice(), 10).is_err(), "{len}");
            let mut with_header = b"email,name,password_hash\n".to_vec();
            with_header.extend_from_slice(&garbage);
            // Whatever it parses to, no panic, and nothing half-valid.
            if let Ok(rows) = parse_import(with_header.as_slice(), 10) {
                assert!(rows.is_empty(), "{len}");
            }
        }
    }

    #[test]
    fn wrong_column_counts_are_row_errors() {
        let h = hash();
        let errs = row_errors(&format!(
            "email,name,password_hash\n\
             a@example.com,A\n\
             b@example.com,B,{h}\n\
             c@example.com,C,{h},admin,extra\n"
        ));
        assert_eq!(
            errs,
            [
                RowError {
                    line: 2,
                    message: "expected 3 columns, found 2".to_owned()
                },
                RowError {
                    line: 4,
                    message: "expected 3 columns, found 5".to_owned()
                },
            ]
        );
    }
}
