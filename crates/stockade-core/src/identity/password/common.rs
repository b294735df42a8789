//! Whether a password is common, breached or easy to guess: zxcvbn, which
//! ships the common and breached password frequency lists, judged strictly
//! (a score below 3, predictable parts, or one common word or user input
//! covering nearly the whole password). Pure CPU work on the password it is
//! given: it must not look anything up elsewhere, and nothing it returns
//! contains the password.

/// Share of a password's characters one common-password (or user-input)
/// dictionary match must cover for the password to count as "that common
/// password with decorations" (e.g. `Password123!`), in percent.
const COMMON_COVERAGE_PERCENT: usize = 75;

/// Fewer estimated guesses than this is "too guessable" (zxcvbn's score 2 and
/// below ends here).
const WEAK_GUESSES: u64 = 100_000_000;

/// zxcvbn's verdict: a score below 3 ("too guessable", also judged on the
/// parts alone, see [`parts_guesses`]), or one match from the
/// common-password list or from the user's own inputs covering nearly the
/// whole password (`Password123!`, `alice2024!`).
pub(super) fn is_common(password: &str, user_inputs: &[&str]) -> bool {
    if password.is_empty() {
        return true;
    }
    let inputs = expand_user_inputs(user_inputs);
    let input_refs: Vec<&str> = inputs.iter().map(|s| s.as_str()).collect();
    let entropy = zxcvbn::zxcvbn(password, &input_refs);
    if entropy.score() < zxcvbn::Score::Three || parts_guesses(&entropy) < WEAK_GUESSES {
        return true;
    }
    // zxcvbn only looks at the first 100 characters.
    let considered = password.chars().count().min(100);
    entropy.sequence().iter().any(|m| {
        let zxcvbn::matching::patterns::MatchPattern::Dictionary(d) = &m.pattern else {
            return false;
        };
        if !is_guessable_dictionary(d) {
            return false;
        }
        let covered = m.token.chars().count();
        covered.saturating_mul(100) >= considered.saturating_mul(COMMON_COVERAGE_PERCENT)
    })
}

/// zxcvbn adds 10^4 guesses per extra match of its sequence to the estimate
/// (10^8 for three matches), which lifts every three-part password to score 3
/// however predictable its parts (`Summer2024!!`, `Abcdefgh1234`, or a name
/// and a year). So the parts themselves must also be worth [`WEAK_GUESSES`]:
/// the product of their guesses times the number of orderings.
fn parts_guesses(entropy: &zxcvbn::Entropy) -> u64 {
    let sequence = entropy.sequence();
    let orderings =
        (1..=u64::try_from(sequence.len()).unwrap_or(u64::MAX)).fold(1u64, u64::saturating_mul);
    sequence.iter().fold(orderings, |acc, m| {
        acc.saturating_mul(m.guesses.unwrap_or(1).max(1))
    })
}

/// zxcvbn's `DictionaryType` lives in a private module and cannot be named,
/// so the dictionary is recognised by its `Debug` name. The unit tests pin
/// this down (`common_password_dictionary_is_recognised`).
fn is_guessable_dictionary(d: &zxcvbn::matching::patterns::DictionaryPattern) -> bool {
    let name = format!("{:?}", d.dictionary_name);
    name == "Passwords" || name == "UserInputs"
}

/// zxcvbn matches user inputs as whole words; also offer their parts, so that
/// `Alice Smith <alice.smith@acme.io>` yields `alice`, `smith` and `acme`.
fn expand_user_inputs(user_inputs: &[&str]) -> Vec<String> {
    const MAX_INPUTS: usize = 64;
    const MAX_CHARS: usize = 100;
    let mut out: Vec<String> = Vec::new();
    let mut push = |s: &str| {
        let s: String = s.chars().take(MAX_CHARS).collect();
        if s.chars().count() >= 3 && out.len() < MAX_INPUTS && !out.contains(&s) {
            out.push(s);
        }
    };
    for input in user_inputs {
        let lower = input.trim().to_lowercase();
        push(&lower);
        for part in lower.split(|c: char| !c.is_alphanumeric()) {
            push(part);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::{STRONG, codes, secret};
    use super::super::{PasswordPolicy, check};
    use super::*;

    #[test]
    fn common_passwords_are_rejected() {
        let p = PasswordPolicy::default();
        for pw in [
            "Password123",
            "Qwerty12345",
            "Password123!",
            "P@ssw0rd1234",
            "Iloveyou2024",
            "Letmein12345",
            "Abcdefgh1234",
            "Aa1234567890",
            "Summer2024!!",
            "Winter2025??",
            "Monkey123456",
            "Michael19850",
        ] {
            assert_eq!(codes(&p, pw, &[]), ["password.common"], "{pw}");
        }
    }

    #[test]
    fn common_password_dictionary_is_recognised() {
        // Pins the Debug-name lookup of zxcvbn's private DictionaryType.
        let e = zxcvbn::zxcvbn("trustno1", &[]);
        assert!(e.sequence().iter().any(|m| matches!(
            &m.pattern,
            zxcvbn::matching::patterns::MatchPattern::Dictionary(d) if is_guessable_dictionary(d)
        )));
        let e = zxcvbn::zxcvbn("quokkasmith", &["quokkasmith"]);
        assert!(e.sequence().iter().any(|m| matches!(
            &m.pattern,
            zxcvbn::matching::patterns::MatchPattern::Dictionary(d) if is_guessable_dictionary(d)
        )));
    }

    #[test]
    fn passwords_built_from_user_inputs_are_rejected() {
        let p = PasswordPolicy::default();
        let inputs = [
            "zorbulon.quaxley@vintrastic.io",
            "Zorbulon Quaxley",
            "vintrastic-labs",
        ];
        // Accepted without context, rejected with it.
        for pw in ["Zorbulonquaxley1", "Vintrasticlabs2", "Quaxleyzorbulon9"] {
            assert!(codes(&p, pw, &[]).is_empty(), "{pw} without inputs");
            assert_eq!(codes(&p, pw, &inputs), ["password.common"], "{pw}");
        }
        assert!(codes(&p, STRONG, &inputs).is_empty());
    }

    #[test]
    fn strong_passwords_are_accepted() {
        let p = PasswordPolicy::default();
        for pw in [
            STRONG,
            "Tr1cky-Mango-Orbit",
            "xK9#mQ2vL7pZ",
            "Vélo-Chaton-93-Brume",
            "Purple-Monkey-42",
            "Tr0mbone!Salad",
            "Coffee&Cake99",
            "correct horse battery Staple 9",
        ] {
            assert!(
                check(&p, &secret(pw), &["alice@example.com"]).is_ok(),
                "{pw}"
            );
        }
    }
}
