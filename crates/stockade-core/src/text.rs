//! Unicode facts shared by every rule that must see through how text looks:
//! canonical email addresses (`identity::email`) and the CSV formula guard
//! (`records::import`). Pure functions over the Unicode data of ICU4X (the
//! same data `url`/`idna` already build in); they must not do I/O or decide
//! a rule themselves (each caller says what to refuse).

/// Whether `c` is a Default_Ignorable_Code_Point (Unicode DerivedCoreProperties):
/// the byte-order mark, zero-width space and joiners, bidi controls, soft
/// hyphen, variation selectors, … — characters a renderer may show as
/// nothing, so text with and without them looks the same.
pub fn is_default_ignorable(c: char) -> bool {
    icu_properties::CodePointSetData::new::<icu_properties::props::DefaultIgnorableCodePoint>()
        .contains(c)
}

/// `s` in Normalization Form KC (compatibility forms such as full-width
/// `＝` or mathematical `𝐚` become `=` and `a`).
pub fn nfkc(s: &str) -> std::borrow::Cow<'_, str> {
    icu_normalizer::ComposingNormalizerBorrowed::new_nfkc().normalize(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_characters_are_default_ignorable_and_letters_are_not() {
        for c in [
            '\u{feff}', '\u{200b}', '\u{200d}', '\u{202e}', '\u{ad}', '\u{fe0f}',
        ] {
            assert!(is_default_ignorable(c), "{:04x}", u32::from(c));
        }
        for c in ['a', '=', ' ', '\u{430}', 'ß'] {
            assert!(!is_default_ignorable(c), "{:04x}", u32::from(c));
        }
    }

    #[test]
    fn compatibility_forms_fold_to_their_plain_letters() {
        assert_eq!(nfkc("＝１＋𝐚"), "=1+a");
        assert_eq!(nfkc("plain"), "plain");
    }
}
