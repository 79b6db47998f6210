//! The parsed view, as a table: command → its lines (`View::parsed`) and
//! whether it is opaque.

use super::{of_argv, of_script};

/// `(script, parsed lines, opaque)`.
const SCRIPTS: &[(&str, &str, bool)] = &[
    ("git status", "git status", false),
    ("git\tpush", "git push", false),
    ("git -C . push origin", "git push origin", false),
    ("git -c k=v push", "git push", false),
    ("git --git-dir=.git --work-tree . push", "git push", false),
    ("g\"i\"t push", "git push", false),
    ("'git' 'push'", "git push", false),
    ("\\git push", "git push", false),
    ("git \\\npush", "git push", false),
    ("gi\\\nt push", "git push", false),
    ("/usr/bin/git push", "git push", false),
    ("G=git; $G push", "$G push", true),
    ("$(printf git) push", "printf git\n$(printf git) push", true),
    ("`printf git` push", "printf git\n`printf git` push", true),
    ("git $SUB", "git $SUB", true),
    ("X=1 Y=2 git push", "git push", false),
    ("X=1", "", false),
    ("env X=1 git push", "git push", false),
    ("env -i -u HOME git push", "git push", false),
    ("command git push", "git push", false),
    ("command -v git", "command -v git", false),
    ("nice -n 5 git push", "git push", false),
    ("timeout -s KILL 5 git push", "git push", false),
    ("nohup git push &", "git push", false),
    (
        "sudo -u root git push",
        "sudo -u root git push\ngit push",
        false,
    ),
    ("exec git push", "git push", false),
    ("echo hi | git push", "echo hi\ngit push", false),
    ("true && git push || false", "true\ngit push\nfalse", false),
    ("(cd x; git push)", "cd x\ngit push", false),
    ("{ git push; }", "git push", false),
    (
        "if git diff --quiet; then git push; fi",
        "git diff --quiet\ngit push",
        false,
    ),
    (
        "for b in a c; do git push origin \"$b\"; done",
        "git push origin $b",
        false,
    ),
    (
        "while ! git push; do sleep 1; done",
        "git push\nsleep 1",
        false,
    ),
    (
        "case $x in a|b) git push;; *) echo no;; esac",
        "git push\necho no",
        false,
    ),
    ("f() { git push; }; f", "git push\nf", false),
    ("function f { git push; }", "git push", false),
    (
        "echo \"$(git push)\"",
        "git push\necho '$(git push)'",
        false,
    ),
    (
        "echo ${V:-$(git push)}",
        "git push\necho '${V:-$(git push)}'",
        false,
    ),
    (
        "diff <(git show) b",
        "git show\ndiff '<(git show)' b",
        false,
    ),
    ("git push 2>&1 >out.log", "git push", false),
    (
        "cat <<EOF\ngit push\nEOF\necho done",
        "cat\necho done",
        false,
    ),
    ("cat <<EOF\n$(git push)\nEOF", "", true),
    ("cat <<'EOF'\n$(git push)\nEOF", "cat", false),
    ("sh -c 'git push'", "sh -c 'git push'\ngit push", false),
    (
        "bash -ec \"git -C . push\"",
        "bash -ec 'git -C . push'\ngit push",
        false,
    ),
    ("sh -c \"$CMD\"", "sh -c $CMD", true),
    ("sh", "sh", true),
    ("bash -s", "bash -s", true),
    ("sh <<EOF\ngit push\nEOF", "sh", true),
    ("echo 'git push' | sh", "echo 'git push'\nsh", true),
    ("sh ./build.sh", "sh ./build.sh", false),
    ("eval 'git push'", "eval 'git push'\ngit push", false),
    ("eval \"$X\"", "eval $X", true),
    ("source \"$F\"", "source $F", true),
    ("alias g=git", "alias g=git", true),
    (
        "trap 'git push' EXIT",
        "trap 'git push' EXIT\ngit push",
        false,
    ),
    ("git -c alias.p=push p", "git p", true),
    (
        "find . -exec git push \\;",
        "find . -exec git push ;\ngit push",
        false,
    ),
    ("echo push | xargs git", "echo push\nxargs git\ngit", true),
    ("ls | xargs rm -f", "ls\nxargs rm -f\nrm -f", false),
    ("git push # comment", "git push", false),
    ("# git push", "", false),
    ("echo 'a; git push'", "echo 'a; git push'", false),
    ("rm -rf \"/\"", "rm -rf /", false),
    (
        "cargo +nightly publish --dry-run",
        "cargo publish --dry-run",
        false,
    ),
    ("kubectl -n prod apply -f x", "kubectl apply -f x", false),
    ("[ -f x ] && echo y", "[ -f x ]\necho y", false),
    ("echo $((1 + 2))", "echo '$((1 + 2))'", false),
    ("echo $(( $(git push) ))", "", true),
    ("gi* push", "gi* push", true),
    ("{git,push}", "{git,push}", true),
    ("echo 'unterminated", "", true),
    ("echo )", "echo", true),
    ("echo $(git push", "git push", true),
    ("python3 -c 'import os'", "python3 -c 'import os'", false),
    // The shipped workflows' scripts, rendered.
    (
        "log=$(mktemp)\ncargo test 'x' >\"$log\" 2>&1\ncode=$?\ntail -n 150 \"$log\"\nrm -f \"$log\"\nexit \"$code\"",
        "mktemp\ncargo test x\ntail -n 150 $log\nrm -f $log\nexit $code",
        false,
    ),
    (
        "git push --quiet --force-with-lease 'origin' 'HEAD:refs/heads/bot'",
        "git push --quiet --force-with-lease origin HEAD:refs/heads/bot",
        false,
    ),
];

#[test]
fn scripts() {
    let mut wrong = Vec::new();
    for (script, lines, opaque) in SCRIPTS {
        let view = of_script(script);
        if view.parsed() != *lines || view.opaque.is_some() != *opaque {
            wrong.push(format!(
                "{script:?}\n  want {lines:?} opaque={opaque}\n  got  {:?} opaque={:?}",
                view.parsed(),
                view.opaque
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn argv() {
    let argv = |a: &[&str]| of_argv(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let v = argv(&["git", "-C", ".", "push"]);
    assert_eq!(v.parsed(), "git push");
    assert_eq!(v.commands[0].subcommand, "push");
    assert_eq!(v.commands[0].args, ["-C", ".", "push"]);
    assert!(v.opaque.is_none());
    // An argv word is literal: `$G` is a program named `$G`, not an expansion.
    assert!(argv(&["$G", "push"]).opaque.is_none());
    let v = argv(&["sh", "-c", "cat > \"$1\"", "apply", "x"]);
    assert_eq!(v.parsed(), "sh -c 'cat > \"$1\"' apply x\ncat");
    assert!(v.opaque.is_none());
    assert!(argv(&["bash"]).opaque.is_some());
    assert!(argv(&["/bin/sh", "-s"]).opaque.is_some());
    assert!(argv(&["sh", "-c", "$(printf git) push"]).opaque.is_some());
}

#[test]
fn deep_nesting_is_opaque_not_a_crash() {
    let deep = format!("{}git push{}", "$(".repeat(200), ")".repeat(200));
    assert!(of_script(&deep).opaque.is_some());
    let evals = format!("{}git push", "eval ".repeat(40));
    assert!(of_script(&evals).opaque.is_some());
    let backquotes = "echo `echo \\`echo \\\\\\`git push\\\\\\`\\``";
    assert!(of_script(backquotes).parsed().contains("git push"));
}
