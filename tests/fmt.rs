//! `flowc fmt`: every shipped and fixture file that checks keeps its compiled IR
//! and is stable under a second format; awkward comments are snapshotted.

#![allow(clippy::unwrap_used)]

use flowc::check::{FsLoader, Loader, check_files, normalize};
use flowc::fmt::format_source;
use proptest::prelude::*;
use std::path::{Path, PathBuf};

/// The file system, with one file's text replaced.
struct Overlay {
    path: PathBuf,
    text: String,
}

impl Loader for Overlay {
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        if normalize(path) == normalize(&self.path) {
            Ok(self.text.clone().into_bytes())
        } else {
            FsLoader.read(path)
        }
    }
}

fn flow_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            flow_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "flow") {
            out.push(path);
        }
    }
}

/// Spans, the whitespace inside an expression's source text, and a step's
/// `fingerprint` (its source text as written, comments included) are layout:
/// everything else in the IR's debug form is meaning.
fn stable(program: &flowc::ir::Program) -> String {
    let debug = format!("{program:#?}");
    let spans = regex::Regex::new(r"Span \{\s*start: \d+,\s*end: \d+,?\s*\}").unwrap();
    let debug = spans.replace_all(&debug, "Span");
    let prints = regex::Regex::new(r#"fingerprint: "(?:[^"\\]|\\.)*""#).unwrap();
    let debug = prints.replace_all(&debug, "fingerprint");
    let sources = regex::Regex::new(r#"source: "((?:[^"\\]|\\.)*)""#).unwrap();
    sources
        .replace_all(&debug, |c: &regex::Captures| {
            let squeezed: String = c[1].replace("\\n", " ").split_whitespace().collect();
            // A trailing comma is layout too.
            let squeezed = squeezed
                .replace(",)", ")")
                .replace(",]", "]")
                .replace(",}", "}");
            format!("source: {squeezed:?}")
        })
        .into_owned()
}

fn compile(path: &Path, text: &str) -> Option<String> {
    let overlay = Overlay {
        path: path.to_path_buf(),
        text: text.to_string(),
    };
    let out = check_files(&overlay, &[path.to_path_buf()]);
    let program = out.files.into_iter().next()?.program?;
    Some(stable(&program))
}

/// The first differing line of two texts, with the lines around it.
fn first_difference(a: &str, b: &str) -> Option<String> {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let at = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i))?;
    let from = at.saturating_sub(3);
    let show = |l: &[&str]| l.get(from..(at + 4).min(l.len())).unwrap_or(&[]).join("\n");
    Some(format!("--- before\n{}\n--- after\n{}", show(&a), show(&b)))
}

fn all_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["tests/fixtures", "workflows", "stdlib"] {
        flow_files(&root.join(dir), &mut files);
    }
    files
}

#[test]
fn formatting_keeps_the_ir_and_is_stable() {
    let mut compiled = 0;
    let mut formatted = 0;
    for path in all_files() {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue; // a fixture of invalid UTF-8
        };
        let Ok(once) = format_source(&text) else {
            // Only files with syntax errors are refused.
            let (_, diags) = flowc::syntax::parse_file(&text, 0);
            assert!(!diags.is_empty(), "{} was refused", path.display());
            continue;
        };
        formatted += 1;
        let twice = format_source(&once).unwrap();
        assert_eq!(once, twice, "{} is not stable", path.display());
        if let Some(before) = compile(&path, &text) {
            let after = compile(&path, &once)
                .unwrap_or_else(|| panic!("{} no longer compiles:\n{once}", path.display()));
            if let Some(diff) = first_difference(&before, &after) {
                panic!("{} compiles differently:\n{diff}", path.display());
            }
            compiled += 1;
        }
    }
    assert!(formatted > 60, "formatted only {formatted} files");
    assert!(compiled > 40, "compared only {compiled} programs");
}

/// `text` with every line's indentation removed and every space between
/// tokens tripled, outside strings and comments: layout only.
fn disturb(text: &str) -> String {
    let mut out = String::new();
    let bytes = text.as_bytes();
    let (mut i, mut line_start) = (0, true);
    while i < bytes.len() {
        let rest = &text[i..];
        let skip = if rest.starts_with("\"\"\"") {
            rest.strip_prefix("\"\"\"")
                .and_then(|r| r.find("\"\"\""))
                .map_or(rest.len(), |e| e + 6)
        } else if rest.starts_with('"') {
            let mut j = 1;
            while j < rest.len() && rest.as_bytes()[j] != b'"' {
                j += if rest.as_bytes()[j] == b'\\' { 2 } else { 1 };
            }
            (j + 1).min(rest.len())
        } else if rest.starts_with('#') {
            rest.find('\n').unwrap_or(rest.len())
        } else {
            0
        };
        if skip > 0 {
            out.push_str(&rest[..skip]);
            i += skip;
            line_start = false;
            continue;
        }
        let c = rest.chars().next().unwrap();
        match c {
            ' ' | '\t' if line_start => {}
            ' ' => out.push_str("   "),
            '\n' => {
                out.push('\n');
                line_start = true;
            }
            _ => {
                out.push(c);
                line_start = false;
            }
        }
        i += c.len_utf8();
    }
    out
}

#[test]
fn indentation_and_spacing_do_not_matter() {
    let mut compared = 0;
    for path in all_files() {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(formatted) = format_source(&text) else {
            continue;
        };
        let disturbed = disturb(&formatted);
        let again = format_source(&disturbed)
            .unwrap_or_else(|e| panic!("{}: {e:?}\n{disturbed}", path.display()));
        if let Some(diff) = first_difference(&formatted, &again) {
            panic!(
                "{} formats differently when disturbed:\n{diff}",
                path.display()
            );
        }
        compared += 1;
    }
    assert!(compared > 60);
}

#[test]
fn the_shipped_files_are_formatted() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    flow_files(&root.join("workflows"), &mut files);
    flow_files(&root.join("stdlib"), &mut files);
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let formatted = format_source(&text).unwrap();
        if let Some(diff) = first_difference(&text, &formatted) {
            panic!(
                "{} is not formatted (run `flowc fmt`):\n{diff}",
                path.display()
            );
        }
    }
}

fn fmt(text: &str) -> String {
    let once = format_source(text).unwrap();
    assert_eq!(format_source(&once).unwrap(), once, "not stable");
    once
}

#[test]
fn comments_in_awkward_places() {
    insta::assert_snapshot!(fmt(r#"# the file's header

import "std/verify.flow"   # trailing
import "./lib.flow" as lib
# before a type


type Plan { summary: string,   # why
  files: [path]
  # last in the record
}
model m {provider:"fake",name:"x"}
skill main(a: int = 1,b: string="x")->{ok: bool} {
  # first
  step s: run { command: "echo {{ a }}", accept: exit_code == 0 # inline
  }

  step t: run {
    command: "x"
    accept: s.exit_code == 0 &&   # between operands
      exit_code == 0
    env: { A: "1", # after a
      B: "2" }
  }
  # before return
  return { ok: t.exit_code == 0 }
  # at the end
}
# the very end
"#));
}

/// A comment between the tokens of a header or an expression moves to the
/// next line it can own; none is lost and their order stays.
#[test]
fn comments_between_any_two_tokens() {
    insta::assert_snapshot!(fmt(r#"import "std/verify.flow" as # why
  v
type T { a: "x" | # one
  "y", b: [ # list
  string]? }
policy p: # base
 v.careful { max_attempts: 2 }
skill s( # params
  a: int, # first
  b: T? = null # second
) -> # ret
 T {
  step x: # kind next
  run # body next
  { command: f( # arg
   1, 2) , accept: (a # inner
   ) > 0 }
  step c: call # callee
    s { with { a: 1, # w
    b: null } }
  for i in # iter
   [1, 2] { step y: run { command: "{{ i }}" } }
  loop l { max: 2 # m
   step z: run { command: "z", when: !(true) && -1 < 2 }
  }
  return # r
    x.stdout
}
"#));
}

#[test]
fn long_lines_break_and_literals_stay_as_written() {
    insta::assert_snapshot!(fmt(
        r#"skill main(first_parameter: string, second_parameter: string = "a default value", third: int = 200_000) {
  step s: run { command: "cargo test {{ first_parameter }} -- --nocapture", timeout: 10m, attempts: 3, accept: exit_code == 0 && stdout.contains("ok") && !stderr.contains("warning") }
  step p: script {
    code: """
          let x = 1;
            x + 1
    """
    output: int
  }
  step q: run { command: "echo", env: { SIZE: "{{ 64KiB }}" }, sandbox { memory: 512MiB, network: false } }
  return ((p.output + 1) * 2)
}
"#
    ));
}

#[test]
fn crlf_tabs_and_a_byte_order_mark() {
    let text = "\u{feff}skill a() {\r\n\tstep s: run { command: \"x\" }\t# c\r\n}\r\n";
    assert_eq!(
        fmt(text),
        "skill a() {\n  step s: run { command: \"x\" } # c\n}\n"
    );
}

#[test]
fn syntax_errors_are_refused() {
    assert!(format_source("skill a( { }").is_err());
    assert!(format_source("skill a() { step s: run { command: \"x } }").is_err());
}

#[test]
fn the_empty_file_stays_empty() {
    assert_eq!(format_source("").unwrap(), "");
    assert_eq!(format_source("\n\n").unwrap(), "");
    assert_eq!(format_source("# only\n").unwrap(), "# only\n");
}

fn small_file() -> impl Strategy<Value = String> {
    let name = prop::sample::select(vec!["a", "b", "plan", "x_1"]);
    let value = prop::sample::select(vec![
        "1",
        "200_000",
        "10m",
        "2GiB",
        "\"text {{ a }}\"",
        "[1, 2,]",
        "{ k: \"v\" }",
        "a.b + 1 * (2 - 3)",
        "!x && y || z",
        "f(1,\n 2)",
        "\"\"\"\n    multi\n      line\n  \"\"\"",
    ]);
    let sep = prop::sample::select(vec![" ", "\n", ",\n\n", ", ", "  # c\n"]);
    let field = (name.clone(), value, sep).prop_map(|(n, v, s)| format!("{n}: {v}{s}"));
    (prop::collection::vec(field, 0..5), name, any::<bool>()).prop_map(|(fields, step, lead)| {
        let body: String = fields.concat();
        let lead = if lead { "# lead\n" } else { "" };
        format!("{lead}skill main() {{\n step {step}: run {{ {body} }}\n}}\nmodel m {{ {body} }}\n")
    })
}

/// Inserts each `(fraction of the length, piece)` into `text`, at a char boundary.
fn insert_all(text: &str, pieces: &[(usize, &str)]) -> String {
    let mut out = text.to_string();
    for (frac, piece) in pieces {
        let mut at = frac * (out.len() + 1) / 65_536;
        // Just after a space or a line break, so most insertions fall between tokens.
        at = at.min(out.len());
        while at > 0 && !matches!(out.as_bytes()[at - 1], b' ' | b'\n') {
            at -= 1;
        }
        out.insert_str(at.min(out.len()), piece);
    }
    out
}

fn shipped_texts() -> &'static [String] {
    static TEXTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    TEXTS.get_or_init(|| {
        all_files()
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .filter(|t| format_source(t).is_ok())
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    /// Comments, line breaks and commas dropped anywhere in a file that still
    /// parses afterwards: the formatter never gives up on it (an internal
    /// error would mean a lost comment or a changed tree) and is stable.
    #[test]
    fn comments_and_breaks_anywhere_are_kept(
        which in 0usize..1000,
        pieces in prop::collection::vec(
            (0usize..65_536, prop::sample::select(vec!["# c\n", "\n", "\n\n", " ", ",", "\n# d\n\n"])),
            1..6,
        ),
    ) {
        let texts = shipped_texts();
        let text = insert_all(&texts[which % texts.len()], &pieces);
        let (_, diags) = flowc::syntax::parse_file(&text, 0);
        // An insertion inside a string may break the file: nothing to format then.
        if diags.is_empty() {
            let once = format_source(&text).map_err(|e| TestCaseError::fail(format!("{e:?}\n{text}")))?;
            let twice = format_source(&once).map_err(|e| TestCaseError::fail(format!("{e:?}\n{once}")))?;
            prop_assert_eq!(once, twice);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn generated_files_keep_their_tree_and_are_stable(text in small_file()) {
        let (_, diags) = flowc::syntax::parse_file(&text, 0);
        prop_assume!(diags.is_empty());
        let once = format_source(&text).map_err(|e| TestCaseError::fail(format!("{e:?}\n{text}")))?;
        let twice = format_source(&once).map_err(|e| TestCaseError::fail(format!("{e:?}\n{once}")))?;
        prop_assert_eq!(once, twice);
    }
}

fn flowc(dir: &Path, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_flowc"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (
        out.status.code().unwrap_or(-1),
        text(out.stdout),
        text(out.stderr),
    )
}

#[test]
fn the_command_checks_rewrites_and_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let ugly = "skill a() { step s: run {command:\"x\"} }\n";
    let pretty = "skill a() {\n  step s: run { command: \"x\" }\n}\n";
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/ugly.flow"), ugly).unwrap();
    std::fs::write(dir.path().join("pretty.flow"), pretty).unwrap();
    let broken = "skill b() { step s: run { command: \"x\" }\n";
    std::fs::write(dir.path().join("broken.flow"), broken).unwrap();

    // --check lists what is not formatted and changes nothing.
    let (code, out, err) = flowc(dir.path(), &["fmt", "--check", "sub", "pretty.flow"], None);
    assert_eq!((code, out.as_str()), (1, "sub/ugly.flow\n"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("sub/ugly.flow")).unwrap(),
        ugly
    );

    // Without it, the file is rewritten; a second run has nothing to do.
    let (code, _, err) = flowc(dir.path(), &["fmt", "sub"], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("sub/ugly.flow")).unwrap(),
        pretty
    );
    let (code, out, _) = flowc(dir.path(), &["fmt", "--check", "sub"], None);
    assert_eq!((code, out.as_str()), (0, ""));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("sub")).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "a temporary file was left behind");

    // A file with a syntax error is reported and left alone.
    let (code, _, err) = flowc(dir.path(), &["fmt", "broken.flow"], None);
    assert_eq!(code, 2);
    assert!(
        err.contains("E0107") && err.contains("`broken.flow` has syntax errors"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("broken.flow")).unwrap(),
        broken
    );

    // --stdin prints; with --check it only answers.
    let (code, out, _) = flowc(dir.path(), &["fmt", "--stdin"], Some(ugly));
    assert_eq!((code, out.as_str()), (0, pretty));
    let (code, out, _) = flowc(dir.path(), &["fmt", "--stdin", "--check"], Some(ugly));
    assert_eq!((code, out.as_str()), (1, ""));
    let (code, _, _) = flowc(dir.path(), &["fmt", "--stdin"], Some(broken));
    assert_eq!(code, 2);
}
