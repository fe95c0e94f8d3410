//! A small well-formedness checker and tree builder with the behaviour of Python's
//! `xml.etree.ElementTree.fromstring` (expat) on the inputs the function-calling eval sees
//! (TASKS_SPEC §7.5). Rejected, like expat:
//! - a `<` not starting a tag, comment, CDATA section or processing instruction (`x < 5`, `<3`);
//! - a `&` not starting `&lt; &gt; &amp; &quot; &apos; &#N; &#xH;` (undefined entity);
//! - mismatched end tags (`<a></b>`), unclosed elements at the end, end tags with no open element;
//! - anything after the root element is closed (a `</root>` inside the message → junk after root);
//! - `]]>` in character data; control characters other than tab/newline/carriage return;
//! - malformed tags: bad names, unquoted or duplicate attributes, `<` inside attribute values;
//! - a DOCTYPE (only allowed before the root element, which the wrapper makes impossible).
//!
//! Comments and processing instructions are dropped and the text around them is joined, CDATA
//! content is text: that is what `ElementTree.XMLParser`'s default `TreeBuilder` produces.

#[derive(Debug, Clone, PartialEq)]
pub struct Element {
    pub tag: String,
    /// `None` when no character data precedes the first child (ElementTree's `.text`).
    pub text: Option<String>,
    pub children: Vec<Element>,
}

impl Element {
    /// Pre-order iteration over `self` and all descendants (`Element.iter()`). Iterative: a
    /// completion of 300,000 nested tags must not overflow the stack.
    pub fn iter(&self) -> Vec<&Element> {
        let mut out = Vec::new();
        let mut todo = vec![self];
        while let Some(e) = todo.pop() {
            out.push(e);
            todo.extend(e.children.iter().rev());
        }
        out
    }
}

impl Drop for Element {
    /// Iterative, for the same reason: the default drop recurses once per nesting level.
    fn drop(&mut self) {
        let mut todo = std::mem::take(&mut self.children);
        while let Some(mut e) = todo.pop() {
            todo.append(&mut e.children);
        }
    }
}

fn name_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || c == ':' || (c as u32) >= 0x80
}
fn name_char(c: char) -> bool {
    name_start(c) || c.is_ascii_digit() || c == '-' || c == '.'
}

fn err<T>(src: &str, at: usize, msg: &str) -> Result<T, String> {
    let line = src[..at].matches('\n').count() + 1;
    let col = at - src[..at].rfind('\n').map(|p| p + 1).unwrap_or(0);
    Err(format!("{msg}: line {line}, column {col}"))
}

/// Parse one document with a single root element.
pub fn parse(src: &str) -> Result<Element, String> {
    let b = src.as_bytes();
    let mut i = 0usize;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut text = String::new();
    let mut have_text = false;

    fn flush(stack: &mut [Element], text: &mut String, have_text: &mut bool) {
        if !*have_text {
            return;
        }
        if let Some(top) = stack.last_mut() {
            if top.children.is_empty() {
                top.text.get_or_insert_with(String::new).push_str(text);
            }
            // tail text is not needed by the eval
        }
        text.clear();
        *have_text = false;
    }

    while i < b.len() {
        let c = src[i..].chars().next().unwrap();
        if root.is_some() {
            if c.is_whitespace() && matches!(c, ' ' | '\t' | '\n' | '\r') {
                i += 1;
                continue;
            }
            if src[i..].starts_with("<!--") || src[i..].starts_with("<?") {
                // allowed after the root; fall through to the generic handling below
            } else {
                return err(src, i, "junk after document element");
            }
        }
        match c {
            '<' => {
                let rest = &src[i..];
                if let Some(r) = rest.strip_prefix("<!--") {
                    let Some(end) = r.find("-->") else {
                        return err(src, i, "unclosed token");
                    };
                    if r[..end].contains("--") {
                        return err(src, i, "not well-formed (invalid token)");
                    }
                    i += 4 + end + 3;
                    continue;
                }
                if let Some(r) = rest.strip_prefix("<![CDATA[") {
                    if stack.is_empty() {
                        return err(src, i, "not well-formed (invalid token)");
                    }
                    let Some(end) = r.find("]]>") else {
                        return err(src, i, "unclosed CDATA section");
                    };
                    text.push_str(&r[..end]);
                    have_text = true;
                    i += 9 + end + 3;
                    continue;
                }
                if rest.starts_with("<!") {
                    return err(src, i, "not well-formed (invalid token)");
                }
                if let Some(r) = rest.strip_prefix("<?") {
                    let Some(end) = r.find("?>") else {
                        return err(src, i, "unclosed token");
                    };
                    let target: String = r.chars().take_while(|c| name_char(*c)).collect();
                    if target.is_empty() || target.eq_ignore_ascii_case("xml") {
                        return err(src, i, "XML or text declaration not at start of entity");
                    }
                    i += 2 + end + 2;
                    continue;
                }
                if let Some(r) = rest.strip_prefix("</") {
                    let name: String = r.chars().take_while(|c| name_char(*c)).collect();
                    if name.is_empty() || !name_start(name.chars().next().unwrap()) {
                        return err(src, i, "not well-formed (invalid token)");
                    }
                    let after = &r[name.len()..];
                    let ws = after.len() - after.trim_start_matches([' ', '\t', '\n', '\r']).len();
                    if !after[ws..].starts_with('>') {
                        return err(src, i, "not well-formed (invalid token)");
                    }
                    match stack.last() {
                        Some(top) if top.tag == name => {}
                        _ => return err(src, i, "mismatched tag"),
                    }
                    flush(&mut stack, &mut text, &mut have_text);
                    let el = stack.pop().unwrap();
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => root = Some(el),
                    }
                    i += 2 + name.len() + ws + 1;
                    continue;
                }
                // start tag
                let r = &rest[1..];
                let name: String = r.chars().take_while(|c| name_char(*c)).collect();
                if name.is_empty() || !name_start(name.chars().next().unwrap()) {
                    return err(src, i, "not well-formed (invalid token)");
                }
                let mut j = i + 1 + name.len();
                let mut attrs: Vec<String> = Vec::new();
                let self_closing;
                loop {
                    let ws_start = j;
                    while j < b.len() && matches!(b[j], b' ' | b'\t' | b'\n' | b'\r') {
                        j += 1;
                    }
                    if j >= b.len() {
                        return err(src, i, "unclosed token");
                    }
                    if src[j..].starts_with("/>") {
                        self_closing = true;
                        j += 2;
                        break;
                    }
                    if b[j] == b'>' {
                        self_closing = false;
                        j += 1;
                        break;
                    }
                    if j == ws_start {
                        return err(src, j, "not well-formed (invalid token)");
                    }
                    let an: String = src[j..].chars().take_while(|c| name_char(*c)).collect();
                    if an.is_empty() || !name_start(an.chars().next().unwrap()) {
                        return err(src, j, "not well-formed (invalid token)");
                    }
                    if attrs.contains(&an) {
                        return err(src, j, "duplicate attribute");
                    }
                    j += an.len();
                    while j < b.len() && matches!(b[j], b' ' | b'\t' | b'\n' | b'\r') {
                        j += 1;
                    }
                    if j >= b.len() || b[j] != b'=' {
                        return err(src, j, "not well-formed (invalid token)");
                    }
                    j += 1;
                    while j < b.len() && matches!(b[j], b' ' | b'\t' | b'\n' | b'\r') {
                        j += 1;
                    }
                    let Some(&q @ (b'"' | b'\'')) = b.get(j) else {
                        return err(src, j, "not well-formed (invalid token)");
                    };
                    let Some(end) = src[j + 1..].find(q as char) else {
                        return err(src, j, "unclosed token");
                    };
                    let val = &src[j + 1..j + 1 + end];
                    if val.contains('<') {
                        return err(src, j, "not well-formed (invalid token)");
                    }
                    check_refs(src, j + 1, val)?;
                    attrs.push(an);
                    j += 1 + end + 1;
                }
                if root.is_some() {
                    return err(src, i, "junk after document element");
                }
                flush(&mut stack, &mut text, &mut have_text);
                let el = Element {
                    tag: name,
                    text: None,
                    children: Vec::new(),
                };
                if self_closing {
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => root = Some(el),
                    }
                } else {
                    stack.push(el);
                }
                i = j;
            }
            '&' => {
                if stack.is_empty() {
                    return err(src, i, "not well-formed (invalid token)");
                }
                let (ch, len) = entity(src, i)?;
                text.push_str(&ch);
                have_text = true;
                i += len;
            }
            _ => {
                if stack.is_empty() {
                    if matches!(c, ' ' | '\t' | '\n' | '\r') {
                        i += 1;
                        continue;
                    }
                    return err(src, i, "syntax error");
                }
                if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r')
                    || c == '\u{fffe}'
                    || c == '\u{ffff}'
                {
                    return err(src, i, "not well-formed (invalid token)");
                }
                if src[i..].starts_with("]]>") {
                    return err(src, i, "not well-formed (invalid token)");
                }
                // normalise CR LF / CR to LF as XML does
                if c == '\r' {
                    text.push('\n');
                    if src[i + 1..].starts_with('\n') {
                        i += 1;
                    }
                } else {
                    text.push(c);
                }
                have_text = true;
                i += c.len_utf8();
            }
        }
    }
    if !stack.is_empty() {
        return err(src, src.len(), "no element found");
    }
    root.ok_or_else(|| "no element found: line 1, column 0".to_string())
}

fn check_refs(src: &str, base: usize, val: &str) -> Result<(), String> {
    let mut k = 0;
    while let Some(p) = val[k..].find('&') {
        let (_, len) = entity(src, base + k + p)?;
        k += p + len;
    }
    Ok(())
}

fn entity(src: &str, at: usize) -> Result<(String, usize), String> {
    let rest = &src[at + 1..];
    let Some(semi) = rest.find(';') else {
        return err(src, at, "not well-formed (invalid token)");
    };
    let name = &rest[..semi];
    let s = match name {
        "lt" => "<".to_string(),
        "gt" => ">".to_string(),
        "amp" => "&".to_string(),
        "quot" => "\"".to_string(),
        "apos" => "'".to_string(),
        n if n.starts_with("#x")
            && n.len() > 2
            && n[2..].bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            match u32::from_str_radix(&n[2..], 16)
                .ok()
                .and_then(char::from_u32)
            {
                Some(c) if valid_char(c) => c.to_string(),
                _ => return err(src, at, "reference to invalid character number"),
            }
        }
        n if n.starts_with('#') && n.len() > 1 && n[1..].bytes().all(|b| b.is_ascii_digit()) => {
            match n[1..].parse::<u32>().ok().and_then(char::from_u32) {
                Some(c) if valid_char(c) => c.to_string(),
                _ => return err(src, at, "reference to invalid character number"),
            }
        }
        n if !n.is_empty() && n.chars().all(name_char) && name_start(n.chars().next().unwrap()) => {
            return err(src, at, "undefined entity");
        }
        _ => return err(src, at, "not well-formed (invalid token)"),
    };
    Ok((s, 1 + semi + 1))
}

fn valid_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || ((c as u32) >= 0x20 && c != '\u{fffe}' && c != '\u{ffff}')
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn accepts_and_rejects() {
        let r = parse("<root>hi <tool_call>{\"a\": 1}</tool_call> bye</root>").unwrap();
        assert_eq!(r.text.as_deref(), Some("hi "));
        assert_eq!(r.children[0].text.as_deref(), Some("{\"a\": 1}"));
        assert!(parse("<root>a &amp; b &#65; <!-- c --> d</root>").is_ok());
        for bad in [
            "<root>x < 5</root>",
            "<root>a & b</root>",
            "<root><tool_call>x</tools></root>",
            "<root><tool_call>x</root>",
            "<root><tool_call>x</tool_call></tool_call></root>",
            "<root>a</root></root>",
            "<root>a ]]> b</root>",
            "<root>&nbsp;</root>",
            "<root><a b=c></a></root>",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    /// 300,000 nested elements: parsed, iterated and dropped without recursion (issue 13).
    #[test]
    fn deep_nesting_does_not_overflow_the_stack() {
        let n = 300_000;
        let doc = format!(
            "<root>{}<tool_call>{{}}</tool_call>{}</root>",
            "<a>".repeat(n),
            "</a>".repeat(n)
        );
        let r = parse(&doc).unwrap();
        let all = r.iter();
        assert_eq!(all.len(), n + 2);
        assert_eq!(all[n + 1].tag, "tool_call");
        drop(all);
        drop(r);
        let unclosed = format!("<root>{}</root>", "<a>".repeat(n));
        assert!(parse(&unclosed).is_err());
    }
}
