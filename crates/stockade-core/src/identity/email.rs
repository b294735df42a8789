//! Email addresses and their canonical form: the one function that decides
//! when two spellings are one address (issue #17 item 9). Pure: it must not
//! look up accounts or send mail, and no other code may compute a key of
//! its own.
//!
//! [`Email::parse`] is used by every path that takes an address (sign-up,
//! sign-in and its lockout, password reset, invitations, users import,
//! platform owners, `users delete --email`), so look-alikes cannot become
//! separate accounts, slip past a lockout or claim someone else's grant:
//!
//! - **Refused** outright: control, space, default-ignorable (zero-width
//!   joiner, soft hyphen, bidi controls, variation selectors, …) and
//!   unassigned or private-use characters — invisible differences.
//! - **Canonical key** (`users.email_key`, the lockout key, the invitation
//!   key): the local part in Unicode *compatibility caseless* form
//!   (NFKC of full case folding: full-width `ａ`, mathematical `𝐚` and `A`
//!   are `a`; `ß` and `SS` are `ss`), `@`, and the domain through UTS #46
//!   to ASCII (`Münich.example` and `xn--mnich-kva.example` are one; a
//!   trailing dot is refused).
//! - **Refused as a look-alike** (Unicode TR39), in the local part and in
//!   each label of the domain's Unicode form: a string that mixes scripts
//!   (Cyrillic `а` in a Latin name), a non-ASCII string whose confusable
//!   skeleton is plain ASCII (dotless `ı`, all-Cyrillic `аlice`), a dot
//!   above on an already dotted letter (`i̇`, from Turkish `İ`) and a
//!   combining mark repeated.
//!
//! ASCII local parts are never refused by the script rules. Deliverability
//! is proven by the verification email, not here.

use caseless::Caseless;
use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::{is_combining_mark, is_public_assigned};
use unicode_security::{GeneralSecurityProfile, MixedScript, general_security_profile};

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmailRefusal {
    #[error("expected one `@` between a local part and a dotted domain")]
    Shape,
    #[error("too long (at most 64 bytes before the `@` and 254 in all)")]
    TooLong,
    #[error("contains a space, control, invisible or unassigned character")]
    Invisible,
    #[error("the domain is not a valid domain name")]
    Domain,
    #[error("mixes characters of different scripts")]
    MixedScript,
    #[error("contains characters that imitate other letters")]
    Confusable,
}

/// An email address as given (compatibility forms folded, case kept) and
/// its canonical key, which makes look-alike spellings one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    display: String,
    key: String,
}

impl Email {
    /// Parses and canonicalises `input` (see the module documentation).
    pub fn parse(input: &str) -> Result<Self, EmailRefusal> {
        let raw = input.trim();
        if raw.chars().any(invisible) {
            return Err(EmailRefusal::Invisible);
        }
        let s: String = raw.nfkc().collect();
        if s.chars().any(invisible) {
            return Err(EmailRefusal::Invisible);
        }
        let (local, domain) = s.split_once('@').ok_or(EmailRefusal::Shape)?;
        if local.is_empty() || domain.contains('@') {
            return Err(EmailRefusal::Shape);
        }
        let ascii_domain = Uts46::new()
            .to_ascii(
                domain.as_bytes(),
                AsciiDenyList::STD3,
                Hyphens::CheckFirstLast,
                DnsLength::Verify,
            )
            .map_err(|_| EmailRefusal::Domain)?
            .into_owned();
        if !ascii_domain.contains('.') {
            return Err(EmailRefusal::Shape);
        }
        let key_local = caseless_form(local);
        look_alike(&key_local)?;
        let (unicode_domain, checked) = Uts46::new().to_unicode(
            ascii_domain.as_bytes(),
            AsciiDenyList::STD3,
            Hyphens::CheckFirstLast,
        );
        checked.map_err(|_| EmailRefusal::Domain)?;
        for label in unicode_domain.split('.') {
            look_alike(label)?;
        }
        let display_domain = if domain.is_ascii() {
            domain.to_owned()
        } else {
            unicode_domain.into_owned()
        };
        let display = format!("{local}@{display_domain}");
        let key = format!("{key_local}@{ascii_domain}");
        if local.len() > 64 || key_local.len() > 64 || display.len() > 254 || key.len() > 254 {
            return Err(EmailRefusal::TooLong);
        }
        Ok(Self { display, key })
    }

    /// The address to write to (compatibility forms folded, case kept).
    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// The canonical key: one per address, whatever its spelling.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// The key an address had before canonical keys (trimmed, lower-cased):
/// stored keys that could not be re-keyed (their address is now refused)
/// keep it, so their owners still sign in with the address they have.
pub fn legacy_key(input: &str) -> String {
    input.trim().to_lowercase()
}

/// The sign-in key of `input`: its canonical key, or the legacy key of an
/// address the rules refuse (which can only match an account that had it
/// before the rules; no new account can).
pub fn sign_in_key(input: &str) -> String {
    Email::parse(input).map_or_else(|_| legacy_key(input), |e| e.key)
}

/// Unicode compatibility caseless form (D146: NFKD ∘ casefold ∘ NFKD ∘
/// casefold ∘ NFD), recomposed as NFKC.
fn caseless_form(s: &str) -> String {
    s.chars()
        .nfd()
        .default_case_fold()
        .nfkd()
        .default_case_fold()
        .nfkc()
        .collect()
}

fn invisible(c: char) -> bool {
    c.is_control()
        || c.is_whitespace()
        || !is_public_assigned(c)
        || crate::text::is_default_ignorable(c)
        || matches!(
            c.identifier_type(),
            Some(
                general_security_profile::IdentifierType::Default_Ignorable
                    | general_security_profile::IdentifierType::Not_Character
            )
        )
}

/// The TR39 look-alike rules for one part of an address.
fn look_alike(part: &str) -> Result<(), EmailRefusal> {
    if part.is_ascii() {
        return Ok(());
    }
    if !part.is_single_script() {
        return Err(EmailRefusal::MixedScript);
    }
    if unicode_security::skeleton(part).all(|c| c.is_ascii()) {
        return Err(EmailRefusal::Confusable);
    }
    let decomposed: Vec<char> = part.nfd().collect();
    for pair in decomposed.windows(2) {
        if let [a, b] = pair
            && ((*b == '\u{307}' && SOFT_DOTTED.contains(a)) || (a == b && is_combining_mark(*a)))
        {
            return Err(EmailRefusal::Confusable);
        }
    }
    Ok(())
}

/// Soft-dotted letters (PropList.txt) that survive NFKC and case folding:
/// a dot above one of them is invisible (TR39 §5.4).
const SOFT_DOTTED: &[char] = &[
    'i', 'j', '\u{12f}', '\u{249}', '\u{268}', '\u{29d}', '\u{3f3}', '\u{456}', '\u{458}',
    '\u{1d96}', '\u{1e2d}', '\u{1ecb}',
];

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> String {
        Email::parse(s).unwrap().key().to_owned()
    }

    #[test]
    fn emails_normalise_case() {
        let e = Email::parse("  Alice@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "Alice@Example.COM");
        assert_eq!(e.key(), "alice@example.com");
        for bad in [
            "",
            "alice",
            "a@b",
            "@example.com",
            "a@@example.com",
            "a b@example.com",
            "a@.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn look_alike_spellings_are_one_key() {
        let alice = "alice@example.com";
        for same in [
            "ALICE@EXAMPLE.COM",
            "ａｌｉｃｅ@example.com",
            "ＡＬＩＣＥ＠ｅｘａｍｐｌｅ．ｃｏｍ",
            "𝐚𝐥𝐢𝐜𝐞@example.com",
            "𝒶𝓁𝒾𝒸ℯ@example.com",
            "alice@EXAMPLE.com",
            "alice@example。com",
        ] {
            assert_eq!(key(same), alice, "{same}");
        }
        assert_eq!(key("STRASSE@example.com"), key("straße@example.com"));
        assert_eq!(key("strasse@example.com"), "strasse@example.com");
        assert_eq!(key("ΣΊΣΥΦΟΣ@example.gr"), key("σίσυφος@example.gr"));
        // IDN domains: Unicode and punycode are one domain.
        assert_eq!(key("bob@Münich.example"), "bob@xn--mnich-kva.example");
        assert_eq!(
            key("bob@xn--mnich-kva.example"),
            "bob@xn--mnich-kva.example"
        );
        assert_eq!(
            Email::parse("bob@xn--mnich-kva.example").unwrap().as_str(),
            "bob@xn--mnich-kva.example"
        );
        assert_eq!(
            Email::parse("bob@Münich.example").unwrap().as_str(),
            "bob@münich.example"
        );
        // Genuine non-Latin addresses are kept.
        assert_eq!(key("Иван@example.com"), "иван@example.com");
        assert_eq!(key("José.García@example.com"), "josé.garcía@example.com");
        assert_eq!(
            key("δοκιμή@παράδειγμα.δοκιμή"),
            key("ΔΟΚΙΜΉ@xn--hxajbheg2az3al.xn--jxalpdlp")
        );
    }

    #[test]
    fn look_alikes_that_cannot_be_one_key_are_refused() {
        for (bad, why) in [
            ("\u{430}lice@example.com", EmailRefusal::MixedScript), // Cyrillic а
            (
                "\u{430}\u{4cf}\u{456}\u{441}\u{435}@example.com",
                EmailRefusal::Confusable,
            ), // all Cyrillic
            ("al\u{131}ce@example.com", EmailRefusal::Confusable),  // dotless ı
            ("AL\u{130}CE@example.com", EmailRefusal::Confusable),  // İ → i̇
            ("ali\u{307}ce@example.com", EmailRefusal::Confusable),
            ("josé\u{301}\u{301}@example.com", EmailRefusal::Confusable),
            ("al\u{200d}ice@example.com", EmailRefusal::Invisible), // zero-width joiner
            ("al\u{200b}ice@example.com", EmailRefusal::Invisible),
            ("al\u{ad}ice@example.com", EmailRefusal::Invisible),
            ("alice\u{fe0f}@example.com", EmailRefusal::Invisible),
            ("al\u{202e}ice@example.com", EmailRefusal::Invisible),
            ("al\u{7}ice@example.com", EmailRefusal::Invisible),
            ("al\u{e000}ice@example.com", EmailRefusal::Invisible),
            ("al\u{3000}ice@example.com", EmailRefusal::Invisible),
            ("alice@ex\u{430}mple.com", EmailRefusal::MixedScript),
            ("alice@xn--exmple-4nf.com", EmailRefusal::MixedScript),
            ("alice@example.com.", EmailRefusal::Domain),
            ("alice@-example.com", EmailRefusal::Domain),
            ("alice@exa_mple.com", EmailRefusal::Domain),
            ("alice@[127.0.0.1]", EmailRefusal::Domain),
            ("alice@xn--zz.com", EmailRefusal::Domain),
        ] {
            assert_eq!(Email::parse(bad), Err(why), "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(65));
        assert_eq!(Email::parse(&long), Err(EmailRefusal::TooLong));
        let long = format!("a@{}.com", "b".repeat(250));
        assert!(Email::parse(&long).is_err());
    }

    proptest::proptest! {
        /// Any input: no panic; an accepted address's key and display parse
        /// again to the same key (the key is a fixed point, so re-keying
        /// twice changes nothing and the key itself signs in).
        #[test]
        fn keys_are_fixed_points(
            local in "\\PC{1,12}",
            label in "[a-zA-Z0-9\u{e0}-\u{ff}\u{3b1}-\u{3c9}\u{430}-\u{44f}\u{ff21}-\u{ff3a}-]{1,12}",
            tld in "[a-zA-Z]{2,4}",
        ) {
            let input = format!("{local}@{label}.{tld}");
            if let Ok(e) = Email::parse(&input) {
                let again = Email::parse(e.key()).map(|k| k.key().to_owned());
                proptest::prop_assert_eq!(again.as_deref(), Ok(e.key()));
                let shown = Email::parse(e.as_str()).map(|k| k.key().to_owned());
                proptest::prop_assert_eq!(shown.as_deref(), Ok(e.key()));
            }
        }
    }

    #[test]
    fn keys_are_stable() {
        for s in [
            "Alice@Example.COM",
            "straße@Münich.example",
            "Иван@example.com",
            "ＡＬＩＣＥ＠ｅｘａｍｐｌｅ．ｃｏｍ",
        ] {
            let k = key(s);
            assert_eq!(key(&k), k, "{s}");
        }
        assert_eq!(sign_in_key("𝐚lice@example.com"), "alice@example.com");
        assert_eq!(
            sign_in_key(" \u{430}lice@Example.com"),
            "\u{430}lice@example.com"
        );
    }
}
