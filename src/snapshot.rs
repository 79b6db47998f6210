//! Snapshots of files before a `run` step's attempt, and rolling them back.
//!
//! A snapshot is a manifest (JSON, named by its blake3 hash) of every file
//! and symlink under a root that matches the step's globs, with each file's
//! content stored once, content-addressed, under `<store>/objects/`. Walking
//! never follows a symlink; a symlink is recorded as a link (its target
//! text). Restoring writes every recorded file back (contents and mode),
//! recreates recorded links, and removes files matching the globs that the
//! snapshot does not have (the ones the step created). Nothing is written
//! through a symlinked directory or outside the root.

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use std::path::{Component, Path, PathBuf};

/// One snapshot: the root, the globs and what matched.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// The directory the globs are relative to (absolute).
    pub root: String,
    /// The globs.
    pub globs: Vec<String>,
    /// What matched, sorted by path.
    pub entries: Vec<Entry>,
}

/// A matched file or symlink, by path relative to the root.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// Relative path, `/`-separated.
    pub path: String,
    /// For a file: the blake3 hash of its content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// For a file: its permission bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// For a symlink: its target, as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// What a snapshot holds, once taken.
#[derive(Debug, Clone, PartialEq)]
pub struct Taken {
    /// The manifest's id (its hash).
    pub id: String,
    /// Files and links recorded.
    pub entries: usize,
    /// Bytes of file content recorded.
    pub bytes: u64,
}

/// What a rollback changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Restored {
    /// Files and links written back.
    pub written: usize,
    /// Files the step had created, removed.
    pub removed: usize,
}

fn globset(globs: &[String]) -> Result<GlobSet, String> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        let glob = Glob::new(g).map_err(|e| format!("snapshot glob `{g}` is not valid: {e}"))?;
        b.add(glob);
    }
    b.build().map_err(|e| format!("snapshot globs: {e}"))
}

/// The directories a walk must start from: each glob's leading literal
/// directories (`src/**` → `src`), so that `target/` is not read for `src/**`;
/// the root itself when a glob starts with a pattern. Nested ones are dropped.
fn starts(globs: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for g in globs {
        let parts: Vec<&str> = g.split('/').collect();
        let literal: Vec<&str> = parts[..parts.len().saturating_sub(1)]
            .iter()
            .take_while(|c| !c.contains(['*', '?', '[', '{', '\\']) && !c.is_empty() && **c != ".")
            .copied()
            .collect();
        out.push(literal.join("/"));
    }
    out.sort();
    out.dedup();
    let all = out.clone();
    out.retain(|p| {
        !all.iter()
            .any(|q| q != p && (q.is_empty() || p.starts_with(&format!("{q}/"))))
    });
    out
}

/// Every file and symlink under `root` whose relative path matches, never
/// entering a symlinked directory and skipping `.flowc/` and `.git/`.
fn walk(
    root: &Path,
    set: &GlobSet,
    globs: &[String],
) -> Result<Vec<(String, PathBuf, std::fs::Metadata)>, String> {
    let mut out = Vec::new();
    let mut stack = Vec::new();
    'start: for start in starts(globs) {
        // Every directory on the way must be a real one: never follow a link.
        let mut dir = root.to_path_buf();
        for part in start.split('/').filter(|p| !p.is_empty()) {
            dir.push(part);
            if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
                continue 'start;
            }
        }
        stack.push(dir);
    }
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| format!("cannot read `{}` for a snapshot: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot read `{}`: {e}", dir.display()))?;
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path)
                .map_err(|e| format!("cannot stat `{}`: {e}", path.display()))?;
            let Ok(rel) = path.strip_prefix(root) else {
                continue;
            };
            let rel = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            if meta.is_dir() {
                if rel != ".flowc" && rel != ".git" {
                    stack.push(path);
                }
            } else if set.is_match(&rel) {
                out.push((rel, path, meta));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Saves what matches `globs` under `root` into `store`.
pub fn take(store: &Path, root: &Path, globs: &[String]) -> Result<Taken, String> {
    use std::os::unix::fs::PermissionsExt;
    let root = root
        .canonicalize()
        .map_err(|e| format!("snapshot root `{}`: {e}", root.display()))?;
    let set = globset(globs)?;
    let objects = store.join("objects");
    std::fs::create_dir_all(&objects)
        .map_err(|e| format!("cannot create `{}`: {e}", objects.display()))?;
    let mut entries = Vec::new();
    let mut bytes = 0;
    for (rel, path, meta) in walk(&root, &set, globs)? {
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path)
                .map_err(|e| format!("cannot read the link `{}`: {e}", path.display()))?;
            entries.push(Entry {
                path: rel,
                hash: None,
                mode: None,
                link: Some(target.to_string_lossy().into_owned()),
            });
        } else if meta.is_file() {
            let content = std::fs::read(&path)
                .map_err(|e| format!("cannot read `{}` for a snapshot: {e}", path.display()))?;
            // Objects are stored in clear beside the journal: a file holding
            // a secret flowc resolved is refused, naming the file only.
            if crate::secrets::redact_bytes(&content).is_some() {
                return Err(format!(
                    "`{}` holds a secret value of this run, and snapshots are stored unencrypted; leave it out of `snapshot`",
                    rel
                ));
            }
            let hash = blake3::hash(&content).to_hex().to_string();
            let object = objects.join(&hash);
            if !object.exists() {
                write_atomic(&object, &content)?;
            }
            bytes += content.len() as u64;
            entries.push(Entry {
                path: rel,
                hash: Some(hash),
                mode: Some(meta.permissions().mode() & 0o7777),
                link: None,
            });
        }
    }
    let manifest = Manifest {
        root: root.display().to_string(),
        globs: globs.to_vec(),
        entries,
    };
    let text = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
    let id = blake3::hash(&text).to_hex()[..32].to_string();
    let path = store.join(format!("{id}.json"));
    if !path.exists() {
        write_atomic(&path, &text)?;
    }
    Ok(Taken {
        id,
        entries: manifest.entries.len(),
        bytes,
    })
}

/// Reads a manifest by id.
pub fn manifest(store: &Path, id: &str) -> Result<Manifest, String> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("`{id}` is not a snapshot id"));
    }
    let path = store.join(format!("{id}.json"));
    let text = std::fs::read(&path).map_err(|e| {
        format!(
            "snapshot `{id}` cannot be read from `{}`: {e}",
            path.display()
        )
    })?;
    serde_json::from_slice(&text).map_err(|e| format!("snapshot `{id}` is damaged: {e}"))
}

/// A relative path that stays inside the root: no `..`, no absolute part.
fn inside(root: &Path, rel: &str) -> Result<PathBuf, String> {
    let p = Path::new(rel);
    if rel.is_empty() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(format!("snapshot entry `{rel}` leaves the project"));
    }
    // Never write through a symlinked directory.
    let mut at = root.to_path_buf();
    let parts: Vec<_> = p.components().collect();
    for c in &parts[..parts.len().saturating_sub(1)] {
        at.push(c);
        if let Ok(m) = std::fs::symlink_metadata(&at)
            && !m.is_dir()
        {
            return Err(format!(
                "cannot restore `{rel}`: `{}` is not a directory (a symlink is never followed)",
                at.display()
            ));
        }
    }
    Ok(root.join(p))
}

/// Restores snapshot `id` exactly: recorded files and links are written
/// back, files matching the globs that it lacks are removed.
pub fn restore(store: &Path, id: &str) -> Result<Restored, String> {
    use std::os::unix::fs::PermissionsExt;
    let m = manifest(store, id)?;
    let root = PathBuf::from(&m.root);
    if !root.is_dir() {
        return Err(format!("the snapshot's directory `{}` is gone", m.root));
    }
    let set = globset(&m.globs)?;
    // Check every object first, so a damaged store changes nothing.
    for e in &m.entries {
        inside(&root, &e.path)?;
        if let Some(h) = &e.hash {
            let object = store.join("objects").join(h);
            if !object.is_file() {
                return Err(format!("snapshot `{id}` lacks the content of `{}`", e.path));
            }
        }
    }
    let mut done = Restored::default();
    let recorded: std::collections::HashSet<&str> =
        m.entries.iter().map(|e| e.path.as_str()).collect();
    for (rel, path, _) in walk(&root, &set, &m.globs)? {
        if !recorded.contains(rel.as_str()) {
            std::fs::remove_file(&path)
                .map_err(|e| format!("cannot remove `{}`: {e}", path.display()))?;
            done.removed += 1;
        }
    }
    for e in &m.entries {
        let path = inside(&root, &e.path)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|err| format!("cannot create `{}`: {err}", parent.display()))?;
        }
        // Whatever is there now (a file, a link, nothing) is replaced.
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            if meta.is_dir() {
                return Err(format!(
                    "cannot restore `{}`: it is a directory now",
                    e.path
                ));
            }
            let unchanged = match (&e.hash, &e.link) {
                (Some(h), _) if meta.is_file() => {
                    std::fs::read(&path)
                        .map(|c| blake3::hash(&c).to_hex().as_str() == h)
                        .unwrap_or(false)
                        && e.mode == Some(meta.permissions().mode() & 0o7777)
                }
                (_, Some(l)) if meta.file_type().is_symlink() => std::fs::read_link(&path)
                    .map(|t| t.to_string_lossy() == l.as_str())
                    .unwrap_or(false),
                _ => false,
            };
            if unchanged {
                continue;
            }
            std::fs::remove_file(&path)
                .map_err(|err| format!("cannot replace `{}`: {err}", path.display()))?;
        }
        match (&e.hash, &e.link) {
            (Some(h), _) => {
                let content = std::fs::read(store.join("objects").join(h))
                    .map_err(|err| format!("cannot read the saved `{}`: {err}", e.path))?;
                write_atomic(&path, &content)?;
                if let Some(mode) = e.mode {
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                        .map_err(|err| format!("cannot set the mode of `{}`: {err}", e.path))?;
                }
            }
            (None, Some(target)) => std::os::unix::fs::symlink(target, &path)
                .map_err(|err| format!("cannot recreate the link `{}`: {err}", e.path))?,
            (None, None) => continue,
        }
        done.written += 1;
    }
    Ok(done)
}

fn write_atomic(path: &Path, content: &[u8]) -> Result<(), String> {
    let tmp = path.with_file_name(format!(
        ".{}.flowc-tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, content)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write `{}`: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn round_trip_with_created_deleted_and_changed_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("p");
        let store = dir.path().join("store");
        std::fs::create_dir_all(root.join("src/sub")).unwrap();
        std::fs::write(root.join("src/a.rs"), "fn a() {}\n").unwrap();
        std::fs::write(root.join("src/sub/b.rs"), "b").unwrap();
        std::fs::write(root.join("src/run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            root.join("src/run.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(root.join("README"), "not matched").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("src/etc")).unwrap();
        let taken = take(&store, &root, &["src/**".into()]).unwrap();
        assert_eq!(taken.entries, 4);

        // The step: edits, deletes, creates, changes a mode, swaps the link.
        std::fs::write(root.join("src/a.rs"), "broken").unwrap();
        std::fs::remove_file(root.join("src/sub/b.rs")).unwrap();
        std::fs::write(root.join("src/new.rs"), "new").unwrap();
        std::fs::write(root.join("src/sub/new2.rs"), "new").unwrap();
        std::fs::set_permissions(
            root.join("src/run.sh"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        std::fs::remove_file(root.join("src/etc")).unwrap();
        std::os::unix::fs::symlink("/tmp", root.join("src/etc")).unwrap();
        std::fs::write(root.join("README"), "changed, outside the globs").unwrap();

        let r = restore(&store, &taken.id).unwrap();
        assert_eq!(r.removed, 2);
        assert_eq!(
            std::fs::read_to_string(root.join("src/a.rs")).unwrap(),
            "fn a() {}\n"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("src/sub/b.rs")).unwrap(),
            "b"
        );
        assert!(!root.join("src/new.rs").exists());
        assert!(!root.join("src/sub/new2.rs").exists());
        let mode = std::fs::metadata(root.join("src/run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            std::fs::read_link(root.join("src/etc")).unwrap(),
            Path::new("/etc")
        );
        assert_eq!(
            std::fs::read_to_string(root.join("README")).unwrap(),
            "changed, outside the globs"
        );
        // Restoring again changes nothing.
        let again = restore(&store, &taken.id).unwrap();
        assert_eq!(again, Restored::default());
        // The same content is stored once, and the same tree gives the same id.
        let same = take(&store, &root, &["src/**".into()]).unwrap();
        assert_eq!(same.id, taken.id);
    }

    #[test]
    fn walks_start_at_the_literal_directories_of_the_globs() {
        let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            starts(&g(&["src/**", "src/a/*.rs", "tests/x.rs"])),
            ["src", "tests"]
        );
        assert_eq!(starts(&g(&["src/**", "*.toml"])), [""]);
        assert_eq!(starts(&g(&["a/{b,c}/*.rs", "d/e/**"])), ["a", "d/e"]);
        assert_eq!(starts(&g(&["./d/**"])), [""]);
    }

    #[test]
    fn symlinked_directories_are_never_entered_or_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("p");
        let outside = dir.path().join("outside");
        let store = dir.path().join("store");
        std::fs::create_dir_all(root.join("src/real")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("x.rs"), "outside").unwrap();
        std::fs::write(root.join("src/real/y.rs"), "y").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("src/out")).unwrap();
        let taken = take(&store, &root, &["src/**".into()]).unwrap();
        let m = manifest(&store, &taken.id).unwrap();
        let paths: Vec<&str> = m.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["src/out", "src/real/y.rs"]);
        // Replace the real directory by a link outside: restoring refuses.
        std::fs::remove_dir_all(root.join("src/real")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("src/real")).unwrap();
        let err = restore(&store, &taken.id).unwrap_err();
        assert!(err.contains("never followed"), "{err}");
        assert!(!outside.join("y.rs").exists());
        assert!(manifest(&store, "../x").is_err());
    }
}
