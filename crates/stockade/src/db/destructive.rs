//! Which migrations are destructive (SPEC §2.16: "never destructive without a
//! flag").
//!
//! A migration that drops or empties data says so on its first line:
//!
//! ```sql
//! -- stockade:destructive <why, and what an operator should back up first>
//! ```
//!
//! As a backstop for a forgotten marker, its SQL is also scanned for the
//! statements that destroy stored data: `DROP TABLE`, `DROP SCHEMA`,
//! `DROP DATABASE`, `ALTER TABLE … DROP [COLUMN]`, `TRUNCATE`, and `DELETE`
//! without `WHERE`. The scan is lexical and conservative: comments and quoted
//! text are skipped, dollar-quoted bodies (`DO $$ … $$`, functions) are
//! scanned as code because a `DO` block runs at migration time. It reads only
//! the migrations compiled into this binary (or a test's own source), never
//! outside input, and errs towards "destructive": a false alarm costs an
//! operator a flag, a miss could cost data. A full SQL parser is not used
//! because none reads both dialects' DDL here (`DO` blocks, policies, SQLite
//! triggers) and a parse failure would leave the backstop blind.

/// The marker a destructive migration carries on its first line.
pub const MARKER: &str = "-- stockade:destructive";

/// Why `sql` is destructive, or `None` when it only adds.
pub fn reason(sql: &str) -> Option<String> {
    if marked(sql) {
        return Some(format!("marked `{MARKER}`"));
    }
    scan(sql)
}

/// Whether `sql` carries the marker on its first line.
pub fn marked(sql: &str) -> bool {
    let first = sql.lines().map(str::trim).find(|l| !l.is_empty());
    first.is_some_and(|l| l.starts_with(MARKER))
}

/// The first statement of `sql` that destroys stored data (the backstop).
pub fn scan(sql: &str) -> Option<String> {
    statements(sql).iter().find_map(|s| statement_reason(s))
}

/// The reason one statement (its upper-cased words) destroys data.
fn statement_reason(words: &[String]) -> Option<String> {
    let is = |i: usize, w: &str| words.get(i).is_some_and(|x| x == w);
    let granting = |upto: usize| {
        words
            .iter()
            .take(upto)
            .any(|w| w == "GRANT" || w == "REVOKE")
    };
    let alter_table = is(0, "ALTER") && is(1, "TABLE");
    for (i, word) in words.iter().enumerate() {
        let next = i.saturating_add(1);
        match word.as_str() {
            "DROP" if ["TABLE", "SCHEMA", "DATABASE"].iter().any(|w| is(next, w)) => {
                return Some(format!("DROP {}", words.get(next)?));
            }
            "DROP"
                if alter_table
                    && !["CONSTRAINT", "DEFAULT", "NOT", "IDENTITY", "EXPRESSION"]
                        .iter()
                        .any(|w| is(next, w)) =>
            {
                return Some("ALTER TABLE … DROP COLUMN".to_owned());
            }
            "TRUNCATE" if !granting(i) => return Some("TRUNCATE".to_owned()),
            "DELETE" if is(next, "FROM") && !words.iter().skip(next).any(|w| w == "WHERE") => {
                return Some("DELETE without WHERE".to_owned());
            }
            _ => {}
        }
    }
    None
}

/// The statements of `sql` (split on `;`), each as its upper-cased words;
/// comments and quoted text dropped, double-quoted identifiers kept quoted
/// (so they never read as keywords).
fn statements(sql: &str) -> Vec<Vec<String>> {
    let mut out = vec![Vec::new()];
    let mut chars = sql.chars().peekable();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut Vec<Vec<String>>| {
        if !word.is_empty()
            && let Some(last) = out.last_mut()
        {
            last.push(std::mem::take(word).to_uppercase());
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '-' if chars.peek() == Some(&'-') => {
                flush(&mut word, &mut out);
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                flush(&mut word, &mut out);
                chars.next();
                let mut star = false;
                for c in chars.by_ref() {
                    if star && c == '/' {
                        break;
                    }
                    star = c == '*';
                }
            }
            '\'' => {
                // A string; `''` inside it ends and restarts one, same effect.
                flush(&mut word, &mut out);
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                }
            }
            '"' => {
                flush(&mut word, &mut out);
                let mut ident = String::from("\"");
                for c in chars.by_ref() {
                    if c == '"' {
                        break;
                    }
                    ident.push(c);
                }
                ident.push('"');
                if let Some(last) = out.last_mut() {
                    last.push(ident);
                }
            }
            ';' => {
                flush(&mut word, &mut out);
                out.push(Vec::new());
            }
            c if c.is_alphanumeric() || c == '_' => word.push(c),
            _ => flush(&mut word, &mut out),
        }
    }
    flush(&mut word, &mut out);
    out.retain(|s| !s.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_on_the_first_line_makes_a_migration_destructive() {
        let sql = "\n-- stockade:destructive drops the legacy table\nCREATE TABLE x (id int);";
        assert!(reason(sql).unwrap().contains("marked"));
        // Further down it is only a comment.
        assert_eq!(
            reason("-- adds x\n-- stockade:destructive\nCREATE TABLE x (id int);"),
            None
        );
    }

    #[test]
    fn statements_that_destroy_data_are_found() {
        for (sql, why) in [
            ("DROP TABLE users;", "DROP TABLE"),
            ("drop table if exists users", "DROP TABLE"),
            ("DROP SCHEMA public CASCADE;", "DROP SCHEMA"),
            ("ALTER TABLE users DROP COLUMN name;", "DROP COLUMN"),
            ("ALTER TABLE users DROP name;", "DROP COLUMN"),
            ("ALTER TABLE users DROP IF EXISTS name;", "DROP COLUMN"),
            ("TRUNCATE sessions;", "TRUNCATE"),
            ("TRUNCATE TABLE sessions, refresh_tokens;", "TRUNCATE"),
            ("DELETE FROM sessions;", "DELETE without WHERE"),
            (
                "delete from sessions -- WHERE in a comment\n;",
                "DELETE without WHERE",
            ),
            (
                "DELETE FROM s WHERE x = 1; DELETE FROM t;",
                "DELETE without WHERE",
            ),
            (
                "DO $$ BEGIN EXECUTE 'x'; DELETE FROM audit_events; END $$;",
                "DELETE without WHERE",
            ),
            ("/* note */ DROP TABLE x", "DROP TABLE"),
        ] {
            let found = reason(sql).unwrap_or_default();
            assert!(found.contains(why), "{sql}: {found:?}");
        }
    }

    #[test]
    fn additive_statements_are_not_destructive() {
        for sql in [
            "CREATE TABLE t (id int PRIMARY KEY, owner uuid REFERENCES u (id) ON DELETE CASCADE);",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON roles TO stockade_app;",
            "REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM stockade_app;",
            "CREATE TRIGGER no_delete BEFORE DELETE ON audit_events BEGIN SELECT RAISE(ABORT, 'x'); END;",
            "DELETE FROM audit_events WHERE tenant_id = $1 AND seq <= $2;",
            "ALTER TABLE t DROP CONSTRAINT t_key;",
            "ALTER TABLE t ALTER COLUMN c DROP DEFAULT, ALTER COLUMN d DROP NOT NULL;",
            "DROP INDEX t_idx; DROP POLICY p ON t; DROP FUNCTION f(); DROP TRIGGER x;",
            "COMMENT ON TABLE t IS 'DROP TABLE t; TRUNCATE t; DELETE FROM t';",
            "SELECT \"DROP\", \"TABLE\" FROM t;",
            "-- DROP TABLE t;\nCREATE INDEX i ON t (c);",
        ] {
            assert_eq!(reason(sql), None, "{sql}");
        }
    }

    /// Every migration this binary carries whose SQL destroys data says so
    /// with the marker (the backstop is for a forgotten marker, which this
    /// test catches before release).
    #[test]
    fn every_embedded_destructive_migration_is_marked() {
        for kind in [
            super::super::BackendKind::Sqlite,
            super::super::BackendKind::Postgres,
        ] {
            for m in super::super::migrate::embedded(kind).iter() {
                if let Some(why) = scan(&m.sql) {
                    assert!(
                        marked(&m.sql),
                        "{kind:?} migration {}_{} does {why} without `{MARKER}` on its first line",
                        m.version,
                        m.description
                    );
                }
            }
        }
    }
}
