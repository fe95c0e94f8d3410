//! hermes-eval: a thin `main` that returns an exit code and prints errors as one line of causes.
//! A panic that escapes the library (a bug: input errors are `Err`s) is reported as one
//! "internal error" line asking for a report, with exit code 101, instead of a backtrace dump.
use std::panic;

/// The system allocator, with the template-render memory bound of `limits::bounded_memory`.
#[global_allocator]
static ALLOCATOR: hermes_eval::limits::Allocator = hermes_eval::limits::Allocator;

fn main() {
    panic::set_hook(Box::new(|info| {
        if hermes_eval::limits::parsing_template() {
            // Caught and turned into an error by `limits::no_panic`.
            return;
        }
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let msg = msg.lines().next().unwrap_or_default();
        eprintln!(
            "hermes-eval: internal error: {msg}{at} (a bug; please report it with the command line and input; RUST_BACKTRACE=1 shows where)"
        );
        if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
            eprintln!("{}", std::backtrace::Backtrace::force_capture());
        }
    }));
    let result = panic::catch_unwind(|| {
        if std::env::var_os("HERMES_EVAL_PANIC_SELFTEST").is_some() {
            panic!("self-test panic (HERMES_EVAL_PANIC_SELFTEST)");
        }
        hermes_eval::cli::main()
    });
    let code = match result {
        Err(_) => 101,
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            eprintln!("hermes-eval: error: {e:#}");
            if e.downcast_ref::<hermes_eval::error::Error>()
                .is_some_and(|e| matches!(e, hermes_eval::error::Error::Interrupted))
            {
                130
            } else {
                1
            }
        }
    };
    std::process::exit(code);
}
