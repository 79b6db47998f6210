//! Robustness: the checker must never panic, hang or overflow the stack, whatever
//! bytes it is given. Deeply nested or very long expressions must be refused
//! with E0105 rather than crash; huge files must be checked without trouble;
//! randomly mutated valid files must produce diagnostics, not panics.
#![allow(clippy::unwrap_used)]

use flowc::check::{CheckOutput, FsLoader, MemLoader, check_files, check_text};
use flowc::diag::{Code, Format, RenderOptions, Severity, render};
use proptest::prelude::*;
use std::path::PathBuf;

/// Every valid file shipped with the project, as (path, text).
const VALID: &[(&str, &str)] = &[
    (
        "workflows/fix_failing_test.flow",
        include_str!("../workflows/fix_failing_test.flow"),
    ),
    (
        "workflows/lint_files.flow",
        include_str!("../workflows/lint_files.flow"),
    ),
    (
        "workflows/nightly_deps.flow",
        include_str!("../workflows/nightly_deps.flow"),
    ),
    (
        "workflows/release.flow",
        include_str!("../workflows/release.flow"),
    ),
    (
        "workflows/repo_health.flow",
        include_str!("../workflows/repo_health.flow"),
    ),
    (
        "stdlib/std/policy.flow",
        include_str!("../stdlib/std/policy.flow"),
    ),
    (
        "stdlib/std/verify.flow",
        include_str!("../stdlib/std/verify.flow"),
    ),
];

/// Checks raw bytes as the file `path` through a [`MemLoader`].
fn check_bytes(path: &str, bytes: &[u8]) -> CheckOutput {
    let mut loader = MemLoader::new();
    loader.add(path, bytes.to_vec());
    check_files(&loader, &[PathBuf::from(path)])
}

/// Runs `f` on a thread with the default 2 MiB stack, so that a recursion that
/// is only bounded by a large main-thread stack is still caught.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

fn codes(out: &CheckOutput) -> Vec<Code> {
    out.diagnostics.iter().map(|d| d.code).collect()
}

fn assert_e0105(text: String) {
    let out = on_small_stack(move || check_text("deep.flow", &text));
    assert!(
        out.diagnostics.iter().any(|d| d.code == Code::E0105),
        "expected E0105, got {:?}",
        codes(&out)
    );
    assert!(out.count(Severity::Error) > 0);
}

fn skill_with_accept(expr: &str) -> String {
    format!("skill s() {{\n  step a: run {{ command: \"x\", accept: {expr} == 1 }}\n}}\n")
}

const DEPTH: usize = 10_000;

#[test]
fn valid_files_have_no_errors() {
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
    for (path, _) in VALID {
        let out = check_files(&FsLoader, &[PathBuf::from(path)]);
        assert_eq!(out.count(Severity::Error), 0, "{path}: {:?}", codes(&out));
        assert!(out.unreadable.is_empty(), "{path}: {:?}", out.unreadable);
    }
}

#[test]
fn deeply_nested_parentheses() {
    let expr = format!("{}1{}", "(".repeat(DEPTH), ")".repeat(DEPTH));
    assert_e0105(skill_with_accept(&expr));
}

#[test]
fn deeply_nested_brackets_and_braces() {
    // Lists and records nest through a different path than parentheses.
    let expr = format!("{}1{}", "[".repeat(DEPTH), "]".repeat(DEPTH));
    assert_e0105(skill_with_accept(&expr));
    let unbalanced = format!("{}1", "(".repeat(DEPTH));
    let out = on_small_stack(move || check_text("deep.flow", &skill_with_accept(&unbalanced)));
    assert!(out.count(Severity::Error) > 0);
}

#[test]
fn many_prefix_operators() {
    let expr = format!("{}true", "!".repeat(DEPTH));
    assert_e0105(format!(
        "skill s() {{\n  step a: run {{ command: \"x\", accept: {expr} }}\n}}\n"
    ));
    let neg = format!("{}1", "-".repeat(DEPTH));
    assert_e0105(skill_with_accept(&neg));
}

#[test]
fn long_binary_chain() {
    let expr = vec!["1"; DEPTH].join(" + ");
    assert_e0105(skill_with_accept(&expr));
}

#[test]
fn a_long_flat_chain_is_one_diagnostic() {
    // Each side once, not once every 64 operators (10,000 would give 312).
    for op in [" + ", " && ", " ?? "] {
        let chain = vec!["1"; DEPTH].join(op);
        let out = on_small_stack(move || check_text("flat.flow", &skill_with_accept(&chain)));
        assert_eq!(codes(&out), vec![Code::E0105], "{op}");
        render_all(&out);
    }
}

#[test]
fn huge_file_many_skills() {
    let mut text = String::new();
    for i in 0..5_000 {
        text.push_str(&format!(
            "skill s{i}() {{\n  step a: run {{ command: \"echo {i}\" }}\n  step b: run {{ command: \"echo {{{{ a.stdout }}}}\" }}\n}}\n"
        ));
    }
    let out = on_small_stack(move || check_text("huge.flow", &text));
    assert_eq!(
        out.count(Severity::Error),
        0,
        "{:?}",
        codes(&out).iter().take(5).collect::<Vec<_>>()
    );
}

#[test]
fn huge_comment() {
    let mut text = String::with_capacity(20 * 1024 * 1024 + 64);
    text.push_str("# ");
    while text.len() < 20 * 1024 * 1024 {
        text.push_str("a comment that goes on and on ");
    }
    text.push_str("\nskill s() {\n  step a: run { command: \"x\" }\n}\n");
    let out = on_small_stack(move || check_text("comment.flow", &text));
    assert_eq!(out.count(Severity::Error), 0, "{:?}", codes(&out));
}

#[test]
fn invalid_utf8_is_a_diagnostic() {
    let out = check_bytes(
        "bad.flow",
        b"skill s() {\n  step a: run { command: \"\xff\xfe\" }\n}\n",
    );
    assert!(
        out.diagnostics.iter().any(|d| d.code == Code::E0101),
        "{:?}",
        codes(&out)
    );
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete { at: usize, len: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Duplicate { at: usize, len: usize, to: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Positions are fractions of the text length (in 1/65536ths), resolved later.
    let pos = 0usize..65_536;
    let interesting = prop::sample::select(vec![
        b"{".to_vec(),
        b"}".to_vec(),
        b"(".to_vec(),
        b")".to_vec(),
        b"[".to_vec(),
        b"\"".to_vec(),
        b"\"\"\"".to_vec(),
        b"{{".to_vec(),
        b"}}".to_vec(),
        b"{%".to_vec(),
        b"%}".to_vec(),
        b"\n".to_vec(),
        b"#".to_vec(),
        b":".to_vec(),
        b".".to_vec(),
        b"step x: run { command: \"y\" }".to_vec(),
        b"\xff".to_vec(),
        b"\xe2\x82".to_vec(),
        "é".as_bytes().to_vec(),
    ]);
    prop_oneof![
        (pos.clone(), 1usize..40).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (pos.clone(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (pos.clone(), interesting).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (pos.clone(), 1usize..200, pos).prop_map(|(at, len, to)| Mutation::Duplicate {
            at,
            len,
            to
        }),
    ]
}

fn apply(text: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut out = text.to_vec();
    let resolve = |frac: usize, len: usize| frac * (len + 1) / 65_536;
    for m in mutations {
        match m {
            Mutation::Delete { at, len } => {
                let start = resolve(*at, out.len()).min(out.len());
                let end = (start + len).min(out.len());
                out.drain(start..end);
            }
            Mutation::Insert { at, bytes } => {
                let at = resolve(*at, out.len()).min(out.len());
                out.splice(at..at, bytes.iter().copied());
            }
            Mutation::Duplicate { at, len, to } => {
                let start = resolve(*at, out.len()).min(out.len());
                let end = (start + len).min(out.len());
                let chunk = out[start..end].to_vec();
                let to = resolve(*to, out.len()).min(out.len());
                out.splice(to..to, chunk);
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_bytes_do_not_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = check_bytes("fuzz.flow", &bytes);
    }

    #[test]
    fn arbitrary_text_does_not_panic(text in "[ -~\n\té{}()\\[\\]\"#]{0,512}") {
        let _ = check_text("fuzz.flow", &text);
    }

    #[test]
    fn mutated_valid_files_do_not_panic(
        which in 0..VALID.len(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let (path, text) = VALID[which];
        let mutated = apply(text.as_bytes(), &mutations);
        // Keep the path so relative imports resolve the same way; std imports
        // come from the embedded standard library.
        let _ = check_bytes(path, &mutated);
    }
}

/// Skill `k{i}` calls `k{i+1}`, and with `ring` the last calls the first.
fn skill_chain(n: usize, ring: bool) -> String {
    let mut s = String::new();
    for i in 0..n {
        let body = match (i + 1 < n, ring) {
            (true, _) => format!("call k{} {{}}", i + 1),
            (false, true) => "call k0 {}".to_string(),
            (false, false) => "run { command: \"echo\" }".to_string(),
        };
        s.push_str(&format!("skill k{i}() {{\n  step c: {body}\n}}\n"));
    }
    s
}

#[test]
fn a_chain_of_10000_skills_is_checked_on_a_small_stack() {
    let out = on_small_stack(|| check_text("chain.flow", &skill_chain(10_000, false)));
    // Every skill more than `max_depth` (8) calls above the last one.
    assert_eq!(
        out.count(Severity::Error),
        10_000 - 9,
        "{:?}",
        &codes(&out)[..3]
    );
    assert!(codes(&out).iter().all(|c| *c == Code::E0603));
}

#[test]
fn a_ring_of_10000_skills_is_reported_briefly() {
    let out = on_small_stack(|| check_text("ring.flow", &skill_chain(10_000, true)));
    assert!(
        codes(&out).iter().all(|c| *c == Code::E0504),
        "{:?}",
        codes(&out)
    );
    assert_eq!(out.count(Severity::Error), 16);
    let counted = out
        .diagnostics
        .iter()
        .filter_map(|d| d.help.as_deref())
        .filter(|h| h.contains("9984 more calls in this cycle are not reported"))
        .count();
    assert_eq!(counted, 1);
    assert!(out.diagnostics.iter().all(|d| d.message.len() < 300));
}

#[test]
fn a_cycle_through_10000_steps_is_one_short_diagnostic() {
    let mut text = String::from("skill cyc() {\n");
    for i in 0..10_000 {
        let next = (i + 1) % 10_000;
        text.push_str(&format!(
            "  step s{i}: run {{ command: \"echo {{{{ s{next}.stdout }}}}\" }}\n"
        ));
    }
    text.push_str("}\n");
    let out = on_small_stack(move || check_text("cycle.flow", &text));
    assert_eq!(codes(&out), vec![Code::E0501]);
    let d = &out.diagnostics[0];
    assert!(d.message.contains("… (9988 more)"), "{}", d.message);
    assert!(
        d.message.len() < 300 && d.labels.len() <= 12,
        "{}",
        d.message
    );
    render_all(&out);
}

/// Renders every diagnostic of `out` in every format (the human renderer is
/// miette, which panics on a column past `u16::MAX` unless its input is clipped).
fn render_all(out: &CheckOutput) {
    let opts = RenderOptions {
        color: false,
        width: 100,
    };
    for d in &out.diagnostics {
        for format in [Format::Human, Format::Json, Format::Github] {
            let text = render(d, &out.sources, format, opts);
            assert!(text.contains(d.code.as_str()), "{text}");
        }
    }
}

/// A line of `n` copies of `pad` (tabs, wide characters, spaces), then an
/// unknown field whose name repeats `name` `m` times.
fn padded_unknown_field(pad: &str, n: usize, name: &str, m: usize) -> String {
    format!(
        "skill s() {{\n{}step a: run {{ command: \"x\", z{}: 1, {}y: 2 }}\n}}\n",
        pad.repeat(n),
        name.repeat(m),
        pad.repeat(n),
    )
}

#[test]
fn diagnostics_past_column_65535_render() {
    // 17,000 tabs are 68,000 display columns: the shape of every fuzz panic.
    let out = check_text("tabs.flow", &padded_unknown_field("\t", 17_000, "b", 1));
    assert!(codes(&out).contains(&Code::E0307), "{:?}", codes(&out));
    render_all(&out);
    // A span wider than 65,535 columns on one line.
    let out = check_text("wide.flow", &padded_unknown_field(" ", 2, "b", 70_000));
    assert!(codes(&out).contains(&Code::E0307), "{:?}", codes(&out));
    render_all(&out);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn long_lines_render_without_panic(
        pad in prop::sample::select(vec!["\t", " ", "é", "漢", "\t漢 "]),
        n in 0usize..40_000,
        name in prop::sample::select(vec!["b", "\t", "漢"]),
        m in 1usize..30_000,
    ) {
        render_all(&check_text("long.flow", &padded_unknown_field(pad, n, name, m)));
    }

    #[test]
    fn mutated_files_render_without_panic(
        which in 0..VALID.len(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let (path, text) = VALID[which];
        let out = check_bytes(path, &apply(text.as_bytes(), &mutations));
        render_all(&out);
    }
}

// Files flowc reads at run time are untrusted too: a `fake` provider's
// answers file, a model's reply, the secret store.
proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn answer_files_never_panic(text in "[ -~\n\t:{}\\[\\]\"-]{0,400}") {
        let yaml = flowc::llm::fake::Script::parse("a.yaml", &text);
        let json = flowc::llm::fake::Script::parse("a.json", &text);
        for script in [yaml, json].into_iter().flatten() {
            for i in 0..script.answers.len() {
                let _ = script.answer(i, "prompt");
            }
            let _ = script.pick("k", "k", 1, &[]);
        }
    }

    #[test]
    fn replies_never_panic(text in "[ -~\n]{0,300}") {
        let _ = flowc::llm::schema::strip_fence(&text);
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
            let _ = flowc::llm::http::parse(flowc::ir::Provider::OpenAi, &v);
            let _ = flowc::llm::http::parse(flowc::ir::Provider::Anthropic, &v);
        }
    }

    #[test]
    fn secret_stores_never_panic(text in "[ -~\n{}\":,]{0,400}") {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.json");
        std::fs::write(&path, &text).unwrap();
        if let Ok(store) = flowc::secrets::Store::open(&path) {
            for name in store.names() {
                let _ = store.get(&name);
            }
        }
    }
}
