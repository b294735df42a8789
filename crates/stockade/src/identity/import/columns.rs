//! The columns of a user import file and what each cell must hold: the
//! header names `email`, `name`, `password_hash` and optionally `role`, in
//! any order, each once; a cell is checked (a valid address not already in
//! the file, a name, a well-formed bcrypt hash, a role name) and every
//! problem is reported by line and column, never with the cell's content.
//! Reading the file and its limits is `import.rs`.

use std::collections::HashMap;

use secrecy::SecretString;

use super::{DEFAULT_ROLE, ImportError, ImportRow, RowError};
use crate::identity::Email;
use crate::identity::model::validate_name;
use crate::identity::password::is_bcrypt_hash;

/// Where each column sits in a record.
pub(super) struct Columns {
    email: usize,
    name: usize,
    password_hash: usize,
    role: Option<usize>,
}

impl Columns {
    pub(super) fn from_header(header: &csv::StringRecord) -> Result<Self, ImportError> {
        if header.is_empty() || (header.len() == 1 && header.get(0).is_some_and(str::is_empty)) {
            return Err(ImportError::Header(
                "missing; expected email,name,password_hash[,role]".to_owned(),
            ));
        }
        let (mut email, mut name, mut password_hash, mut role) = (None, None, None, None);
        for (i, raw) in header.iter().enumerate() {
            let slot = match raw.trim().to_ascii_lowercase().as_str() {
                "email" => &mut email,
                "name" => &mut name,
                "password_hash" => &mut password_hash,
                "role" => &mut role,
                _ => {
                    return Err(ImportError::Header(format!(
                        "unknown column {}; expected email,name,password_hash[,role]",
                        i.saturating_add(1)
                    )));
                }
            };
            if slot.replace(i).is_some() {
                return Err(ImportError::Header(format!(
                    "column {} repeats an earlier column",
                    i.saturating_add(1)
                )));
            }
        }
        let missing = |c: &str| ImportError::Header(format!("missing column {c}"));
        Ok(Self {
            email: email.ok_or_else(|| missing("email"))?,
            name: name.ok_or_else(|| missing("name"))?,
            password_hash: password_hash.ok_or_else(|| missing("password_hash"))?,
            role,
        })
    }

    /// Validates one record; pushes every problem it has to `errors`.
    pub(super) fn parse_row(
        &self,
        record: &csv::StringRecord,
        line: u64,
        seen: &mut HashMap<String, u64>,
        errors: &mut Vec<RowError>,
    ) -> Option<ImportRow> {
        let mut fail = |message: String| errors.push(RowError { line, message });
        let cell = |i: usize| record.get(i).unwrap_or_default();

        let email = match Email::parse(cell(self.email)) {
            Ok(email) => match seen.get(email.key()) {
                Some(first) => {
                    fail(format!(
                        "email: the same address is already on line {first}"
                    ));
                    None
                }
                None => {
                    seen.insert(email.key().to_owned(), line);
                    Some(email)
                }
            },
            Err(why) => {
                fail(format!("email: not a valid email address: {why}"));
                None
            }
        };

        let name = validate_name(cell(self.name))
            .map_err(|_| {
                fail("name: must be 1 to 200 characters without control characters".to_owned());
            })
            .ok();

        let hash = cell(self.password_hash).trim();
        let password_hash = if is_bcrypt_hash(hash) {
            Some(SecretString::from(hash.to_owned()))
        } else {
            fail(
                "password_hash: not a well-formed bcrypt hash \
                 ($2a$, $2b$ or $2y$, cost 04 to 31, 60 characters)"
                    .to_owned(),
            );
            None
        };

        let role_cell = self.role.map(cell).map(str::trim).unwrap_or_default();
        let role = if role_cell.is_empty() {
            Some(DEFAULT_ROLE.to_owned())
        } else if is_valid_role(role_cell) {
            Some(role_cell.to_owned())
        } else {
            fail("role: must be 1 to 40 characters of a-z, 0-9, _ and -".to_owned());
            None
        };

        Some(ImportRow {
            email: email?,
            name: name?,
            password_hash: password_hash?,
            role: role?,
        })
    }
}

fn is_valid_role(role: &str) -> bool {
    (1..=40).contains(&role.len())
        && role
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::super::tests::{hash, parse, row_errors};
    use super::*;

    #[test]
    fn role_column_is_optional_and_order_is_free() {
        let h = hash();
        let rows = parse(&format!(
            "\u{feff}Password_Hash , Email,name\r\n{h},a@example.com,A\r\n"
        ))
        .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].role, "viewer");
        assert_eq!(rows[0].email.as_str(), "a@example.com");
    }

    #[test]
    fn bad_headers() {
        for file in [
            "",
            "\n",
            "email,name\n",
            "email,name,password\n",
            "email,name,password_hash,role,extra\n",
            "email,name,password_hash,email\n",
            "name,password_hash,role\n",
        ] {
            assert!(
                matches!(parse(file), Err(ImportError::Header(_))),
                "{file:?}: {:?}",
                parse(file)
            );
        }
    }

    #[test]
    fn each_bad_cell() {
        let h = hash();
        let cases = [
            (format!("not-an-email,A,{h}\n"), "email:"),
            (format!("a@example.com,,{h}\n"), "name:"),
            (format!("a@example.com,   ,{h}\n"), "name:"),
            (format!("a@example.com,\"A\u{7}B\",{h}\n"), "name:"),
            (format!("a@example.com,{},{h}\n", "x".repeat(201)), "name:"),
            ("a@example.com,A,not-a-hash\n".to_owned(), "password_hash:"),
            ("a@example.com,A,\n".to_owned(), "password_hash:"),
            (
                format!("a@example.com,A,$2x${}\n", &h[4..]),
                "password_hash:",
            ),
            (
                format!("a@example.com,A,$2b$03${}\n", &h[7..]),
                "password_hash:",
            ),
            (
                format!("a@example.com,A,$2b$32${}\n", &h[7..]),
                "password_hash:",
            ),
            (format!("a@example.com,A,{}\n", &h[..59]), "password_hash:"),
            (format!("a@example.com,A,{}!\n", &h[..59]), "password_hash:"),
            (
                "a@example.com,A,\"$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA\"\n".to_owned(),
                "password_hash:",
            ),
        ];
        for (body, prefix) in cases {
            let errs = row_errors(&format!("email,name,password_hash\n{body}"));
            assert_eq!(errs.len(), 1, "{body}: {errs:?}");
            assert_eq!(errs[0].line, 2, "{body}");
            assert!(errs[0].message.starts_with(prefix), "{body}: {errs:?}");
        }
        for role in ["Admin", "a b", "x".repeat(41).as_str(), "rôle", "a.b"] {
            let errs = row_errors(&format!(
                "email,name,password_hash,role\na@example.com,A,{h},\"{role}\"\n"
            ));
            assert_eq!(errs.len(), 1, "{role}");
            assert!(errs[0].message.starts_with("role:"), "{role}");
        }
        assert_eq!(
            parse(&format!(
                "email,name,password_hash,role\na@example.com,A,{h},{}\n",
                "x".repeat(40)
            ))
            .unwrap()[0]
                .role
                .len(),
            40
        );
    }

    #[test]
    fn duplicate_emails_are_case_insensitive() {
        let h = hash();
        let errs = row_errors(&format!(
            "email,name,password_hash\n\
             a@example.com,A,{h}\n\
             b@example.com,B,{h}\n\
             A@EXAMPLE.COM,A2,{h}\n"
        ));
        assert_eq!(
            errs,
            [RowError {
                line: 4,
                message: "email: the same address is already on line 2".to_owned()
            }]
        );
    }
}
