//! Content-addressed objects: declared output files stored by their blake3 hash, and restored only when their hash still matches.

use super::{OutputFile, Stats, Store};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Copies `from` to `to` while hashing it; the hex hash and the bytes copied.
fn copy_hashing(from: &Path, to: &Path) -> std::io::Result<(String, u64)> {
    let mut src = std::fs::File::open(from)?;
    let mut dst = std::fs::File::create(to)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n])?;
        total += n as u64;
    }
    dst.sync_all()?;
    Ok((hasher.finalize().to_hex().to_string(), total))
}

/// A name for a temporary file beside `dir`'s contents.
fn temp_in(dir: &Path, what: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    dir.join(format!(".{what}.{}.{nanos}.tmp", std::process::id()))
}

impl Store {
    fn object_path(&self, hash: &str) -> PathBuf {
        let prefix = hash.get(..2).unwrap_or("00");
        self.dir.join("objects").join(prefix).join(hash)
    }

    /// Stores the file at `root/rel` as an object.
    pub fn put_object(&self, root: &Path, rel: &str) -> Result<OutputFile, String> {
        let from = root.join(rel);
        let fail = |e: std::io::Error| format!("cannot store output `{rel}` in the cache: {e}");
        let meta = std::fs::metadata(&from).map_err(fail)?;
        let objects = self.dir.join("objects");
        let tmp = temp_in(&objects, "put");
        let (hash, size) = copy_hashing(&from, &tmp).map_err(fail)?;
        let dest = self.object_path(&hash);
        let placed = dest
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::rename(&tmp, &dest));
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&tmp);
            return Err(fail(e));
        }
        Ok(OutputFile {
            path: rel.to_string(),
            hash,
            size,
            mode: meta.permissions().mode() & 0o7777,
        })
    }

    /// Writes the object of `out` to `root/out.path`, checking its hash first;
    /// a damaged or missing object is an error and leaves the file as it was.
    pub fn restore_object(&self, root: &Path, out: &OutputFile) -> Result<(), String> {
        if out.path.starts_with('/') || out.path.split('/').any(|c| c == "..") {
            return Err(format!(
                "cache output path `{}` leaves the step's directory",
                out.path
            ));
        }
        let dest = root.join(&out.path);
        let dir = dest.parent().unwrap_or(root).to_path_buf();
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
        let tmp = temp_in(&dir, "restore");
        let copied = copy_hashing(&self.object_path(&out.hash), &tmp);
        let fail = |why: String| {
            let _ = std::fs::remove_file(&tmp);
            Err(why)
        };
        match copied {
            Err(e) => return fail(format!("cache object of `{}` is unreadable: {e}", out.path)),
            Ok((hash, _)) if hash != out.hash => {
                // The object is worthless: drop it so the rerun stores a good one.
                let _ = std::fs::remove_file(self.object_path(&out.hash));
                return fail(format!(
                    "cache object of `{}` is corrupt (its content hashes to {}, not {})",
                    out.path,
                    &hash[..12],
                    &out.hash[..out.hash.len().min(12)]
                ));
            }
            Ok(_) => {}
        }
        let _ = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(out.mode));
        std::fs::rename(&tmp, &dest)
            .or_else(|e| fail(format!("cannot restore `{}`: {e}", out.path)))
    }

    /// Removes objects no entry refers to, and stray temporary files; bytes freed.
    pub fn remove_unreferenced(&self) -> Result<u64, String> {
        let referenced: HashSet<String> = self
            .list()?
            .into_iter()
            .flat_map(|e| e.outputs.into_iter().map(|o| o.hash))
            .collect();
        let mut freed = 0;
        for (path, name, size) in self.object_files() {
            // A temporary file may be another flowc's object being written:
            // only one left for an hour is stray.
            let stray = name.is_empty()
                && std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().is_ok_and(|e| e.as_secs() > 3600));
            let unreferenced = !name.is_empty() && !referenced.contains(&name);
            if (stray || unreferenced) && std::fs::remove_file(&path).is_ok() {
                freed += size;
            }
        }
        Ok(freed)
    }

    /// Every file under `objects/`: (path, name, size).
    fn object_files(&self) -> Vec<(PathBuf, String, u64)> {
        let mut out = Vec::new();
        let Ok(dirs) = std::fs::read_dir(self.dir.join("objects")) else {
            return out;
        };
        for dir in dirs.flatten() {
            let files = match std::fs::read_dir(dir.path()) {
                Ok(f) => f,
                // A stray temporary file at the top level.
                Err(_) => {
                    let size = dir.metadata().map_or(0, |m| m.len());
                    out.push((dir.path(), String::new(), size));
                    continue;
                }
            };
            for f in files.flatten() {
                let size = f.metadata().map_or(0, |m| m.len());
                out.push((f.path(), f.file_name().to_string_lossy().into_owned(), size));
            }
        }
        out
    }

    /// Entry and object totals.
    pub fn stats(&self) -> Result<Stats, String> {
        let (entries, bytes) = self.totals()?;
        let files = self.object_files();
        Ok(Stats {
            entries,
            bytes,
            objects: files.len() as u64,
            object_bytes: files.iter().map(|f| f.2).sum(),
            max_bytes: self.max_bytes,
        })
    }
}
