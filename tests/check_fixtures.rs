//! Fixture-driven checker tests: every `err/*.flow` must produce errors (its
//! rendered diagnostics are snapshotted), every `ok/*.flow` must compile
//! cleanly (its compiled summary is snapshotted), and together the error
//! fixtures must exercise every diagnostic code.
#![allow(clippy::unwrap_used)]

use flowc::check::{CheckOutput, FsLoader, check_files};
use flowc::diag::{Code, Format, RenderOptions, Severity, render};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn relative(path: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    path.strip_prefix(root).unwrap_or(path).to_path_buf()
}

fn check(path: &Path) -> CheckOutput {
    // Relative paths keep the rendered file names stable across machines.
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
    check_files(&FsLoader, &[relative(path)])
}

fn rendered(out: &CheckOutput) -> String {
    let opts = RenderOptions {
        color: false,
        width: 90,
    };
    out.diagnostics
        .iter()
        .map(|d| render(d, &out.sources, Format::Human, opts))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn error_fixtures() {
    let mut seen: BTreeSet<Code> = BTreeSet::new();
    insta::glob!("fixtures/check/err/*.flow", |path| {
        let out = check(path);
        assert!(
            !out.diagnostics.is_empty(),
            "{} produced no diagnostic",
            path.display()
        );
        seen.extend(out.diagnostics.iter().map(|d| d.code));
        insta::assert_snapshot!(rendered(&out));
    });
    let missing: Vec<&str> = Code::ALL
        .iter()
        .filter(|c| !seen.contains(c))
        .map(|c| c.as_str())
        .collect();
    assert!(missing.is_empty(), "no error fixture produces {missing:?}");
}

#[test]
fn ok_fixtures() {
    insta::glob!("fixtures/check/ok/*.flow", |path| {
        let out = check(path);
        assert_eq!(
            out.count(Severity::Error),
            0,
            "{}:\n{}",
            path.display(),
            rendered(&out)
        );
        assert_eq!(
            out.count(Severity::Warning),
            0,
            "{}:\n{}",
            path.display(),
            rendered(&out)
        );
        let program = out.files[0].program.as_ref().unwrap();
        insta::assert_snapshot!(program.summary());
    });
}

#[test]
fn library_flows_check_clean() {
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in ["workflows", "stdlib"] {
        for entry in walk(Path::new(dir)) {
            files.push(entry);
        }
    }
    assert!(
        files.len() >= 6,
        "expected the stdlib and at least four workflows"
    );
    let out = check_files(&FsLoader, &files);
    assert!(out.diagnostics.is_empty(), "{}", rendered(&out));
    assert!(out.files.iter().all(|f| f.program.is_some()));
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "flow") {
            out.push(path);
        }
    }
    out.sort();
    out
}
