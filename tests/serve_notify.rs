//! `flowc serve` under a service manager: `READY=1` and `STOPPING=1` reach
//! `$NOTIFY_SOCKET`, and the manager's variables never reach a step.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn recv(sock: &UnixDatagram, want: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            seen.push(msg.clone());
            if msg == want {
                return seen;
            }
        }
    }
    panic!("no `{want}` from the service; it sent {seen:?}");
}

#[test]
fn the_service_tells_systemd_and_no_step_sees_its_variables() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sock_path = d.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    std::fs::write(
        d.join("env.flow"),
        "skill main() {\n  step e: run { command: \"env > step.env\" }\n}\n",
    )
    .unwrap();
    let mut svc = Command::new(common::BIN)
        .args(["serve", "--listen", "none"])
        .current_dir(d)
        .env_remove("FLOWC_JOURNAL")
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "2000000")
        .env("LISTEN_FDS", "0")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    recv(&sock, "READY=1");
    let out = common::flowc(d, &["submit", "env.flow"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    // The watchdog is fed while the loop ticks (every half of WATCHDOG_USEC).
    recv(&sock, "WATCHDOG=1");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !d.join("step.env").exists() {
        assert!(Instant::now() < deadline, "the run never ran");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let env = std::fs::read_to_string(d.join("step.env")).unwrap();
    for var in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "LISTEN_FDS"] {
        assert!(
            !env.contains(&format!("{var}=")),
            "{var} reached the step:\n{env}"
        );
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(svc.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    recv(&sock, "STOPPING=1");
    let status = svc.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}
