//! Declared file globs: expanding them under a step's directory, and hashing the files with a metadata cache (size, mtime, inode) so unchanged files are not read again.

use super::Store;
use globset::{Glob, GlobSet, GlobSetBuilder};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The directory a glob's literal prefix names (`src/**/*.rs` → `src`), where walking starts.
fn literal_prefix(glob: &str) -> &str {
    let meta = glob.find(['*', '?', '[', '{']).unwrap_or(glob.len());
    match glob[..meta].rfind('/') {
        Some(slash) => &glob[..slash],
        None if meta == glob.len() => glob,
        None => "",
    }
}

/// The regular files under `root` that match any of `globs`, as sorted relative paths.
pub fn expand(root: &Path, globs: &[String]) -> Result<Vec<String>, String> {
    let mut builder = GlobSetBuilder::new();
    for g in globs {
        let glob = Glob::new(g).map_err(|e| format!("`{g}` is not a valid glob: {}", e.kind()))?;
        builder.add(glob);
    }
    let set: GlobSet = builder.build().map_err(|e| e.to_string())?;
    let mut starts: Vec<&str> = globs.iter().map(|g| literal_prefix(g)).collect();
    starts.sort_unstable();
    starts.dedup();
    let mut found = std::collections::BTreeSet::new();
    for start in starts {
        let dir = if start.is_empty() {
            root.to_path_buf()
        } else {
            root.join(start)
        };
        if !dir.exists() {
            continue;
        }
        let walk = ignore::WalkBuilder::new(&dir)
            .standard_filters(false)
            .follow_links(false)
            .build();
        for entry in walk {
            let entry = entry.map_err(|e| format!("cannot read `{}`: {e}", dir.display()))?;
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            let Ok(rel) = entry.path().strip_prefix(root) else {
                continue;
            };
            let rel = rel.to_string_lossy().replace('\\', "/");
            if set.is_match(&rel) {
                found.insert(rel);
            }
        }
    }
    Ok(found.into_iter().collect())
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// blake3 of a file's content.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// Hashes files, trusting the store's recorded hash of a file whose size,
/// mtime and inode are unchanged (and that was not modified within a second
/// of being hashed, which mtime granularity could hide).
#[derive(Debug)]
pub struct FileHashes<'s> {
    store: &'s Store,
    fresh: Vec<(String, u64, i64, u64, i64, String)>,
    /// Files read and hashed (not answered from metadata).
    pub read: usize,
}

impl<'s> FileHashes<'s> {
    /// Hashing through `store`'s metadata table.
    pub fn new(store: &'s Store) -> FileHashes<'s> {
        FileHashes {
            store,
            fresh: Vec::new(),
            read: 0,
        }
    }

    /// The hash of each of `rels` under `root`.
    pub fn hash_all(
        &mut self,
        root: &Path,
        rels: &[String],
    ) -> Result<BTreeMap<String, String>, String> {
        let mut out = BTreeMap::new();
        for rel in rels {
            let path = root.join(rel);
            let hash = self
                .hash(&path)
                .map_err(|e| format!("cannot read input `{rel}`: {e}"))?;
            out.insert(rel.clone(), hash);
        }
        Ok(out)
    }

    fn hash(&mut self, path: &Path) -> std::io::Result<String> {
        let meta = std::fs::metadata(path)?;
        let abs: PathBuf = std::path::absolute(path)?;
        let key = abs.to_string_lossy().into_owned();
        let mtime = meta.mtime() * 1_000_000_000 + meta.mtime_nsec();
        if let Some((size, m, ino, at, hash)) = self.store.file_meta(&key)
            && size == meta.len()
            && m == mtime
            && ino == meta.ino()
            && mtime < at - 1_000_000_000
        {
            return Ok(hash);
        }
        let at = now_ns();
        let hash = hash_file(path)?;
        self.read += 1;
        self.fresh
            .push((key, meta.len(), mtime, meta.ino(), at, hash.clone()));
        Ok(hash)
    }

    /// Records the metadata of the files hashed so far.
    pub fn save(&mut self) -> Result<(), String> {
        let rows = std::mem::take(&mut self.fresh);
        self.store.save_file_meta(&rows)
    }
}

#[cfg(test)]
mod tests {
    use super::literal_prefix;

    #[test]
    fn walking_starts_at_the_literal_prefix() {
        assert_eq!(literal_prefix("src/**/*.rs"), "src");
        assert_eq!(literal_prefix("a/b/c.txt"), "a/b");
        assert_eq!(literal_prefix("*.rs"), "");
        assert_eq!(literal_prefix("shards/s1?.txt"), "shards");
    }
}
