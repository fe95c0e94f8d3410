//! NLTK's Punkt sentence tokenizer (`nltk.tokenize.punkt.PunktSentenceTokenizer.tokenize`, nltk
//! 3.9+), inference only, with the English model's parameters (src/ifeval/punkt_english/, in
//! punkt_tab's file format). Text is handled as a vector of code points so that every index and
//! slice is Python's.
use super::py;
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

const ORTHO_BEG_UC: u32 = 1 << 1;
const ORTHO_MID_UC: u32 = 1 << 2;
const ORTHO_UNK_UC: u32 = 1 << 3;
const ORTHO_BEG_LC: u32 = 1 << 4;
const ORTHO_MID_LC: u32 = 1 << 5;
const ORTHO_UNK_LC: u32 = 1 << 6;
const ORTHO_UC: u32 = ORTHO_BEG_UC | ORTHO_MID_UC | ORTHO_UNK_UC;
const ORTHO_LC: u32 = ORTHO_BEG_LC | ORTHO_MID_LC | ORTHO_UNK_LC;

/// The parameters of a trained Punkt model.
pub struct Params {
    abbrev_types: HashSet<String>,
    collocations: HashSet<(String, String)>,
    sent_starters: HashSet<String>,
    ortho_context: HashMap<String, u32>,
}

impl Params {
    /// Parses punkt_tab's four files (`load_punkt_params`).
    pub fn from_tab(abbrev: &str, colloc: &str, starters: &str, ortho: &str) -> Self {
        // `txt2set`: one entry per line, the final newline removed.
        let lines = |s: &str| -> Vec<String> { s.split_inclusive('\n').map(rm_nl).collect() };
        let pairs = |s: &str| -> Vec<Vec<String>> {
            lines(s)
                .into_iter()
                .map(|l| l.split('\t').map(str::to_string).collect())
                .collect()
        };
        Params {
            abbrev_types: lines(abbrev).into_iter().collect(),
            collocations: pairs(colloc)
                .into_iter()
                .filter(|p| p.len() == 2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect(),
            sent_starters: lines(starters).into_iter().collect(),
            ortho_context: pairs(ortho)
                .into_iter()
                .filter_map(|p| match p.as_slice() {
                    [k, v] => v.parse().ok().map(|v| (k.clone(), v)),
                    _ => None,
                })
                .collect(),
        }
    }

    /// The English model (`PunktTokenizer("english")`).
    pub fn english() -> &'static Params {
        static P: OnceLock<Params> = OnceLock::new();
        P.get_or_init(|| {
            Params::from_tab(
                include_str!("punkt_english/abbrev_types.txt"),
                include_str!("punkt_english/collocations.tab"),
                include_str!("punkt_english/sent_starters.txt"),
                include_str!("punkt_english/ortho_context.tab"),
            )
        })
    }

    fn ortho(&self, typ: &str) -> u32 {
        self.ortho_context.get(typ).copied().unwrap_or(0)
    }
}

fn rm_nl(s: &str) -> String {
    s.strip_suffix('\n').unwrap_or(s).to_string()
}

/// Sentences of `text` (`PunktSentenceTokenizer.tokenize(text)`, boundaries realigned).
pub fn sentences(text: &str) -> Vec<String> {
    let t: Vec<char> = text.chars().collect();
    let p = Params::english();
    spans(&t, p)
        .into_iter()
        .map(|(s, e)| t[s..e].iter().collect())
        .collect()
}

fn spans(t: &[char], p: &Params) -> Vec<(usize, usize)> {
    let slices = slices_from_text(t, p);
    realign_boundaries(t, &slices)
}

fn is_sent_end(c: char) -> bool {
    matches!(c, '.' | '?' | '!')
}

/// `_re_non_word_chars`: characters that cannot appear within words.
fn is_non_word(c: char) -> bool {
    matches!(
        c,
        ')' | '"'
            | ';'
            | '}'
            | ']'
            | '*'
            | ':'
            | '@'
            | '\''
            | '('
            | '{'
            | '['
            | '\u{2018}'
            | '\u{2019}'
            | '\u{201c}'
            | '\u{201d}'
            | '\u{ab}'
            | '\u{bb}'
            | '?'
            | '!'
    )
}

/// A match of `period_context_re`: the sentence-end character's index and, when the lookahead
/// took whitespace and a token, where that token starts and ends.
struct EndContext {
    at: usize,
    after_end: usize,
    next_tok: Option<usize>,
}

/// `period_context_re().finditer(text)`.
fn period_contexts(t: &[char]) -> Vec<EndContext> {
    let mut out = Vec::new();
    for i in 0..t.len() {
        if !is_sent_end(t[i]) {
            continue;
        }
        match t.get(i + 1) {
            Some(&c) if is_non_word(c) => out.push(EndContext {
                at: i,
                after_end: i + 2,
                next_tok: None,
            }),
            Some(&c) if py::is_space(c) => {
                let mut j = i + 1;
                while j < t.len() && py::is_space(t[j]) {
                    j += 1;
                }
                if j < t.len() {
                    let start = j;
                    while j < t.len() && !py::is_space(t[j]) {
                        j += 1;
                    }
                    out.push(EndContext {
                        at: i,
                        after_end: j,
                        next_tok: Some(start),
                    });
                }
            }
            _ => {}
        }
    }
    out
}

/// `_get_last_whitespace_index`: `string.whitespace` only (ASCII), 0 when there is none.
fn last_ascii_ws(t: &[char]) -> usize {
    t.iter()
        .rposition(|c| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c'))
        .unwrap_or(0)
}

/// `_match_potential_end_contexts`: each match with the text from the word before it to the end
/// of its lookahead, overlapping matches dropped as the reference drops them.
fn potential_end_contexts(t: &[char]) -> Vec<(EndContext, String)> {
    let mut out = Vec::new();
    let mut prev_slice = (0usize, 0usize);
    let mut prev: Option<EndContext> = None;
    let ctx = |slice: (usize, usize), m: &EndContext| -> String {
        let mut s: String = t[slice.0..slice.1].iter().collect();
        s.extend(&t[m.at..m.after_end]);
        s
    };
    for m in period_contexts(t) {
        let before = &t[prev_slice.1..m.at];
        let mut idx = last_ascii_ws(before);
        if idx != 0 {
            idx += prev_slice.1 + 1;
        } else {
            idx = prev_slice.0;
        }
        let word = (idx, m.at);
        if let Some(pm) = prev.take() {
            if prev_slice.1 <= word.0 {
                let c = ctx(prev_slice, &pm);
                out.push((pm, c));
            }
        }
        prev = Some(m);
        prev_slice = word;
    }
    if let Some(pm) = prev {
        let c = ctx(prev_slice, &pm);
        out.push((pm, c));
    }
    out
}

fn slices_from_text(t: &[char], p: &Params) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut last_break = 0;
    for (m, context) in potential_end_contexts(t) {
        if text_contains_sentbreak(&context, p) {
            out.push((last_break, m.at + 1));
            last_break = m.next_tok.unwrap_or(m.at + 1);
        }
    }
    let end = t.len() - t.iter().rev().take_while(|c| py::is_space(**c)).count();
    out.push((last_break, end));
    out
}

/// `re_boundary_realignment.match(s)`: closing quotes/brackets (lazily) followed by whitespace,
/// `--` or the end of a line. Returns (length of the match without trailing whitespace, end).
fn boundary_realignment(s: &[char]) -> Option<(usize, usize)> {
    let closing = |c: char| {
        matches!(
            c,
            '"' | '\''
                | ')'
                | ']'
                | '}'
                | '\u{2018}'
                | '\u{2019}'
                | '\u{201c}'
                | '\u{201d}'
                | '\u{ab}'
                | '\u{bb}'
        )
    };
    let mut k = 0;
    while k < s.len() && closing(s[k]) {
        k += 1;
        // Try the alternatives after each closing character (lazy `+?`).
        if k < s.len() && py::is_space(s[k]) {
            let mut e = k;
            while e < s.len() && py::is_space(s[e]) {
                e += 1;
            }
            let kept = e - s[..e]
                .iter()
                .rev()
                .take_while(|c| py::is_space(**c))
                .count();
            return Some((kept, e));
        }
        if s[k..].starts_with(&['-', '-']) || k == s.len() || s[k] == '\n' {
            return Some((k, k));
        }
    }
    None
}

fn realign_boundaries(t: &[char], slices: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut realign = 0;
    for (i, &(s1, e1)) in slices.iter().enumerate() {
        let s1 = s1 + realign;
        let Some(&(s2, e2)) = slices.get(i + 1) else {
            if s1 < e1 {
                out.push((s1, e1));
            }
            continue;
        };
        let second = if s2 < e2 { &t[s2..e2] } else { &[][..] };
        if let Some((kept, end)) = boundary_realignment(second) {
            out.push((s1, s2 + kept));
            realign = end;
        } else {
            realign = 0;
            if s1 < e1 {
                out.push((s1, e1));
            }
        }
    }
    out
}

struct Token {
    tok: Vec<char>,
    typ: String,
    period_final: bool,
    sentbreak: bool,
    abbr: bool,
    ellipsis: bool,
}

impl Token {
    fn new(tok: Vec<char>) -> Self {
        let s: String = tok.iter().collect();
        let lower = py::lower(&s);
        let typ = if is_numeric(&lower.chars().collect::<Vec<_>>()) {
            "##number##".to_string()
        } else {
            lower
        };
        Token {
            period_final: tok.last() == Some(&'.'),
            tok,
            typ,
            sentbreak: false,
            abbr: false,
            ellipsis: false,
        }
    }

    fn type_no_period(&self) -> &str {
        if self.typ.chars().count() > 1 && self.typ.ends_with('.') {
            &self.typ[..self.typ.len() - 1]
        } else {
            &self.typ
        }
    }

    fn type_no_sentperiod(&self) -> &str {
        if self.sentbreak {
            self.type_no_period()
        } else {
            &self.typ
        }
    }

    fn first_upper(&self) -> bool {
        self.tok
            .first()
            .is_some_and(|c| py::isupper(&c.to_string()))
    }

    fn first_lower(&self) -> bool {
        self.tok
            .first()
            .is_some_and(|c| py::islower(&c.to_string()))
    }

    /// `_RE_INITIAL.match`: `[^\W\d]\.$`.
    fn is_initial(&self) -> bool {
        self.tok.len() == 2
            && py::is_regex_word(self.tok[0])
            && !py::is_digit(self.tok[0])
            && self.tok[1] == '.'
    }

    /// `_RE_ELLIPSIS.match`: `\.\.+$`.
    fn is_ellipsis(&self) -> bool {
        self.tok.len() >= 2 && self.tok.iter().all(|&c| c == '.')
    }
}

/// `_RE_NUMERIC`: `^-?[\.,]?\d[\d,\.-]*\.?$` over the whole (lower-cased) token.
fn is_numeric(t: &[char]) -> bool {
    let mut i = 0;
    if t.get(i) == Some(&'-') {
        i += 1;
    }
    if matches!(t.get(i), Some('.') | Some(',')) {
        i += 1;
    }
    if !t.get(i).is_some_and(|&c| py::is_digit(c)) {
        return false;
    }
    i += 1;
    // `[\d,\.-]*\.?$`: the optional final period is inside the class already.
    t[i..]
        .iter()
        .all(|&c| py::is_digit(c) || matches!(c, ',' | '.' | '-'))
}

/// `_re_multi_char_punct` anchored at `i`: `-{2,}` | `\.{2,}` | `(?:\.\s){2,}\.`; the length.
fn multi_char_at(t: &[char], i: usize) -> Option<usize> {
    let run = |c: char| t[i..].iter().take_while(|&&x| x == c).count();
    let dashes = run('-');
    if dashes >= 2 {
        return Some(dashes);
    }
    let dots = run('.');
    if dots >= 2 {
        return Some(dots);
    }
    let mut reps = 0;
    let mut j = i;
    while j + 1 < t.len() && t[j] == '.' && py::is_space(t[j + 1]) {
        reps += 1;
        j += 2;
    }
    // Backtrack until a final period follows.
    while reps >= 2 {
        let end = i + 2 * reps;
        if t.get(end) == Some(&'.') {
            return Some(2 * reps + 1);
        }
        reps -= 1;
    }
    None
}

fn is_word_start(c: char) -> bool {
    !matches!(
        c,
        '(' | '"'
            | '`'
            | '{'
            | '['
            | ':'
            | ';'
            | '&'
            | '#'
            | '*'
            | '@'
            | ')'
            | '}'
            | ']'
            | '-'
            | ','
    )
}

/// `PunktLanguageVars.word_tokenize` (the punkt word regex's `findall`) on one line.
fn word_tokenize(t: &[char]) -> Vec<Vec<char>> {
    let ends_word = |e: usize| -> bool {
        e == t.len()
            || py::is_space(t[e])
            || is_non_word(t[e])
            || multi_char_at(t, e).is_some()
            || (t[e] == ','
                && (e + 1 == t.len()
                    || py::is_space(t[e + 1])
                    || is_non_word(t[e + 1])
                    || multi_char_at(t, e + 1).is_some()))
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < t.len() {
        if py::is_space(t[i]) {
            i += 1;
            continue;
        }
        if let Some(n) = multi_char_at(t, i) {
            out.push(t[i..i + n].to_vec());
            i += n;
            continue;
        }
        if is_word_start(t[i]) {
            let mut e = i + 1;
            while !ends_word(e) {
                e += 1;
            }
            out.push(t[i..e].to_vec());
            i = e;
            continue;
        }
        out.push(vec![t[i]]);
        i += 1;
    }
    out
}

/// `_tokenize_words`: tokens of every non-blank line.
fn tokenize_words(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    for line in text.split('\n') {
        if !py::strip(line).is_empty() {
            let chars: Vec<char> = line.chars().collect();
            out.extend(word_tokenize(&chars).into_iter().map(Token::new));
        }
    }
    out
}

fn first_pass(tok: &mut Token, p: &Params) {
    let s: String = tok.tok.iter().collect();
    if s == "." || s == "?" || s == "!" {
        tok.sentbreak = true;
    } else if tok.is_ellipsis() {
        tok.ellipsis = true;
    } else if tok.period_final && !s.ends_with("..") {
        let stem = py::lower(&s[..s.len() - 1]);
        let last = stem.rsplit('-').next().unwrap_or("");
        if p.abbrev_types.contains(&stem) || p.abbrev_types.contains(last) {
            tok.abbr = true;
        } else {
            tok.sentbreak = true;
        }
    }
}

enum Ortho {
    Yes,
    No,
    Unknown,
}

fn ortho_heuristic(tok: &Token, p: &Params) -> Ortho {
    if tok.tok.len() == 1 && matches!(tok.tok[0], ';' | ':' | ',' | '.' | '!' | '?') {
        return Ortho::No;
    }
    let oc = p.ortho(tok.type_no_sentperiod());
    if tok.first_upper() && oc & ORTHO_LC != 0 && oc & ORTHO_MID_UC == 0 {
        return Ortho::Yes;
    }
    if tok.first_lower() && (oc & ORTHO_UC != 0 || oc & ORTHO_BEG_LC == 0) {
        return Ortho::No;
    }
    Ortho::Unknown
}

/// `_second_pass_annotation(tok1, tok2)`.
fn second_pass(tok1: &mut Token, tok2: &Token, p: &Params) {
    if !tok1.period_final {
        return;
    }
    let typ = tok1.type_no_period().to_string();
    let next_typ = tok2.type_no_sentperiod().to_string();
    let initial = tok1.is_initial();
    if p.collocations.contains(&(typ.clone(), next_typ.clone())) {
        tok1.sentbreak = false;
        tok1.abbr = true;
        return;
    }
    if (tok1.abbr || tok1.ellipsis) && !initial {
        if matches!(ortho_heuristic(tok2, p), Ortho::Yes) {
            tok1.sentbreak = true;
            return;
        }
        if tok2.first_upper() && p.sent_starters.contains(&next_typ) {
            tok1.sentbreak = true;
            return;
        }
    }
    if initial || typ == "##number##" {
        let h = ortho_heuristic(tok2, p);
        if matches!(h, Ortho::No) {
            tok1.sentbreak = false;
            tok1.abbr = true;
            return;
        }
        if matches!(h, Ortho::Unknown)
            && initial
            && tok2.first_upper()
            && p.ortho(&next_typ) & ORTHO_LC == 0
        {
            tok1.sentbreak = false;
            tok1.abbr = true;
        }
    }
}

/// `text_contains_sentbreak`: a token marked as a break that is not the last token.
fn text_contains_sentbreak(text: &str, p: &Params) -> bool {
    let mut toks = tokenize_words(text);
    for t in toks.iter_mut() {
        first_pass(t, p);
    }
    let n = toks.len();
    for i in 0..n {
        if i + 1 < n {
            let (a, b) = toks.split_at_mut(i + 1);
            second_pass(&mut a[i], &b[0], p);
            if a[i].sentbreak {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_nltk_on_its_doc_examples() {
        assert_eq!(sentences("Hello! How are you?"), ["Hello!", "How are you?"]);
        assert_eq!(
            sentences("(Sent1.) Sent2."),
            ["(Sent1.)", "Sent2."],
            "closing bracket realigned onto the first sentence"
        );
        assert_eq!(
            sentences("Mr. Smith went to Washington. He arrived at 5 p.m. yesterday."),
            [
                "Mr. Smith went to Washington.",
                "He arrived at 5 p.m. yesterday."
            ]
        );
        assert_eq!(
            sentences("Very bad acting!!! I promise."),
            ["Very bad acting!!!", "I promise."]
        );
        assert!(sentences("   ").is_empty());
    }

    #[test]
    fn english_model_loads() {
        let p = Params::english();
        assert!(p.abbrev_types.contains("dr"));
        assert!(p.sent_starters.contains("however"));
        assert!(p.ortho_context.len() > 20_000);
    }
}
