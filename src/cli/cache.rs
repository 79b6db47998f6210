//! `flowc cache stats|ls|rm|gc`: the step cache beside the journal.

use super::{CliError, CliResult, EXIT_OK, JournalArgs, write_stdout};
use crate::cache::{Store, dir_for, parse_size};
use crate::journal::now_ms;

/// Arguments of `flowc cache`.
#[derive(Debug, clap::Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub action: Action,
    #[command(flatten)]
    pub journal: JournalArgs,
}

/// What to do with the cache.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Entries, bytes, objects and the size cap.
    Stats {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every entry, most recently used first: step, the run and attempt it came from, size.
    Ls {
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Remove the entries of a step instance (`lint`, `for_f[3]/lint`), or whose key or step (`FILE#SKILL::INSTANCE`) starts with PREFIX.
    Rm {
        /// A step instance, a key prefix or a step prefix; `--all` for every entry.
        prefix: Option<String>,
        /// Remove every entry.
        #[arg(long, conflicts_with = "prefix")]
        all: bool,
    },
    /// Evict least recently used entries past the size cap, and delete objects nothing refers to.
    Gc {
        /// Also remove entries not used for this long (`7d`, `12h`).
        #[arg(long, value_name = "DURATION")]
        older_than: Option<String>,
        /// The size cap (default: $FLOWC_CACHE_MAX, else 1GiB).
        #[arg(long, value_name = "SIZE")]
        max_size: Option<String>,
    },
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// Runs `flowc cache`.
pub fn run(args: &CacheArgs) -> CliResult {
    let dir = dir_for(&args.journal.path());
    let Some(mut store) = Store::open_existing(&dir).map_err(CliError::failed)? else {
        return Err(
            CliError::usage(format!("no step cache at `{}`", dir.display()))
                .help("a run stores results there once a step has `cache: true`"),
        );
    };
    store.max_bytes = crate::cache::max_bytes_from_env().map_err(CliError::usage)?;
    match &args.action {
        Action::Stats { json } => stats(&store, *json),
        Action::Ls { json } => ls(&store, *json),
        Action::Rm { prefix, all } => {
            let prefix = match (prefix, all) {
                (_, true) => String::new(),
                (Some(p), false) if !p.is_empty() => p.clone(),
                _ => return Err(CliError::usage("name a key or step prefix, or pass --all")),
            };
            let gone = store.remove(&prefix).map_err(CliError::failed)?;
            let freed = store.remove_unreferenced().map_err(CliError::failed)?;
            eprintln!(
                "removed {gone} entries, freed {} of objects",
                human_bytes(freed)
            );
            if gone == 0 {
                return Err(CliError::failed(format!(
                    "no cache entry matches `{prefix}`"
                )));
            }
            Ok(EXIT_OK)
        }
        Action::Gc {
            older_than,
            max_size,
        } => {
            if let Some(text) = max_size {
                store.max_bytes = parse_size(text).ok_or_else(|| {
                    CliError::usage(format!(
                        "`--max-size {text}` is not a size; write one such as `500MiB`"
                    ))
                })?;
            }
            let mut gone = 0;
            if let Some(text) = older_than {
                let ms = crate::syntax::parse_duration(text).ok_or_else(|| {
                    CliError::usage(format!(
                        "`--older-than {text}` is not a duration; write one such as `7d` or `12h`"
                    ))
                })?;
                let before = now_ms().saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX));
                gone += store
                    .remove_unused_since(before)
                    .map_err(CliError::failed)?;
            }
            gone += store.evict_to(store.max_bytes).map_err(CliError::failed)?;
            let freed = store.remove_unreferenced().map_err(CliError::failed)?;
            eprintln!(
                "removed {gone} entries, freed {} of objects",
                human_bytes(freed)
            );
            Ok(EXIT_OK)
        }
    }
}

fn stats(store: &Store, json: bool) -> CliResult {
    let s = store.stats().map_err(CliError::failed)?;
    let text = if json {
        format!("{}\n", serde_json::json!(s))
    } else {
        format!(
            "cache {}\n  entries  {} ({})\n  objects  {} ({})\n  cap      {}\n",
            store.dir().display(),
            s.entries,
            human_bytes(s.bytes),
            s.objects,
            human_bytes(s.object_bytes),
            human_bytes(s.max_bytes)
        )
    };
    write_stdout(text.as_bytes())
}

fn ls(store: &Store, json: bool) -> CliResult {
    let mut text = String::new();
    for e in store.list().map_err(CliError::failed)? {
        if json {
            let row = serde_json::json!({
                "key": e.key, "step": e.step, "run": e.run_id, "node": e.node,
                "attempt": e.attempt, "outputs": e.outputs.len(), "size": e.size,
                "created_at": e.created_at, "used_at": e.used_at,
            });
            text.push_str(&format!("{row}\n"));
        } else {
            text.push_str(&format!(
                "{}  {:<40}  run {} attempt {}  {} outputs  {}\n",
                &e.key[..e.key.len().min(12)],
                e.node,
                e.run_id,
                e.attempt,
                e.outputs.len(),
                human_bytes(e.size)
            ));
        }
    }
    write_stdout(text.as_bytes())
}
