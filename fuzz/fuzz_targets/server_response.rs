//! The server backend's reply parser: a completions reply scored for up to four prompts (their
//! token counts and continuation starts taken from the first bytes).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else { return };
    let n = (n % 4 + 1) as usize;
    if rest.len() < 2 * n {
        return;
    }
    let (shape, reply) = rest.split_at(2 * n);
    let prompts: Vec<(Vec<u32>, usize)> = shape
        .chunks(2)
        .map(|c| ((0..(c[0] % 32) as u32).collect(), c[1] as usize % 33))
        .collect();
    let _ = hermes_eval::model::server::score_reply(&String::from_utf8_lossy(reply), &prompts);
});
