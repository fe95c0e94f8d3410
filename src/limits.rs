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
/// Bytes a template render or expression may hold at once (minijinja's `~`, `+` and filters
/// build values without a bound of their own: a loop that doubles a string needs 40
/// instructions to ask for a terabyte). A real render holds a few MB.
pub const TEMPLATE_MEMORY_BYTES: usize = 256 << 20;
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
/// bounds the instructions, [`bounded_memory`] what it holds). Hitting a limit is an error
/// that says which; `what` names the template in the memory limit's message.
pub fn render_bounded(
    what: &str,
    tmpl: &minijinja::Template<'_, '_>,
    ctx: minijinja::Value,
) -> Result<String, minijinja::Error> {
    bounded_memory(what, || render_capped(tmpl, ctx))
}

fn render_capped(
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

// ---------------------------------------------------------------------------------------------
// Memory of a template render

thread_local! {
    /// Net bytes allocated on this thread since the render began (None: not rendering).
    static HELD: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
    static WHAT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Run `f` (a template render or expression) with at most [`TEMPLATE_MEMORY_BYTES`] allocated
/// on this thread at once. Past the limit the process stops with one line naming `what`, exit
/// 1: an allocation cannot fail gracefully inside minijinja, and the template would fail the
/// same way on every document. Work already finished is in the request cache (every record is
/// one unbuffered write). Counted by [`Allocator`], the binary's global allocator; without it
/// (library users, tests of the library) nothing is counted.
pub fn bounded_memory<T>(what: &str, f: impl FnOnce() -> T) -> T {
    WHAT.with(|w| {
        let mut w = w.borrow_mut();
        w.clear();
        w.push_str(what);
    });
    /// Restores the outer state, also when `f` unwinds.
    struct Restore(Option<usize>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = HELD.try_with(|h| h.set(self.0));
        }
    }
    let _restore = Restore(HELD.with(|h| h.replace(Some(0))));
    f()
}

fn charge(bytes: usize) {
    let _ = HELD.try_with(|h| {
        if let Some(held) = h.get() {
            let held = held.saturating_add(bytes);
            if held > TEMPLATE_MEMORY_BYTES {
                h.set(None);
                over_memory();
            }
            h.set(Some(held));
        }
    });
}

fn credit(bytes: usize) {
    let _ = HELD.try_with(|h| {
        if let Some(held) = h.get() {
            h.set(Some(held.saturating_sub(bytes)));
        }
    });
}

#[cold]
fn over_memory() -> ! {
    let what = WHAT.try_with(|w| w.borrow().clone()).unwrap_or_default();
    eprintln!(
        "hermes-eval: error: {what}: a render held more than {} MiB (a template that builds an ever larger value?); stopped",
        TEMPLATE_MEMORY_BYTES >> 20
    );
    std::process::exit(1)
}

/// The system allocator, counting the bytes a template render holds ([`bounded_memory`]).
/// Outside a render the cost is one thread-local read per allocation.
pub struct Allocator;

// SAFETY: every call is forwarded to `System` with the same arguments; the bookkeeping
// allocates nothing while counting (the cells are const-initialised, without destructors) and
// never unwinds.
unsafe impl std::alloc::GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        charge(layout.size());
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        charge(layout.size());
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        credit(layout.size());
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        if new > layout.size() {
            charge(new - layout.size());
        } else {
            credit(layout.size() - new);
        }
        unsafe { std::alloc::System.realloc(ptr, layout, new) }
    }
}
