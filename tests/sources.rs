//! A run's sources (every file it compiled) are kept in the journal when it
//! starts, so it resumes where its files are not.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use common::stderr;
use flowc::journal::Journal;

on_both_stores! {
/// Resumed from another directory than the one it started in (another
/// machine, as far as the run can tell, when the journal is on Postgres).
fn a_run_resumes_from_the_sources_it_journaled_when_its_files_are_gone(store) {
    let d = store.dir.path();
    let at = |dir: &std::path::Path, args: &[&str]| {
        common::flowc_env(dir, args, &[("FLOWC_JOURNAL", &store.location())])
    };
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.join("flows")).unwrap();
    std::fs::write(
        d.join("flows/lib.flow"),
        "skill greet(who: string) -> string {\n  step s: run { command: \"echo hello {{ who }}\" }\n  return s.stdout.trim()\n}\n",
    )
    .unwrap();
    std::fs::write(
        d.join("flows/main.flow"),
        "import \"./lib.flow\"\nskill main() -> string {\n  step g: approval { prompt: \"go?\" }\n  step c: call lib.greet { with { who: \"there\" }, after: [g] }\n  return c\n}\n",
    )
    .unwrap();
    let out = at(d, &["run", "flows/main.flow", "--no-input"]);
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    let j = Journal::open_existing(&store.path).unwrap();
    let run = j.runs().unwrap()[0].id.clone();
    let stored = j.sources_of(&run).unwrap();
    let paths: Vec<&str> = stored.iter().map(|(p, _)| p.as_str()).collect();
    assert!(
        paths.contains(&"flows/main.flow") && paths.contains(&"flows/lib.flow"),
        "{paths:?}"
    );
    drop(j);
    // The checkout is gone: the run goes on from what the journal kept.
    std::fs::remove_dir_all(d.join("flows")).unwrap();
    assert!(at(d, &["approve", &run, "g"]).status.success());
    let resumed = at(elsewhere.path(), &["run", "--resume", &run]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert!(
        stderr(&resumed).contains("resuming from the 2 file(s) the run journaled"),
        "{}",
        stderr(&resumed)
    );
    assert_eq!(
        String::from_utf8_lossy(&resumed.stdout).trim(),
        "\"hello there\""
    );
}
}
