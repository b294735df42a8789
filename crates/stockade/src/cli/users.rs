//! The `stockade users` commands: `import` (a CSV of users with their
//! bcrypt hashes, all or nothing, every problem named by its line in the
//! file) and `delete` (a user erased at once). The parsing and the writes
//! are the identity room's (`identity::import`, `identity::import_store`,
//! `identity::erase`); this module only finds the tenant, reports progress
//! and turns problems into `error:` lines.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use super::{Failure, MAX_IMPORT_ROWS, Progress, database, open_migrated};
use crate::audit::{Actor, RequestContext};
use crate::clock::SystemClock;
use crate::config::Config;
use crate::db::Db;
use crate::identity::import::{ImportError, parse_import};
use crate::identity::import_store::{self, ImportStoreError};
use crate::tenancy;

/// `users delete --email EMAIL`. Runs even while the email re-keying step
/// refuses to finish (two accounts with look-alike addresses): deleting one
/// of them is how the operator resolves it. The address is looked up as
/// stored first (so each of two look-alikes can be named), then in
/// canonical form.
pub(super) async fn delete(config: &Config, email: &str) -> Result<(), Failure> {
    let parsed = crate::identity::Email::parse(email);
    let db = database::open_with_keys(
        config,
        crate::db::MigrateOptions::default(),
        database::RekeyCollisions::Warn,
    )
    .await?;
    let r = delete_in(&db, email, parsed.as_ref().ok()).await;
    db.close().await;
    let (erased, address) = match (r, parsed) {
        (Ok(found), _) => found,
        (Err(_), Err(e)) => {
            return Err(Failure::one(format!("`{}`: {e}", email.escape_debug())));
        }
        (Err(e), Ok(_)) => return Err(e),
    };
    println!(
        "deleted user {} ({address}): removed from {} tenants, {} sessions deleted, {} API keys revoked; \
         their audit personal data is now unreadable",
        erased.user_id,
        erased.tenants.len(),
        erased.sessions_deleted,
        erased.api_keys_revoked
    );
    Ok(())
}

async fn delete_in(
    db: &Db,
    input: &str,
    parsed: Option<&crate::identity::Email>,
) -> Result<(crate::identity::Erasure, String), Failure> {
    let stored = crate::identity::find_user_by_key(db, &crate::identity::email::legacy_key(input))
        .await
        .map_err(Failure::one)?;
    let user = match (stored, parsed) {
        (Some(user), _) => Some(user),
        (None, Some(email)) => crate::identity::find_user_by_email(db, email)
            .await
            .map_err(Failure::one)?,
        (None, None) => None,
    }
    .ok_or_else(|| Failure::one(format!("no user with email `{}`", input.escape_debug())))?;
    let erased = crate::identity::erase_user(
        db,
        &SystemClock,
        user.id,
        Actor::System,
        RequestContext::default(),
    )
    .await
    .map_err(Failure::one)?;
    Ok((erased, user.email))
}

/// `users import FILE --tenant SLUG`.
pub(super) async fn import(config: &Config, path: &Path, slug: &str) -> Result<(), Failure> {
    let file = std::fs::File::open(path)
        .map_err(|e| Failure::one(format!("cannot open {}: {e}", path.display())))?;
    let rows = match parse_import(std::io::BufReader::new(file), MAX_IMPORT_ROWS) {
        Ok(rows) => rows,
        Err(ImportError::Rows(errors)) => {
            return Err(Failure {
                lines: errors.iter().map(ToString::to_string).collect(),
                code: 1,
            });
        }
        Err(e) => return Err(Failure::one(format!("{}: {e}", path.display()))),
    };
    let source = path
        .file_name()
        .map_or_else(|| path.to_string_lossy(), |name| name.to_string_lossy())
        .into_owned();
    let total = u64::try_from(rows.len()).unwrap_or(u64::MAX);

    let db = open_migrated(config).await?;
    let result = async {
        let tenant = tenancy::find_by_slug(&db, slug)
            .await
            .map_err(Failure::one)?
            .ok_or_else(|| Failure::one(format!("no tenant with slug `{slug}`")))?;
        let progress = Progress::new(total, "users", "imported");
        let imported =
            import_store::import_users(&db, &SystemClock, &tenant, rows, &source, |done| {
                progress.set(done)
            })
            .await;
        progress.finish();
        imported.map_err(|e| import_failure(e, path))
    }
    .await;
    db.close().await;
    let imported = result?;
    if imported == 0 {
        println!("the file lists no users: nothing imported into {slug}");
    } else {
        println!("imported {imported} users into {slug}");
    }
    Ok(())
}

fn import_failure(e: ImportStoreError, path: &Path) -> Failure {
    match e {
        ImportStoreError::Rows(problems) => {
            let wanted: Vec<usize> = problems.iter().map(|p| p.index).collect();
            let lines = record_lines(path, &wanted).unwrap_or_default();
            Failure {
                lines: problems
                    .iter()
                    .map(|p| match lines.get(&p.index) {
                        Some(line) => format!("line {line}: {}", p.message),
                        None => format!("row {}: {}", p.index.saturating_add(1), p.message),
                    })
                    .collect(),
                code: 1,
            }
        }
        other => Failure::one(other),
    }
}

/// The line of the file on which each `wanted` data record (0-based, in
/// file order) starts, read the way `parse_import` reads the file; `None` if
/// the file cannot be read again.
///
/// A record's position from the `csv` crate is where the previous record's
/// terminator ended: before the `\n` of a CRLF, and before any blank lines.
/// Its `line()` is therefore one short for CRLF files and after blank lines,
/// so the line is counted here from the byte offset instead.
fn record_lines(path: &Path, wanted: &[usize]) -> Option<HashMap<usize, u64>> {
    let wanted: BTreeSet<usize> = wanted.iter().copied().collect();
    let last = *wanted.last()?;
    let file = std::fs::File::open(path).ok()?;
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(std::io::BufReader::new(file));
    let mut record = csv::ByteRecord::new();
    let mut offsets = Vec::new();
    let mut index: usize = 0;
    while index <= last && csv.read_byte_record(&mut record).ok()? {
        if wanted.contains(&index) {
            offsets.push((record.position()?.byte(), index));
        }
        index = index.saturating_add(1);
    }
    let file = std::fs::File::open(path).ok()?;
    let lines = line_numbers(std::io::BufReader::new(file), offsets.iter().map(|o| o.0)).ok()?;
    Some(offsets.into_iter().map(|o| o.1).zip(lines).collect())
}

/// For each byte offset (ascending), the 1-based line of the first byte at
/// or after it that is not a line break.
fn line_numbers(
    reader: impl std::io::BufRead,
    offsets: impl IntoIterator<Item = u64>,
) -> std::io::Result<Vec<u64>> {
    let mut offsets = offsets.into_iter().peekable();
    let mut lines = Vec::new();
    let mut newlines: u64 = 0;
    let mut waiting: usize = 0;
    let mut pos: u64 = 0;
    for byte in reader.bytes() {
        let byte = byte?;
        while offsets.next_if(|&o| o <= pos).is_some() {
            waiting = waiting.saturating_add(1);
        }
        if waiting > 0 && byte != b'\r' && byte != b'\n' {
            lines.extend(std::iter::repeat_n(newlines.saturating_add(1), waiting));
            waiting = 0;
        }
        if byte == b'\n' {
            newlines = newlines.saturating_add(1);
        }
        pos = pos.saturating_add(1);
    }
    let rest = waiting.saturating_add(offsets.count());
    lines.extend(std::iter::repeat_n(newlines.saturating_add(1), rest));
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(file: &str, wanted: &[usize]) -> Vec<u64> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        std::fs::write(&path, file).unwrap();
        let found = record_lines(&path, wanted).unwrap();
        wanted.iter().map(|i| found[i]).collect()
    }

    #[test]
    fn record_lines_are_the_lines_of_the_file() {
        assert_eq!(lines_of("h1,h2\na,b\nc,d\n", &[0, 1]), [2, 3]);
        assert_eq!(lines_of("h1,h2\r\na,b\r\nc,d\r\n", &[0, 1]), [2, 3]);
        assert_eq!(lines_of("h1,h2\n\na,b\n\n\nc,d", &[0, 1]), [3, 6]);
        assert_eq!(lines_of("h1,h2\r\n\r\na,b\r\n\r\nc,d\r\n", &[1]), [5]);
        assert_eq!(lines_of("\u{feff}h1,h2\r\na,b\r\n", &[0]), [2]);
        assert_eq!(lines_of("h1,h2\n\"a\r\nb\",b\nc,d\n", &[0, 1]), [2, 4]);
        // Rows of the wrong width still count.
        assert_eq!(lines_of("h1,h2\na\nb,c,d\ne,f\n", &[2]), [4]);
        assert!(record_lines(Path::new("/nonexistent/f.csv"), &[0]).is_none());
        let dir = tempfile::tempdir().unwrap();
        assert!(record_lines(dir.path(), &[]).is_none());
    }

    #[test]
    fn line_numbers_skip_line_breaks() {
        let text = b"ab\n\r\n\ncd\n";
        assert_eq!(
            line_numbers(&text[..], [0, 2, 3, 9, 50]).unwrap(),
            [1, 4, 4, 5, 5]
        );
    }
}
