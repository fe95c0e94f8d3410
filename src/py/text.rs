//! Python string semantics the reference harness relies on (TASKS_SPEC §1.7). Lengths and slicing
//! are in code points; whitespace is Python's `str.isspace` set.

/// Python `str.isspace` for one character: Rust's Unicode `White_Space` plus U+001C..U+001F.
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python `s.rstrip()`.
pub fn rstrip(s: &str) -> &str {
    s.trim_end_matches(is_space)
}

/// Python `s.lstrip()`.
pub fn lstrip(s: &str) -> &str {
    s.trim_start_matches(is_space)
}

/// Python `s.strip()`.
pub fn strip(s: &str) -> &str {
    lstrip(rstrip(s))
}

/// Python `len(s)`: number of code points.
pub fn len(s: &str) -> usize {
    s.chars().count()
}

/// Python `s.capitalize()`: first character upper-cased (title case where it differs, as
/// CPython uses `Py_UNICODE_TOTITLE`), all the rest lower-cased.
pub fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    let mut out = String::with_capacity(s.len());
    if let Some(first) = chars.next() {
        out.push_str(&title_case(first));
        for c in chars {
            out.extend(c.to_lowercase());
        }
    }
    out
}

fn title_case(c: char) -> String {
    // The few characters whose title case differs from their upper case (digraphs).
    match c {
        'Ǆ' | 'ǅ' | 'ǆ' => "ǅ".into(),
        'Ǉ' | 'ǈ' | 'ǉ' => "ǈ".into(),
        'Ǌ' | 'ǋ' | 'ǌ' => "ǋ".into(),
        'Ǳ' | 'ǲ' | 'ǳ' => "ǲ".into(),
        'ß' => "Ss".into(),
        'ﬀ' => "Ff".into(),
        'ﬁ' => "Fi".into(),
        'ﬂ' => "Fl".into(),
        'ﬃ' => "Ffi".into(),
        'ﬄ' => "Ffl".into(),
        'ﬅ' | 'ﬆ' => "St".into(),
        _ => c.to_uppercase().collect(),
    }
}

/// Python `s.replace(from, to)`: one left-to-right pass over non-overlapping matches.
pub fn replace(s: &str, from: &str, to: &str) -> String {
    if from.is_empty() {
        // Python inserts `to` between every character and at both ends.
        let mut out = String::from(to);
        for c in s.chars() {
            out.push(c);
            out.push_str(to);
        }
        return out;
    }
    s.replace(from, to)
}

/// Python `re.sub(r"\[.*?\]", "", s)`: removes every shortest `[...]` span that contains no
/// newline (`.` does not match `\n`).
pub fn remove_bracketed(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        // The shortest match: the first ']' before any '\n'.
        let close = after.find(']');
        let newline = after.find('\n');
        match close {
            Some(c) if newline.is_none_or(|n| c < n) => {
                out.push_str(&rest[..open]);
                rest = &after[c + 1..];
            }
            _ => {
                // No match starting at this '['; keep it and continue after it.
                out.push_str(&rest[..open + 1]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Python `re.findall(r"[^\.\?\!\;\n]+", s)[0]` (or `None` when there is no match).
pub fn first_sentence_run(s: &str) -> Option<&str> {
    let is_sep = |c: char| matches!(c, '.' | '?' | '!' | ';' | '\n');
    let start = s.find(|c: char| !is_sep(c))?;
    let rest = &s[start..];
    let end = rest.find(is_sep).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// The first `n` code points of `s` (Python `s[:n]`).
pub fn prefix_chars(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// TASKS_SPEC §1.3 step 2: trailing whitespace of the context (Python `rstrip`) moves to the
/// front of the continuation. Returns the new (context, continuation).
pub fn split_trailing_whitespace(context: &str, continuation: &str) -> (String, String) {
    let kept = rstrip(context);
    let moved = &context[kept.len()..];
    (kept.to_string(), format!("{moved}{continuation}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_set_matches_python() {
        for c in [
            ' ', '\n', '\t', '\r', '\x0b', '\x0c', '\x1c', '\x1d', '\x1e', '\x1f', '\u{85}',
            '\u{a0}', '\u{2003}', '\u{3000}',
        ] {
            assert!(is_space(c), "{c:?}");
        }
        for c in ['a', '\u{200b}', '\u{feff}', '_', '\0'] {
            assert!(!is_space(c), "{c:?}");
        }
        assert_eq!(rstrip("ab \x1c\u{a0}\n"), "ab");
        assert_eq!(strip("\x1f a b \t"), "a b");
    }

    #[test]
    fn capitalize_lowercases_the_rest() {
        assert_eq!(
            capitalize("then, the man writes over the snow"),
            "Then, the man writes over the snow"
        );
        assert_eq!(capitalize("a MAN Is"), "A man is");
        assert_eq!(capitalize("ǆemal"), "ǅemal");
        assert_eq!(capitalize(""), "");
        assert_eq!(capitalize("éCOLE"), "École");
    }

    #[test]
    fn replace_is_one_pass() {
        assert_eq!(replace("   ", "  ", " "), "  ");
        assert_eq!(replace("a  b", "  ", " "), "a b");
        assert_eq!(replace("ab", "", "-"), "-a-b-");
    }

    #[test]
    fn bracket_removal_is_non_greedy_and_stops_at_newline() {
        assert_eq!(remove_bracketed("a [x] b [y] c"), "a  b  c");
        assert_eq!(remove_bracketed("a [x\n] b [y]"), "a [x\n] b ");
        assert_eq!(remove_bracketed("[[a]]"), "]");
        assert_eq!(remove_bracketed("no brackets ["), "no brackets [");
    }

    #[test]
    fn first_run_skips_leading_separators_keeps_space() {
        assert_eq!(first_sentence_run(" hexagon."), Some(" hexagon"));
        assert_eq!(first_sentence_run("..\n? circle; x"), Some(" circle"));
        assert_eq!(first_sentence_run(".?!;\n"), None);
        assert_eq!(first_sentence_run(""), None);
    }

    #[test]
    fn trailing_whitespace_moves_to_continuation() {
        assert_eq!(
            split_trailing_whitespace("\nA: ", "x"),
            ("\nA:".to_string(), " x".to_string())
        );
        assert_eq!(
            split_trailing_whitespace("Q\n\u{a0}", "y"),
            ("Q".to_string(), "\n\u{a0}y".to_string())
        );
        assert_eq!(
            split_trailing_whitespace("Q", " y"),
            ("Q".to_string(), " y".to_string())
        );
        assert_eq!(len("héllo"), 5);
        assert_eq!(prefix_chars("héllo", 2), "hé");
    }
}
