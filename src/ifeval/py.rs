//! Python `str` and `re` character classes the IFEval reference relies on (CPython 3.11 rules,
//! with this crate's Unicode tables).
use unicode_general_category::{get_general_category, GeneralCategory as G};

pub use crate::py::text::{is_space, lstrip, rstrip, strip};

/// `re`'s `\w` on a `str` pattern: `str.isalnum()` (letters and numbers by general category,
/// not Rust's `Alphabetic`, which also takes combining vowel signs) or `_`.
pub fn is_word(c: char) -> bool {
    c == '_'
        || matches!(
            get_general_category(c),
            G::UppercaseLetter
                | G::LowercaseLetter
                | G::TitlecaseLetter
                | G::ModifierLetter
                | G::OtherLetter
                | G::DecimalNumber
                | G::LetterNumber
                | G::OtherNumber
        )
}

/// `re`'s `\d` on a `str` pattern: decimal digits (`Nd`).
pub fn is_digit(c: char) -> bool {
    get_general_category(c) == G::DecimalNumber
}

fn is_title(c: char) -> bool {
    get_general_category(c) == G::TitlecaseLetter
}

/// `str.isupper()`: at least one cased character and none lower- or title-case.
pub fn isupper(s: &str) -> bool {
    let mut cased = false;
    for c in s.chars() {
        if c.is_lowercase() || is_title(c) {
            return false;
        }
        cased |= c.is_uppercase();
    }
    cased
}

/// `str.islower()`: at least one cased character and none upper- or title-case.
pub fn islower(s: &str) -> bool {
    let mut cased = false;
    for c in s.chars() {
        if c.is_uppercase() || is_title(c) {
            return false;
        }
        cased |= c.is_lowercase();
    }
    cased
}

/// `str.lower()` (full case mapping, final sigma included).
pub fn lower(s: &str) -> String {
    s.to_lowercase()
}

/// `str.split()` with no argument: runs of whitespace separate, empty pieces dropped.
pub fn split_whitespace(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_space).filter(|p| !p.is_empty())
}

/// `\w` of the third-party `regex` module, through which nltk ≥ 3.10 runs every pattern
/// (`nltk.redos`): Unicode's word class (letters, marks, decimal digits, connectors), the same
/// as Rust's `regex`. Stdlib `re` (nltk 3.9) leaves out the marks.
pub fn is_regex_word(c: char) -> bool {
    regex_syntax::is_word_character(c)
}

/// `nltk.tokenize.RegexpTokenizer(r"\w+")` (nltk ≥ 3.10): the number of `\w+` runs.
pub fn count_word_runs(s: &str) -> usize {
    let mut n = 0;
    let mut inside = false;
    for c in s.chars() {
        let w = is_regex_word(c);
        if w && !inside {
            n += 1;
        }
        inside = w;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_predicates_follow_python() {
        assert!(isupper("HELLO, WORLD 1"));
        assert!(!isupper("1234"));
        assert!(!isupper("HELLo"));
        assert!(islower("é à 1"));
        assert!(!islower("ǅ"));
        assert!(!isupper("ǅA"));
    }

    #[test]
    fn word_classes_of_re_and_regex() {
        // Devanagari vowel signs are marks: stdlib re's \w splits words at them, regex's not.
        assert!(!is_word('\u{93f}') && is_regex_word('\u{93f}'));
        assert_eq!(count_word_runs("हिन्दी"), 1);
        assert_eq!(count_word_runs("don't stop-me now_ok 3.5"), 7);
    }
}
