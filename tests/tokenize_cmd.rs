//! `hermes-eval tokenize`: the ids the engine scores, one JSON object per input line.
mod common;
use common::*;
use std::io::Write;
use std::process::{Command, Stdio};

#[test]
fn tokenize_prints_the_reference_ids_of_each_line() {
    let cases: Vec<(String, Vec<u32>)> = tokenizer_cases()
        .into_iter()
        .filter(|(t, _)| !t.contains('\n') && !t.contains('\r') && !t.is_empty())
        .take(40)
        .collect();
    let input: String = cases.iter().map(|(t, _)| format!("{t}\n")).collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hermes-eval"))
        .args(["tokenize", "--model", test_gguf().to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), cases.len());
    for (l, (text, ids)) in lines.iter().zip(&cases) {
        assert_eq!(l["text"], text.as_str());
        let got: Vec<u32> = l["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(&got, ids, "{text:?}");
    }
}

#[test]
fn tokenize_reads_a_file_and_names_a_bad_model() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("in.txt");
    std::fs::write(&f, "Hello world\r\n<|im_start|>user\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hermes-eval"))
        .args([
            "tokenize",
            "--model",
            test_gguf().to_str().unwrap(),
            "--file",
        ])
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let v: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        v[0]["text"], "Hello world",
        "the \\r\\n is not part of the line"
    );
    assert_eq!(
        v[1]["ids"][0], 1,
        "<|im_start|> is matched as the special token"
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_hermes-eval"))
        .args(["tokenize", "--model", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no config.json"));
}
