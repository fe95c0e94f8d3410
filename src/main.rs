//! hermes-eval: a thin `main` that returns an exit code and prints errors as one line of causes.
fn main() {
    let code = match hermes_eval::cli::main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hermes-eval: error: {e:#}");
            if e.downcast_ref::<hermes_eval::error::Error>().is_some_and(|e| matches!(e, hermes_eval::error::Error::Interrupted)) {
                130
            } else {
                1
            }
        }
    };
    std::process::exit(code);
}
