#!/usr/bin/env python3
"""Write a corpus of hostile non-model inputs for tests/hostile_input.rs (issue 13).

usage: scripts/hostile-inputs.py OUT_DIR

Python standard library only. OUT_DIR gets task directories whose templates loop or blow up,
chat templates that loop, a dataset mirror with JSON schemas that are cyclic, 10,000 levels deep
or carry a huge enum, replayed completions with 300,000 nested tags or brackets, saved runs
whose samples or results hold NaN, and manifest.json: one case per line of the test, each

    {"class", "case", "args": [...], "exit": "error" | 0, "expect": "<text of the error line>",
     "sample_reason": "<reason of every sample>" (exit 0 only)}

In args, {model} is the test GGUF, {hub} the dataset mirror, {dir} OUT_DIR and {out} a fresh
output directory; the test fills them in. The empty-parquet case needs a parquet writer, so the
test writes {dir}/mirror-empty itself (see tests/hostile_input.rs).
"""
import json
import os
import sys

ARC = """name = "arc_easy"
version = 0
dataset = {{ path = "allenai/ai2_arc", config = "ARC-Easy", split = "test" }}
columns = ["question", "choices", "answerKey"]
context = {context}
choices = "choices.text"
gold = '{{"A": 0, "B": 1, "C": 2, "D": 3, "E": 4, "1": 0, "2": 1, "3": 2, "4": 3, "5": 4}}[answerKey]'
metrics = ["acc", "acc_norm"]
"""

SCHEMA_BENCH = "guidance-ai/jsonschemabench/data-jsonl/Github_trivial.jsonl"
SCHEMA_TASK = "jsonschemabench_github_trivial"


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


# 40 instructions that ask for 10 TiB: each pass doubles a string (fuel cannot see it; the
# memory bound of a render stops it).
DOUBLING = ('{% set ns = namespace(x="xxxxxxxxxx") %}{% for i in range(40) %}'
            '{% set ns.x = ns.x ~ ns.x %}{% endfor %}')


def task_dir(out, name, context):
    d = os.path.join(out, "tasks-" + name)
    write(os.path.join(d, "arc_easy.toml"), ARC.format(context=context))
    return d


def run_args(task, model="{model}", data="{hub}", limit="1", extra=()):
    return ["run", "--tasks", task, "--limit", limit, "--model", model,
            "--data-dir", data, "--output", "{out}", *extra]


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    cases = []

    def case(cls, name, args, expect, exit="error", **kw):
        cases.append({"class": cls, "case": name, "args": args, "exit": exit,
                      "expect": expect, **kw})

    # --- task templates that loop or produce unbounded output -----------------------------
    loop = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
    fuel = "exceeded the limit of template instructions per render"
    for name, ctx, expect in [
        ("nested_loops", loop + "Question: {{ question }}", fuel),
        ("recursive_macro", "{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(1) }}",
         "recursion limit"),
        ("huge_output", '{% for i in range(1000) %}{{ "x" * 100000 }}{% endfor %}',
         "output exceeds 16 MiB"),
        ("doubling_string", DOUBLING + "Question: {{ question }}", "a render held more than 256 MiB"),
    ]:
        d = task_dir(out, name, json.dumps(ctx))
        case("task_template_loop", name, run_args("arc_easy", extra=["--tasks-dir", d]), expect)

    # --- chat templates that loop or produce unbounded output -----------------------------
    write(os.path.join(out, "chat-loop.jinja"), loop + "{{ messages[0].content }}")
    write(os.path.join(out, "chat-huge.jinja"),
          '{% for m in range(1000) %}{{ "<|im_start|>" * 1000000 }}{% endfor %}')
    write(os.path.join(out, "chat-recursive.jinja"),
          "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}")
    write(os.path.join(out, "chat-doubling.jinja"), DOUBLING + "{{ messages[0].content }}")
    for name, expect in [("loop", fuel), ("huge", "output exceeds 16 MiB"),
                         ("recursive", "recursion limit"),
                         ("doubling", "chat template: a render held more than 256 MiB")]:
        case("chat_template_loop", name,
             run_args("ifeval", extra=["--chat-template", "{dir}/chat-" + name + ".jinja"]),
             expect)

    # --- CLI arguments that must be refused -------------------------------------------------
    case("threads", "threads_10000", run_args("arc_easy", extra=["--threads", "10000"]),
         "--threads 10000")
    case("threads", "threads_0", run_args("arc_easy", extra=["--threads", "0"]), "--threads 0")
    case("threads", "bench_threads_10000",
         ["bench", "--model", "{model}", "--data-dir", "{hub}", "--task", "arc_easy", "--limit", "1",
          "--threads", "10000", "--json", "{out}/bench.json"], "--threads 10000")
    case("limit_zero", "run_limit_0", run_args("arc_easy", limit="0"), "--limit must be at least 1")
    case("limit_zero", "fc_limit_0",
         ["fc", "--model", "{model}", "--data-dir", "{hub}", "--limit", "0", "--output", "{out}"],
         "--limit must be at least 1")
    case("limit_zero", "bench_limit_0",
         ["bench", "--model", "{model}", "--data-dir", "{hub}", "--task", "arc_easy", "--limit", "0",
          "--json", "{out}/bench.json"], "must be at least 1")
    case("empty_tasks", "tasks_empty", run_args(""), "name what to run")
    case("empty_tasks", "tasks_commas", run_args(",,"), "name what to run")
    case("empty_tasks", "tasks_blank", run_args(" "), "name what to run")
    glob = "*?" * 40 + "X"
    case("tasks_glob", "exponential_glob", run_args(glob), "no such task or suite")
    case("tasks_glob", "exponential_glob_stars", run_args("*" * 60 + "X"), "no such task or suite")
    case("bench_batch_zero", "bench_batch_size_0",
         ["bench", "--model", "{model}", "--data-dir", "{hub}", "--task", "arc_easy", "--limit", "1",
          "--batch-size", "0", "--json", "{out}/bench.json"], "--batch-size")
    case("bench_batch_zero", "run_batch_size_0", run_args("arc_easy", extra=["--batch-size", "0"]),
         "--batch-size must be at least 1")

    # --- an empty split (written by the test: zero-row parquet) ---------------------------
    case("empty_parquet", "zero_rows", run_args("arc_easy", data="{dir}/mirror-empty", limit="2"),
         "the dataset has no documents")

    # --- compare: runs whose samples or results hold NaN ----------------------------------
    ts = "2026-01-01T00-00-00.000000"

    def run_dir(name, samples, acc="0.5"):
        d = os.path.join(out, "runs", name)
        write(os.path.join(d, f"results_{ts}.json"), json.dumps({
            "results": {"arc_easy": {"alias": "arc_easy", "acc,none": acc,
                                     "acc_stderr,none": 0.5}},
            "model_name": name}))
        write(os.path.join(d, f"samples_arc_easy_{ts}.jsonl"),
              "".join(json.dumps(s) + "\n" for s in samples))
        return d

    def sample(i, acc, ll):
        return {"doc_id": i, "acc": acc, "filtered_resps": [[ll, False], [-30.0, False]]}

    good = [sample(0, 1.0, -20.0), sample(1, 0.0, -40.0)]
    run_dir("base", good)
    run_dir("nan_loglik", [sample(0, 1.0, "NaN"), good[1]])
    s = sample(0, 1.0, -20.0)
    del s["acc"]
    s["metrics"] = {"acc": "nan"}
    run_dir("nan_metric", [s, good[1]])
    run_dir("nan_result", good, acc="NaN")
    with open(os.path.join(out, "runs", "bare_nan.jsonl"), "w") as f:
        f.write('{"doc_id": 0, "acc": NaN}\n')
    for name, expect in [("nan_loglik", "log-likelihood of request 0 is NaN"),
                         ("nan_metric", "`acc` is NaN"),
                         ("nan_result", "metric `acc` is NaN")]:
        case("compare_nan", name, ["compare", "{dir}/runs/base", "{dir}/runs/" + name,
                                   "--output", "{out}"], expect, exit_code=2)

    # --- JSON schemas in a dataset: $ref cycles, 10,000 levels, a huge enum -----------------
    # Each is a failure of its sample (invalid schema or a violation), never a crash or hang.
    deep = "{" + '"properties": {"a": {' * 10000 + '"type": "object"' + "}}" * 10000 + "}"
    schemas = [
        ("ref_self", json.dumps({"$ref": "#"}), "invalid_schema|schema_violation|"),
        ("ref_cycle", json.dumps({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}},
                                  "$ref": "#/$defs/a"}), "invalid_schema|schema_violation|"),
        ("nested_10000", deep, "invalid_schema"),
        ("huge_enum", json.dumps({"type": "object", "properties": {"k": {"enum": list(range(200000))}},
                                  "required": ["k"]}), "schema_violation"),
    ]
    rows = [{"source_path": f"hostile/{n}.json", "git_blob": "0" * 40, "json_schema": s}
            for n, s, _ in schemas]
    write(os.path.join(out, "mirror-schema", "datasets", SCHEMA_BENCH),
          "".join(json.dumps(r) + "\n" for r in rows))
    write(os.path.join(out, "replay-schema.jsonl"),
          "".join(json.dumps({"task": SCHEMA_TASK, "doc_id": i, "completion": '{"k": -1}'}) + "\n"
                  for i in range(len(rows))))
    case("dataset_schema", "cyclic_deep_enum",
         ["run", "--tasks", SCHEMA_TASK, "--limit", str(len(rows)), "--model",
          "replay:{dir}/replay-schema.jsonl", "--data-dir", "{dir}/mirror-schema", "--output", "{out}"],
         "", exit=0, sample_reasons=[r for _, _, r in schemas])

    # --- the tool-call parser: 300,000 nested tags or brackets ------------------------------
    n = 300000
    completions = [
        "<tool_call>" + "<a>" * n + "</a>" * n + "</tool_call>",
        "<a>" * n + "<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>" + "</a>" * n,
        "<tool_call>" + "[" * n + "]" * n + "</tool_call>",
        "<tool_call>" + "{\"a\": " * n + "1" + "}" * n + "</tool_call>",
        "<tool_call>" + "(" * n + ")" * n + "</tool_call>",
    ]
    write(os.path.join(out, "replay-nested.jsonl"),
          "".join(json.dumps({"task": "bfcl_simple", "doc_id": i, "completion": c}) + "\n"
                  for i, c in enumerate(completions)))
    case("nested_tool_call", "nested_300000",
         ["run", "--tasks", "bfcl_simple", "--limit", str(len(completions)), "--model",
          "replay:{dir}/replay-nested.jsonl", "--data-dir", "{hub}", "--output", "{out}"],
         "", exit=0)

    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(cases, f, indent=1)
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main()
