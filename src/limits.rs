//! Limits that protect the machine from hostile task files, chat templates and datasets
//! (issue 13 item 5). Each is far above what a legitimate input needs, so it never changes a
//! result; past it the input is refused with an error that names the limit.
use std::io;

/// Template instructions one render of a task template (context, continuation, generation,
/// choices/gold/target expressions) may execute. The built-in task templates use < 1,000.
pub const TASK_TEMPLATE_FUEL: u64 = 1_000_000;
/// Template instructions one render of a chat template may execute. A real template with a
/// hundred tools and a long conversation uses < 100,000.
pub const CHAT_TEMPLATE_FUEL: u64 = 20_000_000;
/// Bytes one render of a task or chat template may produce (the longest real prompt is a few
/// hundred KB: a BFCL request with its function list).
pub const TEMPLATE_OUTPUT_BYTES: usize = 16 << 20;
/// Nesting of a JSON schema taken from a dataset (objects and arrays inside each other, `$ref`
/// chains followed). Real schemas nest < 30 levels.
pub const SCHEMA_DEPTH: usize = 128;
/// Values of one `enum` in a dataset's schema or function definition.
pub const SCHEMA_ENUM_VALUES: usize = 10_000;

/// A writer that keeps at most `max` bytes and fails past them.
struct Capped {
    buf: Vec<u8>,
    max: usize,
    over: bool,
}

impl io::Write for Capped {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if self.buf.len() + b.len() > self.max {
            self.over = true;
            return Err(io::Error::other("output limit"));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Render `tmpl` with at most [`TEMPLATE_OUTPUT_BYTES`] of output (the environment's fuel
/// bounds the instructions). Hitting either limit is an error that says which.
pub fn render_bounded(
    tmpl: &minijinja::Template<'_, '_>,
    ctx: minijinja::Value,
) -> Result<String, minijinja::Error> {
    let mut w = Capped {
        buf: Vec::new(),
        max: TEMPLATE_OUTPUT_BYTES,
        over: false,
    };
    let op = minijinja::ErrorKind::InvalidOperation;
    match tmpl.render_captured_to(ctx, &mut w) {
        Ok(_) => String::from_utf8(w.buf)
            .map_err(|e| minijinja::Error::new(op, format!("output is not UTF-8: {e}"))),
        Err(_) if w.over => Err(minijinja::Error::new(
            op,
            format!(
                "output exceeds {} MiB (a template that loops?)",
                TEMPLATE_OUTPUT_BYTES >> 20
            ),
        )),
        Err(e) => Err(out_of_fuel(e)),
    }
}

/// An out-of-fuel error as one that names the limit; others unchanged.
pub fn out_of_fuel(e: minijinja::Error) -> minijinja::Error {
    if e.kind() == minijinja::ErrorKind::OutOfFuel {
        minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            "exceeded the limit of template instructions per render (a template that loops?)",
        )
    } else {
        e
    }
}

thread_local! {
    static PARSING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread is inside [`no_panic`] (the top-level panic hook stays quiet then).
pub fn parsing_template() -> bool {
    PARSING.with(|p| p.get())
}

/// Compile a template or expression, turning a panic inside minijinja's parser into an error
/// (the fuzzer found one: minijinja 2.24's lexer panics with "empty lexer stack" on a stray
/// `}}}`), so a malformed task file or chat template is a one-line error, never a crash.
pub fn no_panic<T>(f: impl FnOnce() -> Result<T, minijinja::Error>) -> Result<T, minijinja::Error> {
    PARSING.with(|p| p.set(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    PARSING.with(|p| p.set(false));
    r.unwrap_or_else(|_| {
        Err(minijinja::Error::new(
            minijinja::ErrorKind::SyntaxError,
            "the template parser failed on this text (unbalanced braces?)",
        ))
    })
}
