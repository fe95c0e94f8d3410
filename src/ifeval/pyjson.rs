//! Whether Python's `json.loads(s)` (the C scanner, `strict=True`) accepts `s`. It is a
//! recognizer only: it also takes what serde_json refuses (`NaN`, `Infinity`, `-Infinity`,
//! numbers beyond f64, lone surrogate escapes) and refuses control characters inside strings.

const MAX_DEPTH: usize = 10_000;

struct P<'a> {
    s: &'a [u8],
    i: usize,
}

impl P<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }
    fn eat(&mut self, lit: &[u8]) -> bool {
        if self.s[self.i..].starts_with(lit) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }
    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
            self.i += 1;
        }
        self.i - start
    }
    fn value(&mut self, depth: usize) -> bool {
        if depth > MAX_DEPTH || self.i >= self.s.len() {
            return false;
        }
        match self.s[self.i] {
            b'"' => self.string(),
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'n' => self.eat(b"null"),
            b't' => self.eat(b"true"),
            b'f' => self.eat(b"false"),
            b'N' => self.eat(b"NaN"),
            b'I' => self.eat(b"Infinity"),
            b'-' if self.s[self.i..].starts_with(b"-Infinity") => self.eat(b"-Infinity"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => false,
        }
    }
    fn number(&mut self) -> bool {
        self.eat(b"-");
        match self.s.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return false,
        }
        if self.s.get(self.i) == Some(&b'.')
            && self.s.get(self.i + 1).is_some_and(u8::is_ascii_digit)
        {
            self.i += 1;
            self.digits();
        }
        if matches!(self.s.get(self.i), Some(b'e') | Some(b'E')) {
            let save = self.i;
            self.i += 1;
            if matches!(self.s.get(self.i), Some(b'+') | Some(b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                self.i = save;
            }
        }
        true
    }
    fn string(&mut self) -> bool {
        self.i += 1;
        while self.i < self.s.len() {
            match self.s[self.i] {
                b'"' => {
                    self.i += 1;
                    return true;
                }
                b'\\' => {
                    self.i += 1;
                    match self.s.get(self.i) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
                        Some(b'u') => {
                            let hex = self.s.get(self.i + 1..self.i + 5);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return false;
                            }
                            self.i += 5;
                        }
                        _ => return false,
                    }
                }
                c if c < 0x20 => return false,
                _ => self.i += 1,
            }
        }
        false
    }
    fn array(&mut self, depth: usize) -> bool {
        self.i += 1;
        self.ws();
        if self.eat(b"]") {
            return true;
        }
        loop {
            if !self.value(depth + 1) {
                return false;
            }
            self.ws();
            if self.eat(b"]") {
                return true;
            }
            if !self.eat(b",") {
                return false;
            }
            self.ws();
        }
    }
    fn object(&mut self, depth: usize) -> bool {
        self.i += 1;
        self.ws();
        if self.eat(b"}") {
            return true;
        }
        loop {
            if self.s.get(self.i) != Some(&b'"') || !self.string() {
                return false;
            }
            self.ws();
            if !self.eat(b":") {
                return false;
            }
            self.ws();
            if !self.value(depth + 1) {
                return false;
            }
            self.ws();
            if self.eat(b"}") {
                return true;
            }
            if !self.eat(b",") {
                return false;
            }
            self.ws();
        }
    }
}

/// `json.loads(s)` succeeds.
pub fn is_valid(s: &str) -> bool {
    let mut p = P {
        s: s.as_bytes(),
        i: 0,
    };
    p.ws();
    if !p.value(0) {
        return false;
    }
    p.ws();
    p.i == p.s.len()
}

#[cfg(test)]
mod tests {
    use super::is_valid;

    #[test]
    fn python_json_acceptance() {
        for ok in [
            "{}",
            " [1, 2.5e3, -0, \"\\ud800\"] ",
            "NaN",
            "-Infinity",
            "1e400",
            "{\"a\": {\"b\": null}}",
        ] {
            assert!(is_valid(ok), "{ok}");
        }
        for bad in [
            "",
            "{'a': 1}",
            "[1,]",
            "01",
            "1.",
            "\"a\nb\"",
            "{\"a\" 1}",
            "[1] x",
            "\u{feff}{}",
            "nan",
        ] {
            assert!(!is_valid(bad), "{bad}");
        }
    }
}
