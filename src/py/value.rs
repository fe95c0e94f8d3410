//! Python values as the reference scripts see them after `json.loads` / `ast.literal_eval`, with
//! Python `==` semantics (TASKS_SPEC §1.7): `1 == 1.0 == True`, dicts ignore key order, lists
//! compare in order, a tuple never equals a list, `nan != nan`.
//!
//! Also: Python's `json.loads` (NaN/Infinity accepted, last duplicate key wins, strict control
//! characters), a subset of `ast.literal_eval` (strings with prefixes r/u and implicit
//! concatenation, ints incl. hex/octal/binary and `_`, floats, True/False/None, lists, tuples,
//! dicts, unary +/-), `repr()` and `json.dumps()` (default separators, `ensure_ascii=True`).
//!
//! Deviations (documented, rare): integers beyond i128 are rejected; sets, bytes, complex numbers
//! and `...` are rejected by the literal parser (Python would parse them, but no such value can ever
//! equal a JSON-built reference); lone UTF-16 surrogates from `\ud800` escapes become U+FFFD.
use serde::Serialize;

#[derive(Debug, Clone)]
pub enum PyValue {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    List(Vec<PyValue>),
    Tuple(Vec<PyValue>),
    /// Insertion order kept (for repr); equality ignores it.
    Dict(Vec<(PyValue, PyValue)>),
}

impl PartialEq for PyValue {
    fn eq(&self, other: &Self) -> bool {
        py_eq(self, other)
    }
}

impl Serialize for PyValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

fn num(v: &PyValue) -> Option<f64> {
    match v {
        PyValue::Bool(b) => Some(*b as i32 as f64),
        PyValue::Int(i) => Some(*i as f64),
        PyValue::Float(f) => Some(*f),
        _ => None,
    }
}

/// Python `a == b`.
pub fn py_eq(a: &PyValue, b: &PyValue) -> bool {
    use PyValue::*;
    match (a, b) {
        (None, None) => true,
        (Str(x), Str(y)) => x == y,
        (List(x), List(y)) | (Tuple(x), Tuple(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| py_eq(p, q))
        }
        (Dict(x), Dict(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.iter().any(|(k2, v2)| py_eq(k, k2) && py_eq(v, v2)))
        }
        (Int(x), Int(y)) => x == y,
        (Bool(x), Bool(y)) => x == y,
        (Int(x), Bool(y)) | (Bool(y), Int(x)) => *x == *y as i128,
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => {
                // int vs float: exact comparison like Python (within f64 for i128 beyond 2^53).
                x == y
            }
            _ => false,
        },
    }
}

impl PyValue {
    /// Python truthiness.
    pub fn truthy(&self) -> bool {
        match self {
            PyValue::None => false,
            PyValue::Bool(b) => *b,
            PyValue::Int(i) => *i != 0,
            PyValue::Float(f) => *f != 0.0,
            PyValue::Str(s) => !s.is_empty(),
            PyValue::List(v) | PyValue::Tuple(v) => !v.is_empty(),
            PyValue::Dict(d) => !d.is_empty(),
        }
    }
    /// Python `type(x).__name__`.
    pub fn type_name(&self) -> &'static str {
        match self {
            PyValue::None => "NoneType",
            PyValue::Bool(_) => "bool",
            PyValue::Int(_) => "int",
            PyValue::Float(_) => "float",
            PyValue::Str(_) => "str",
            PyValue::List(_) => "list",
            PyValue::Tuple(_) => "tuple",
            PyValue::Dict(_) => "dict",
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            PyValue::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_dict(&self) -> Option<&[(PyValue, PyValue)]> {
        match self {
            PyValue::Dict(d) => Some(d),
            _ => None,
        }
    }
    /// `d.get(key)` for a str key (Python dict lookup; last equal key wins like a real dict).
    pub fn get(&self, key: &str) -> Option<&PyValue> {
        self.as_dict()?
            .iter()
            .rev()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }
    /// From a JSON value (serde_json keeps object order with `preserve_order`).
    pub fn from_json(v: &serde_json::Value) -> PyValue {
        use serde_json::Value as J;
        match v {
            J::Null => PyValue::None,
            J::Bool(b) => PyValue::Bool(*b),
            J::Number(n) => {
                if let Some(i) = n.as_i64() {
                    PyValue::Int(i as i128)
                } else if let Some(u) = n.as_u64() {
                    PyValue::Int(u as i128)
                } else {
                    PyValue::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            J::String(s) => PyValue::Str(s.clone()),
            J::Array(a) => PyValue::List(a.iter().map(PyValue::from_json).collect()),
            J::Object(o) => PyValue::Dict(
                o.iter()
                    .map(|(k, v)| (PyValue::Str(k.clone()), PyValue::from_json(v)))
                    .collect(),
            ),
        }
    }
    /// To JSON for logs and schema validation: tuples become arrays, non-finite floats and
    /// non-str keys are written as strings (Python's `json.dumps` would write NaN / coerce keys).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            PyValue::None => J::Null,
            PyValue::Bool(b) => J::Bool(*b),
            PyValue::Int(i) => {
                if let Ok(x) = i64::try_from(*i) {
                    J::from(x)
                } else if let Ok(x) = u64::try_from(*i) {
                    J::from(x)
                } else {
                    J::from(*i as f64)
                }
            }
            PyValue::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or_else(|| J::String(py_float_repr(*f))),
            PyValue::Str(s) => J::String(s.clone()),
            PyValue::List(v) | PyValue::Tuple(v) => {
                J::Array(v.iter().map(|x| x.to_json()).collect())
            }
            PyValue::Dict(d) => {
                let mut m = serde_json::Map::new();
                for (k, v) in d {
                    let key = match k {
                        PyValue::Str(s) => s.clone(),
                        other => py_repr(other),
                    };
                    m.insert(key, v.to_json());
                }
                J::Object(m)
            }
        }
    }
    /// Whether the value contains a tuple or a non-finite float anywhere (no exact JSON image).
    pub fn has_non_json(&self) -> bool {
        match self {
            PyValue::Tuple(_) => true,
            PyValue::Float(f) => !f.is_finite(),
            PyValue::List(v) => v.iter().any(|x| x.has_non_json()),
            PyValue::Dict(d) => d
                .iter()
                .any(|(k, v)| k.as_str().is_none() || v.has_non_json()),
            _ => false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// repr / json.dumps

/// Python `repr(float)`: shortest round-trip digits, scientific when exp < -4 or >= 16.
pub fn py_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let e = format!("{:e}", f); // e.g. "-1.5e-7", "1e16"
    let (mant, exp) = e.split_once('e').unwrap();
    let exp: i32 = exp.parse().unwrap();
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if neg { "-" } else { "" };
    if !(-4..16).contains(&exp) {
        let m = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits
        };
        let es = if exp < 0 {
            format!("-{:02}", -exp)
        } else {
            format!("+{:02}", exp)
        };
        format!("{sign}{m}e{es}")
    } else if exp < 0 {
        format!("{sign}0.{}{}", "0".repeat((-exp - 1) as usize), digits)
    } else {
        let point = exp as usize + 1;
        if digits.len() <= point {
            format!("{sign}{}{}.0", digits, "0".repeat(point - digits.len()))
        } else {
            format!("{sign}{}.{}", &digits[..point], &digits[point..])
        }
    }
}

/// Python `repr(str)`.
pub fn py_str_repr(s: &str) -> String {
    let q = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(q);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if (0x80..0xa0).contains(&(c as u32)) || c == '\u{ad}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(q);
    out
}

/// Python `repr(value)` (dicts in insertion order).
pub fn py_repr(v: &PyValue) -> String {
    match v {
        PyValue::None => "None".into(),
        PyValue::Bool(b) => if *b { "True" } else { "False" }.into(),
        PyValue::Int(i) => i.to_string(),
        PyValue::Float(f) => py_float_repr(*f),
        PyValue::Str(s) => py_str_repr(s),
        PyValue::List(x) => format!("[{}]", x.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        PyValue::Tuple(x) if x.len() == 1 => format!("({},)", py_repr(&x[0])),
        PyValue::Tuple(x) => format!("({})", x.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        PyValue::Dict(d) => format!(
            "{{{}}}",
            d.iter()
                .map(|(k, v)| format!("{}: {}", py_repr(k), py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn json_str(s: &str, out: &mut String, ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ascii && (c as u32) > 0x7e) => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{:04x}", u));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python `json.dumps(value)` with default settings (`", "`, `": "`, `ensure_ascii=True`).
pub fn py_json_dumps(v: &PyValue) -> String {
    let mut out = String::new();
    dumps_into(v, &mut out, true);
    out
}

/// `json.dumps(value, ensure_ascii=False)` (transformers' `tojson` in chat templates).
pub fn py_json_dumps_unicode(v: &PyValue) -> String {
    let mut out = String::new();
    dumps_into(v, &mut out, false);
    out
}

fn dumps_into(v: &PyValue, out: &mut String, ascii: bool) {
    match v {
        PyValue::None => out.push_str("null"),
        PyValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        PyValue::Int(i) => out.push_str(&i.to_string()),
        PyValue::Float(f) if f.is_nan() => out.push_str("NaN"),
        PyValue::Float(f) if f.is_infinite() => {
            out.push_str(if *f > 0.0 { "Infinity" } else { "-Infinity" })
        }
        PyValue::Float(f) => out.push_str(&py_float_repr(*f)),
        PyValue::Str(s) => json_str(s, out, ascii),
        PyValue::List(x) | PyValue::Tuple(x) => {
            out.push('[');
            for (i, e) in x.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                dumps_into(e, out, ascii);
            }
            out.push(']');
        }
        PyValue::Dict(d) => {
            out.push('{');
            for (i, (k, e)) in d.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                match k {
                    PyValue::Str(s) => json_str(s, out, ascii),
                    other => json_str(&py_repr(other), out, ascii),
                }
                out.push_str(": ");
                dumps_into(e, out, ascii);
            }
            out.push('}');
        }
    }
}

/// `json.dumps` of a serde value (key order as stored).
pub fn json_dumps(v: &serde_json::Value) -> String {
    py_json_dumps(&PyValue::from_json(v))
}

// ---------------------------------------------------------------------------------------------
// json.loads

struct P<'a> {
    s: &'a [u8],
    src: &'a str,
    i: usize,
}

impl<'a> P<'a> {
    fn new(src: &'a str) -> Self {
        P {
            s: src.as_bytes(),
            src,
            i: 0,
        }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn err<T>(&self, msg: &str) -> Result<T, String> {
        Err(format!(
            "{msg} at char {}",
            self.src[..self.i.min(self.src.len())].chars().count()
        ))
    }
    fn starts(&self, lit: &str) -> bool {
        self.s[self.i..].starts_with(lit.as_bytes())
    }
}

/// Python `json.loads(text)`.
pub fn json_loads(text: &str) -> Result<PyValue, String> {
    let mut p = P::new(text);
    json_ws(&mut p);
    let v = json_value(&mut p, 0)?;
    json_ws(&mut p);
    if p.i != p.s.len() {
        return p.err("Extra data");
    }
    Ok(v)
}

fn json_ws(p: &mut P) {
    while matches!(p.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        p.i += 1;
    }
}

fn json_value(p: &mut P, depth: usize) -> Result<PyValue, String> {
    if depth > 500 {
        return p.err("too deeply nested");
    }
    match p.peek() {
        Some(b'{') => {
            p.i += 1;
            json_ws(p);
            let mut d: Vec<(PyValue, PyValue)> = Vec::new();
            if p.peek() == Some(b'}') {
                p.i += 1;
                return Ok(PyValue::Dict(d));
            }
            loop {
                json_ws(p);
                if p.peek() != Some(b'"') {
                    return p.err("Expecting property name enclosed in double quotes");
                }
                let k = json_string(p)?;
                json_ws(p);
                if p.peek() != Some(b':') {
                    return p.err("Expecting ':' delimiter");
                }
                p.i += 1;
                json_ws(p);
                let v = json_value(p, depth + 1)?;
                if let Some(slot) = d.iter_mut().find(|(kk, _)| kk.as_str() == Some(&k)) {
                    slot.1 = v; // last duplicate wins, first position kept (Python dict)
                } else {
                    d.push((PyValue::Str(k), v));
                }
                json_ws(p);
                match p.peek() {
                    Some(b',') => p.i += 1,
                    Some(b'}') => {
                        p.i += 1;
                        return Ok(PyValue::Dict(d));
                    }
                    _ => return p.err("Expecting ',' delimiter"),
                }
            }
        }
        Some(b'[') => {
            p.i += 1;
            json_ws(p);
            let mut v = Vec::new();
            if p.peek() == Some(b']') {
                p.i += 1;
                return Ok(PyValue::List(v));
            }
            loop {
                json_ws(p);
                v.push(json_value(p, depth + 1)?);
                json_ws(p);
                match p.peek() {
                    Some(b',') => p.i += 1,
                    Some(b']') => {
                        p.i += 1;
                        return Ok(PyValue::List(v));
                    }
                    _ => return p.err("Expecting ',' delimiter"),
                }
            }
        }
        Some(b'"') => Ok(PyValue::Str(json_string(p)?)),
        _ => {
            for (lit, v) in [
                ("null", PyValue::None),
                ("true", PyValue::Bool(true)),
                ("false", PyValue::Bool(false)),
                ("NaN", PyValue::Float(f64::NAN)),
                ("Infinity", PyValue::Float(f64::INFINITY)),
                ("-Infinity", PyValue::Float(f64::NEG_INFINITY)),
            ] {
                if p.starts(lit) {
                    p.i += lit.len();
                    return Ok(v);
                }
            }
            json_number(p)
        }
    }
}

fn json_number(p: &mut P) -> Result<PyValue, String> {
    let start = p.i;
    if p.peek() == Some(b'-') {
        p.i += 1;
    }
    match p.peek() {
        Some(b'0') => p.i += 1,
        Some(b'1'..=b'9') => {
            while matches!(p.peek(), Some(b'0'..=b'9')) {
                p.i += 1;
            }
        }
        _ => {
            p.i = start;
            return p.err("Expecting value");
        }
    }
    let mut is_float = false;
    if p.peek() == Some(b'.') && matches!(p.s.get(p.i + 1), Some(b'0'..=b'9')) {
        is_float = true;
        p.i += 1;
        while matches!(p.peek(), Some(b'0'..=b'9')) {
            p.i += 1;
        }
    }
    if matches!(p.peek(), Some(b'e' | b'E')) {
        let save = p.i;
        p.i += 1;
        if matches!(p.peek(), Some(b'+' | b'-')) {
            p.i += 1;
        }
        if matches!(p.peek(), Some(b'0'..=b'9')) {
            is_float = true;
            while matches!(p.peek(), Some(b'0'..=b'9')) {
                p.i += 1;
            }
        } else {
            p.i = save;
        }
    }
    let t = &p.src[start..p.i];
    if is_float {
        t.parse::<f64>()
            .map(PyValue::Float)
            .map_err(|e| e.to_string())
    } else {
        t.parse::<i128>()
            .map(PyValue::Int)
            .map_err(|_| format!("integer out of range: {t}"))
    }
}

fn hex4(p: &P, at: usize) -> Option<u32> {
    let h = p.src.get(at..at + 4)?;
    if !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(h, 16).ok()
}

fn json_string(p: &mut P) -> Result<String, String> {
    p.i += 1; // opening quote
    let mut out = String::new();
    loop {
        let Some(c) = p.src[p.i..].chars().next() else {
            return p.err("Unterminated string");
        };
        match c {
            '"' => {
                p.i += 1;
                return Ok(out);
            }
            '\\' => {
                let Some(e) = p.peek_at(1) else {
                    return p.err("Unterminated string");
                };
                p.i += 2;
                match e {
                    b'"' => out.push('"'),
                    b'\\' => out.push('\\'),
                    b'/' => out.push('/'),
                    b'b' => out.push('\u{8}'),
                    b'f' => out.push('\u{c}'),
                    b'n' => out.push('\n'),
                    b'r' => out.push('\r'),
                    b't' => out.push('\t'),
                    b'u' => {
                        let Some(u) = hex4(p, p.i) else {
                            return p.err("Invalid \\uXXXX escape");
                        };
                        p.i += 4;
                        if (0xd800..0xdc00).contains(&u) && p.starts("\\u") {
                            if let Some(lo) =
                                hex4(p, p.i + 2).filter(|l| (0xdc00..0xe000).contains(l))
                            {
                                p.i += 6;
                                let cp = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
                                out.push(char::from_u32(cp).unwrap_or('\u{fffd}'));
                                continue;
                            }
                        }
                        out.push(char::from_u32(u).unwrap_or('\u{fffd}'));
                    }
                    _ => {
                        p.i -= 1;
                        return p.err("Invalid \\escape");
                    }
                }
            }
            c if (c as u32) < 0x20 => return p.err("Invalid control character"),
            c => {
                out.push(c);
                p.i += c.len_utf8();
            }
        }
    }
}

impl P<'_> {
    fn peek_at(&self, k: usize) -> Option<u8> {
        self.s.get(self.i + k).copied()
    }
}

// ---------------------------------------------------------------------------------------------
// ast.literal_eval

/// Python `ast.literal_eval(text)` for the literal forms listed in the module doc.
pub fn literal_eval(text: &str) -> Result<PyValue, String> {
    let t = text.trim_start_matches([' ', '\t']);
    let mut p = P::new(t);
    let v = lit_value(&mut p, 0)?;
    lit_ws(&mut p, 0);
    // trailing newlines / comments are allowed at the end of an eval input
    while p.i < p.s.len() {
        match p.peek() {
            Some(b'\n' | b'\r' | b' ' | b'\t' | b'\x0c') => p.i += 1,
            Some(b'#') => {
                while !matches!(p.peek(), None | Some(b'\n')) {
                    p.i += 1
                }
            }
            _ => return p.err("invalid syntax"),
        }
    }
    Ok(v)
}

/// Skip blanks; inside brackets (depth > 0) newlines and comments too; `\`-newline anywhere.
fn lit_ws(p: &mut P, depth: usize) {
    loop {
        match p.peek() {
            Some(b' ' | b'\t' | b'\x0c') => p.i += 1,
            Some(b'\\') if matches!(p.peek_at(1), Some(b'\n')) => p.i += 2,
            Some(b'\n' | b'\r') if depth > 0 => p.i += 1,
            Some(b'#') if depth > 0 => {
                while !matches!(p.peek(), None | Some(b'\n')) {
                    p.i += 1
                }
            }
            _ => return,
        }
    }
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn lit_value(p: &mut P, depth: usize) -> Result<PyValue, String> {
    if depth > 200 {
        return p.err("too deeply nested");
    }
    lit_ws(p, depth);
    let Some(c) = p.peek() else {
        return p.err("unexpected EOF");
    };
    match c {
        b'[' => {
            p.i += 1;
            let items = lit_seq(p, depth + 1, b']')?;
            Ok(PyValue::List(items.0))
        }
        b'(' => {
            p.i += 1;
            let (items, trailing_comma) = lit_seq(p, depth + 1, b')')?;
            if items.len() == 1 && !trailing_comma {
                Ok(items.into_iter().next().unwrap()) // parenthesised expression
            } else {
                Ok(PyValue::Tuple(items))
            }
        }
        b'{' => {
            p.i += 1;
            let mut d: Vec<(PyValue, PyValue)> = Vec::new();
            loop {
                lit_ws(p, depth + 1);
                if p.peek() == Some(b'}') {
                    p.i += 1;
                    return Ok(PyValue::Dict(d));
                }
                let k = lit_value(p, depth + 1)?;
                lit_ws(p, depth + 1);
                if p.peek() != Some(b':') {
                    return p.err("set literals are not supported / expected ':'");
                }
                p.i += 1;
                let v = lit_value(p, depth + 1)?;
                if matches!(k, PyValue::List(_) | PyValue::Dict(_)) {
                    return p.err("unhashable dict key");
                }
                if let Some(slot) = d.iter_mut().find(|(kk, _)| py_eq(kk, &k)) {
                    slot.1 = v;
                } else {
                    d.push((k, v));
                }
                lit_ws(p, depth + 1);
                match p.peek() {
                    Some(b',') => p.i += 1,
                    Some(b'}') => {}
                    _ => return p.err("expected ',' or '}'"),
                }
            }
        }
        b'-' | b'+' => {
            p.i += 1;
            lit_ws(p, depth);
            let neg = c == b'-';
            match lit_value(p, depth + 1)? {
                // literal_eval only allows unary ops on numbers (not bool in 3.x? it allows
                // any Constant number; True is a Constant of type bool -> rejected since 3.8? keep)
                PyValue::Int(i) => Ok(PyValue::Int(if neg { -i } else { i })),
                PyValue::Float(f) => Ok(PyValue::Float(if neg { -f } else { f })),
                _ => p.err("malformed node or string"),
            }
        }
        b'0'..=b'9' | b'.' => lit_number(p),
        b'"' | b'\'' => lit_strings(p, depth),
        _ if c.is_ascii_alphabetic() || c == b'_' => {
            let start = p.i;
            while p.peek().is_some_and(is_ident) {
                p.i += 1;
            }
            let word = &p.src[start..p.i];
            match word {
                "True" => Ok(PyValue::Bool(true)),
                "False" => Ok(PyValue::Bool(false)),
                "None" => Ok(PyValue::None),
                w if matches!(p.peek(), Some(b'"' | b'\''))
                    && ["r", "u", "R", "U"].contains(&w) =>
                {
                    p.i = start;
                    lit_strings(p, depth)
                }
                _ => p.err("malformed node or string"),
            }
        }
        _ => p.err("invalid syntax"),
    }
}

fn lit_seq(p: &mut P, depth: usize, close: u8) -> Result<(Vec<PyValue>, bool), String> {
    let mut v = Vec::new();
    let mut trailing = false;
    loop {
        lit_ws(p, depth);
        if p.peek() == Some(close) {
            p.i += 1;
            return Ok((v, trailing));
        }
        v.push(lit_value(p, depth)?);
        trailing = false;
        lit_ws(p, depth);
        match p.peek() {
            Some(b',') => {
                p.i += 1;
                trailing = true;
            }
            Some(c) if c == close => {}
            _ => return p.err("invalid syntax in sequence"),
        }
    }
}

fn lit_number(p: &mut P) -> Result<PyValue, String> {
    let start = p.i;
    while p.peek().is_some_and(|b| is_ident(b) || b == b'.')
        || (matches!(p.peek(), Some(b'+' | b'-'))
            && matches!(p.s.get(p.i.wrapping_sub(1)), Some(b'e' | b'E'))
            && !p.src[start..p.i].starts_with("0x")
            && !p.src[start..p.i].starts_with("0X"))
    {
        p.i += 1;
    }
    let raw = &p.src[start..p.i];
    if raw.ends_with('_') || raw.contains("__") {
        return p.err("invalid decimal literal");
    }
    let t: String = raw.chars().filter(|c| *c != '_').collect();
    let lower = t.to_ascii_lowercase();
    if lower.ends_with('j') {
        return p.err("complex literals are not supported");
    }
    for (pre, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(d) = lower.strip_prefix(pre) {
            return i128::from_str_radix(d, radix)
                .map(PyValue::Int)
                .map_err(|e| e.to_string());
        }
    }
    if lower.contains(['.', 'e']) {
        if lower == "." {
            return p.err("invalid syntax");
        }
        return lower
            .parse::<f64>()
            .map(PyValue::Float)
            .map_err(|e| format!("{e}: {raw}"));
    }
    if lower.len() > 1 && lower.starts_with('0') && lower.bytes().any(|b| b != b'0') {
        return p.err("leading zeros in decimal integer literals are not permitted");
    }
    lower
        .parse::<i128>()
        .map(PyValue::Int)
        .map_err(|e| format!("{e}: {raw}"))
}

/// One or more adjacent string literals (implicit concatenation).
fn lit_strings(p: &mut P, depth: usize) -> Result<PyValue, String> {
    let mut out = String::new();
    let mut any = false;
    loop {
        lit_ws(p, depth);
        let save = p.i;
        let mut raw = false;
        while let Some(b) = p.peek() {
            match b {
                b'r' | b'R' => raw = true,
                b'u' | b'U' => {}
                b'b' | b'B' => return p.err("bytes literals are not supported"),
                b'f' | b'F' => return p.err("f-strings are not literals"),
                _ => break,
            }
            p.i += 1;
        }
        let Some(q @ (b'"' | b'\'')) = p.peek() else {
            p.i = save;
            break;
        };
        let triple = p.peek_at(1) == Some(q) && p.peek_at(2) == Some(q);
        p.i += if triple { 3 } else { 1 };
        loop {
            let Some(c) = p.src[p.i..].chars().next() else {
                return p.err("unterminated string literal");
            };
            if c as u32 == q as u32 {
                if !triple {
                    p.i += 1;
                    break;
                }
                if p.peek_at(1) == Some(q) && p.peek_at(2) == Some(q) {
                    p.i += 3;
                    break;
                }
            }
            if c == '\n' && !triple {
                return p.err("unterminated string literal");
            }
            if c == '\\' {
                let Some(e) = p.src[p.i + 1..].chars().next() else {
                    return p.err("unterminated string literal");
                };
                if raw {
                    out.push('\\');
                    out.push(e);
                    p.i += 1 + e.len_utf8();
                    continue;
                }
                p.i += 1 + e.len_utf8();
                match e {
                    '\n' => {}
                    '\\' => out.push('\\'),
                    '\'' => out.push('\''),
                    '"' => out.push('"'),
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'v' => out.push('\u{b}'),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let h = p.src.get(p.i..p.i + n).unwrap_or("");
                        if h.len() != n || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                            return p.err("truncated escape");
                        }
                        p.i += n;
                        let cp = u32::from_str_radix(h, 16).unwrap();
                        out.push(char::from_u32(cp).unwrap_or('\u{fffd}'));
                    }
                    '0'..='7' => {
                        let mut v = e.to_digit(8).unwrap();
                        for _ in 0..2 {
                            match p.peek() {
                                Some(d @ b'0'..=b'7') => {
                                    v = v * 8 + (d - b'0') as u32;
                                    p.i += 1;
                                }
                                _ => break,
                            }
                        }
                        out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                    }
                    other => {
                        out.push('\\');
                        out.push(other);
                    }
                }
                continue;
            }
            out.push(c);
            p.i += c.len_utf8();
        }
        any = true;
    }
    if !any {
        return p.err("invalid syntax");
    }
    Ok(PyValue::Str(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equality_rules() {
        let a = json_loads(r#"{"a": 1, "b": [1, 2.0, true]}"#).unwrap();
        let b = json_loads(r#"{"b": [1.0, 2, 1], "a": true}"#).unwrap();
        assert_eq!(a, b);
        assert_ne!(json_loads("[1, 2]").unwrap(), json_loads("[2, 1]").unwrap());
        assert_ne!(
            literal_eval("(1, 2)").unwrap(),
            json_loads("[1, 2]").unwrap()
        );
        assert_ne!(json_loads("NaN").unwrap(), json_loads("NaN").unwrap());
        assert_ne!(json_loads(r#""1""#).unwrap(), json_loads("1").unwrap());
        assert_eq!(
            json_loads(r#"{"a": 1, "a": 2}"#).unwrap(),
            json_loads(r#"{"a": 2}"#).unwrap()
        );
    }

    #[test]
    fn json_loads_rules() {
        assert!(json_loads("[1, 2,]").is_err());
        assert!(json_loads("{'a': 1}").is_err());
        assert!(json_loads("\"a\nb\"").is_err());
        assert!(json_loads("01").is_err());
        assert!(json_loads(" {\"a\": -Infinity} \n").is_ok());
        assert_eq!(
            json_loads(r#""\ud83d\ude00""#).unwrap(),
            PyValue::Str("😀".into())
        );
    }

    #[test]
    fn literal_eval_rules() {
        let v = literal_eval(
            "{'name': 'f', 'arguments': {'x': True, 'y': None, 'z': (1,), 's': \"it's\"}}",
        )
        .unwrap();
        assert_eq!(v.get("name").unwrap().as_str(), Some("f"));
        let args = v.get("arguments").unwrap();
        assert_eq!(args.get("x"), Some(&PyValue::Bool(true)));
        assert_eq!(args.get("y"), Some(&PyValue::None));
        assert!(matches!(args.get("z"), Some(PyValue::Tuple(t)) if t.len() == 1));
        assert_eq!(args.get("s").unwrap().as_str(), Some("it's"));
        assert_eq!(literal_eval("'a' 'b'").unwrap(), PyValue::Str("ab".into()));
        assert_eq!(literal_eval("-1_000").unwrap(), PyValue::Int(-1000));
        assert_eq!(
            literal_eval("[1,\n 2,]").unwrap(),
            json_loads("[1, 2]").unwrap()
        );
        assert!(literal_eval("{1, 2}").is_err());
        assert!(literal_eval("foo(1)").is_err());
        assert!(literal_eval("1\n2").is_err());
    }

    #[test]
    fn repr_and_dumps() {
        let v = json_loads(
            r#"{"a": "it's", "b": [1.0, 1e16, 1e-05, 0.0001, null, false], "c": "é\n"}"#,
        )
        .unwrap();
        assert_eq!(
            py_repr(&v),
            r#"{'a': "it's", 'b': [1.0, 1e+16, 1e-05, 0.0001, None, False], 'c': 'é\n'}"#
        );
        assert_eq!(
            py_json_dumps(&v),
            r#"{"a": "it's", "b": [1.0, 1e+16, 1e-05, 0.0001, null, false], "c": "\u00e9\n"}"#
        );
        assert_eq!(py_float_repr(123456.789), "123456.789");
        assert_eq!(py_float_repr(-2.5e-7), "-2.5e-07");
    }
}
