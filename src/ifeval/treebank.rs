//! `nltk.word_tokenize` (English): Punkt sentences, each split by `NLTKWordTokenizer`, the
//! improved Treebank tokenizer (nltk/tokenize/destructive.py, nltk 3.9+). Its substitutions
//! use lookaround, so they run on fancy-regex; `\w`/`\b` there follow Rust's Unicode word class
//! (which also counts combining marks) rather than Python's.
use fancy_regex::Regex;
use std::sync::OnceLock;

struct Rules {
    starting_quotes: Vec<(Regex, &'static str)>,
    punctuation: Vec<(Regex, &'static str)>,
    parens: (Regex, &'static str),
    double_dashes: (Regex, &'static str),
    ending_quotes: Vec<(Regex, &'static str)>,
    contractions: Vec<Regex>,
}

fn re(p: &str) -> Regex {
    // The patterns are constants of this file: a failure here is a bug caught by every test.
    Regex::new(p).expect("NLTKWordTokenizer pattern")
}

fn rules() -> &'static Rules {
    static R: OnceLock<Rules> = OnceLock::new();
    R.get_or_init(|| Rules {
        starting_quotes: vec![
            (re("([«“‘„]|[`]+)"), " $1 "),
            (re(r#"^""#), "``"),
            (re("(``)"), " $1 "),
            (re(r#"([ \(\[{<])("|'{2})"#), "$1 `` "),
            (
                re(r"(?i)(?<!\w)(')(?!(?:re|ve|ll|m|t|s|d|n)\b)(?=\w)"),
                "$1 ",
            ),
        ],
        punctuation: vec![
            // `*+` (possessive) in the reference; greedy gives the same matches here because the
            // class run can only be followed by whitespace and the end.
            (re(r#"([^\.])(\.)([\]\)}>"'»”’ ]*)\s*$"#), "$1 $2 $3 "),
            (re(r"([:,])([^\d])"), " $1 $2"),
            (re(r"([:,])$"), " $1 "),
            (re(r"\.{2,}"), " $0 "),
            (re(r"[;@#$%&]"), " $0 "),
            (re(r"[\u2012-\u2015]"), " $0 "),
            (re(r#"([^\.])(\.)([\]\)}>"']*)\s*$"#), "$1 $2$3 "),
            (re(r"[?!]"), " $0 "),
            (re(r"([^'])' "), "$1 ' "),
            (re(r"[*]"), " $0 "),
        ],
        parens: (re(r"[\]\[\(\)\{\}<>]"), " $0 "),
        double_dashes: (re("--"), " -- "),
        ending_quotes: vec![
            (re("([»”’])"), " $1 "),
            (re("''"), " '' "),
            (re("\""), " '' "),
            (re(r"\s+"), " "),
            (re(r"([^' ])('[sS]|'[mM]|'[dD]|') "), "$1 $2 "),
            (re(r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) "), "$1 $2 "),
        ],
        contractions: [
            r"(?i)\b(can)(not)\b",
            r"(?i)\b(d)('ye)\b",
            r"(?i)\b(gim)(me)\b",
            r"(?i)\b(gon)(na)\b",
            r"(?i)\b(got)(ta)\b",
            r"(?i)\b(lem)(me)\b",
            r"(?i)\b(more)('n)\b",
            r"(?i)\b(wan)(na)(?=\s)",
            r"(?i) ('t)(is)\b",
            r"(?i) ('t)(was)\b",
        ]
        .iter()
        .map(|p| re(p))
        .collect(),
    })
}

fn sub(r: &Regex, rep: &str, text: String) -> String {
    // A backtracking limit hit leaves the text as it was (the reference would have matched).
    match r.try_replacen(&text, 0, rep) {
        Ok(s) => s.into_owned(),
        Err(_) => text,
    }
}

/// `NLTKWordTokenizer().tokenize(sentence)`.
pub fn tokenize_sentence(sentence: &str) -> Vec<String> {
    let r = rules();
    let mut text = sentence.to_string();
    for (re, rep) in &r.starting_quotes {
        text = sub(re, rep, text);
    }
    for (re, rep) in &r.punctuation {
        text = sub(re, rep, text);
    }
    text = sub(&r.parens.0, r.parens.1, text);
    text = sub(&r.double_dashes.0, r.double_dashes.1, text);
    text = format!(" {text} ");
    for (re, rep) in &r.ending_quotes {
        text = sub(re, rep, text);
    }
    for re in &r.contractions {
        text = sub(re, " $1 $2 ", text);
    }
    super::py::split_whitespace(&text)
        .map(str::to_string)
        .collect()
}

/// `nltk.word_tokenize(text)`.
pub fn word_tokenize(text: &str) -> Vec<String> {
    super::punkt::sentences(text)
        .iter()
        .flat_map(|s| tokenize_sentence(s))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nltk_doc_example() {
        let s = "Good muffins cost $3.88 (roughly 3,36 euros)\nin New York.  Please buy me\ntwo of them.\nThanks.";
        assert_eq!(
            tokenize_sentence(s),
            [
                "Good", "muffins", "cost", "$", "3.88", "(", "roughly", "3,36", "euros", ")", "in",
                "New", "York.", "Please", "buy", "me", "two", "of", "them.", "Thanks", "."
            ]
        );
        assert_eq!(
            word_tokenize("I CAN'T GO. THEY'RE LATE"),
            ["I", "CA", "N'T", "GO", ".", "THEY", "'RE", "LATE"]
        );
    }
}
