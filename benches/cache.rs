//! Step cache benchmark: `cargo bench --bench cache`.
//!
//! - Hashing the declared inputs of 10,000 files totalling 1 GB
//!   (`FLOWC_BENCH_FILES`, `FLOWC_BENCH_FILE_KIB` change the shape): a first
//!   pass that reads every file (from the page cache: they were just written),
//!   then a warm pass answered from the (size, mtime, inode) metadata;
//!   in-process through `flowc::cache`.
//! - A dry run (`flowc plan`) of a flow whose `for` block has 10,000 cached
//!   `script` steps, after a run stored them all; and a second run that
//!   reuses them, with the release binary.
#![allow(clippy::unwrap_used)]

use flowc::cache::{FileHashes, Store, expand};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_flowc");

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn write_files(root: &Path, files: usize, kib: usize) {
    let mut block = vec![0u8; kib * 1024];
    for i in 0..files {
        // Distinct contents, cheaply: the file number in the first bytes.
        block[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let dir = root.join(format!("d{:02}", i % 100));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("f{i}.bin")), &block).unwrap();
    }
}

fn hash_pass(store: &Store, root: &Path) -> (Duration, usize, usize) {
    let start = Instant::now();
    let files = expand(root, &["**/*.bin".to_string()]).unwrap();
    let mut hashes = FileHashes::new(store);
    let out = hashes.hash_all(root, &files).unwrap();
    hashes.save().unwrap();
    (start.elapsed(), out.len(), hashes.read)
}

fn hashing() {
    let files = env_usize("FLOWC_BENCH_FILES", 10_000);
    let kib = env_usize("FLOWC_BENCH_FILE_KIB", 100);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    write_files(&root, files, kib);
    // Files modified within a second of hashing are hashed again next time
    // (mtime granularity): let them age so the warm pass can trust them all.
    std::thread::sleep(Duration::from_millis(1100));
    let store = Store::open(&dir.path().join("cache")).unwrap();
    let total_mb = files * kib / 1024;
    let (t, n, read) = hash_pass(&store, &root);
    println!("hash {n} files ({total_mb} MiB), first pass: {t:.2?} ({read} read)");
    for i in 1..=3 {
        let (t, n, read) = hash_pass(&store, &root);
        println!("hash {n} files ({total_mb} MiB), warm pass {i}: {t:.2?} ({read} read)");
    }
}

fn timed(dir: &Path, args: &[&str]) -> (Duration, bool) {
    let start = Instant::now();
    let ok = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("FLOWC_JOURNAL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    (start.elapsed(), ok)
}

fn dry_run() {
    let n = env_usize("FLOWC_BENCH_STEPS", 10_000);
    let dir = tempfile::tempdir().unwrap();
    let flow = format!(
        "policy bench {{\n  max_parallel: 4\n  max_steps: 100000\n}}\nskill main() {{\n  policy: bench\n  step items: script {{ code: \"let l = []; for i in 0..{n} {{ l.push(i) }} l\", output: [int] }}\n  for i in items {{\n    parallel: 4\n    step s: script {{ code: \"i * 2\", output: int }}\n  }}\n}}\n"
    );
    std::fs::write(dir.path().join("bench.flow"), flow).unwrap();
    let (t, ok) = timed(dir.path(), &["run", "bench.flow", "--no-input"]);
    println!("run of {n} cached script steps (stores them): {t:.2?} ok={ok}");
    for i in 1..=3 {
        let (t, ok) = timed(dir.path(), &["plan", "bench.flow", "--json"]);
        println!("dry run of {n} steps, all reusable, pass {i}: {t:.2?} ok={ok}");
    }
    let (t, ok) = timed(dir.path(), &["run", "bench.flow", "--no-input"]);
    println!("second run of {n} steps, all reused: {t:.2?} ok={ok}");
}

fn main() {
    println!(
        "load before: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    hashing();
    dry_run();
    println!(
        "load after: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
}
