//! Redaction cost on large outputs: `cargo bench --bench redact`.
//!
//! Redacts 64 MiB of step output in the 128 KiB buffers the capture cuts
//! (as `exec/attempt.rs` does), with 0, 2 and 20 registered secrets, for
//! three kinds of text: plain log lines (no decoded view is built), base64
//! wrapped at 76 columns (every line break is a candidate), and JSON full of
//! `\u` and `%` escapes (both decoded views are built). Prints MB/s, best of 3.
#![allow(clippy::unwrap_used)]

use std::time::Instant;

const BUF: usize = 128 * 1024;
const TOTAL: usize = 64 * 1024 * 1024;

fn text(kind: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(BUF + 256);
    let mut i = 0u64;
    while out.len() < BUF {
        let line = match kind {
            "plain" => format!("2026-12-02 12:00:{i:02} INFO compiling crate number {i} of many\n"),
            "base64" => {
                use base64::Engine as _;
                let enc =
                    base64::engine::general_purpose::STANDARD.encode(format!("{i:>56}").as_bytes());
                format!("{enc}\n")
            }
            _ => format!("{{\"k\": \"caf\\u00e9 {i} \\n\", \"url\": \"/a%20b%2Fc?q={i}\"}}\n"),
        };
        out.extend_from_slice(line.as_bytes());
        i += 1;
    }
    out.truncate(BUF);
    out
}

fn main() {
    println!("| text | secrets | MB/s |");
    println!("|---|---:|---:|");
    let mut registered = 0;
    for secrets in [0usize, 2, 20] {
        while registered < secrets {
            flowc::secrets::register(&format!("bench-secret-{registered}-Zq8xP"));
            registered += 1;
        }
        for kind in ["plain", "base64", "json"] {
            let buf = text(kind);
            let mut best = f64::MAX;
            for _ in 0..3 {
                let start = Instant::now();
                let mut hits = 0;
                for _ in 0..TOTAL / BUF {
                    hits += usize::from(flowc::secrets::redact_bytes(&buf).is_some());
                }
                assert_eq!(hits, 0);
                best = best.min(start.elapsed().as_secs_f64());
            }
            println!("| {kind} | {secrets} | {:.0} |", TOTAL as f64 / 1e6 / best);
        }
    }
}
