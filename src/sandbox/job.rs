//! A request made ready to exec: argv, environment and the paths to try as C
//! strings, rlimits and the Landlock ruleset, built by the spawner before a
//! clone or by a ready namespace init once its job has come (`pool.rs`).

use super::spawn::{STAGE_LANDLOCK, ruleset, staged_raw};
use super::spawner::{LandlockSpec, Request};
use landlock::RulesetCreated;
use nix::errno::Errno;
use nix::sys::resource::Resource;
use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

/// The parts of a request the child execs with (environment entries are
/// `NAME=value` with the length of the name).
pub(super) struct Job {
    pub argv: Vec<CString>,
    pub overrides: Vec<(usize, CString)>,
    pub candidates: Vec<CString>,
    pub cwd: Option<CString>,
    pub rlimits: Vec<(Resource, u64, u64)>,
}

impl Job {
    /// Builds the job of `req` over the environment `base` (what flowc had
    /// when it forked the spawner); errors are raw errnos.
    pub(super) fn new(req: &Request, base: &[(usize, CString)]) -> Result<Job, i32> {
        let argv = cstrings(req.argv.iter().map(|s| s.as_bytes()))?;
        let Some(program) = req.argv.first() else {
            return Err(Errno::ENOENT as i32);
        };
        let overrides = overrides(&req.env)?;
        let candidates = candidates(program, &environment(base, &overrides, &req.unset), req)?;
        let cwd = match &req.cwd {
            Some(c) => Some(CString::new(c.as_bytes()).map_err(|_| Errno::EINVAL as i32)?),
            None => None,
        };
        Ok(Job {
            argv,
            overrides,
            candidates,
            cwd,
            rlimits: req.rlimits(),
        })
    }
}

/// The key under which a Landlock ruleset is cached.
/// The cache key of the ruleset for `spec`: the spec and the device and
/// inode of each path it names. A ruleset holds the directories it was
/// built from, so a path renamed away and made anew needs a new one.
pub(super) fn ruleset_key(spec: &LandlockSpec) -> String {
    let paths = spec.fs.iter().flat_map(|fs| {
        fs.writable
            .iter()
            .flatten()
            .chain(fs.readable.iter().flatten())
    });
    let ids: Vec<Option<(u64, u64)>> = paths
        .map(|p| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino())))
        .collect();
    serde_json::to_string(&(spec, ids)).unwrap_or_default()
}

/// A copy of the ruleset for `spec` from `cache`, or one built now; a raw
/// staged errno when neither works.
pub(super) fn landlock(
    cache: &HashMap<String, RulesetCreated>,
    spec: &LandlockSpec,
) -> Result<RulesetCreated, i32> {
    match cache.get(&ruleset_key(spec)) {
        Some(shared) => shared
            .try_clone()
            .map_err(|e| e.raw_os_error().unwrap_or(0)),
        None => ruleset(spec.fs.as_ref(), spec.net)
            .map_err(|_| staged_raw(STAGE_LANDLOCK, Errno::EINVAL as i32)),
    }
}

/// The step's variables (the last of each name), as `NAME=value`.
fn overrides(set: &[(String, String)]) -> Result<Vec<(usize, CString)>, i32> {
    set.iter()
        .enumerate()
        .filter(|(i, (k, _))| !set[i + 1..].iter().any(|(later, _)| later == k))
        .map(|(_, (k, v))| {
            let entry = [k.as_bytes(), b"=", v.as_bytes()].concat();
            CString::new(entry)
                .map(|c| (k.len(), c))
                .map_err(|_| Errno::EINVAL as i32)
        })
        .collect()
}

/// `base` without `unset`, with `overrides` set over it.
pub(super) fn environment<'a>(
    base: &'a [(usize, CString)],
    overrides: &'a [(usize, CString)],
    unset: &[String],
) -> Vec<&'a CStr> {
    fn name((len, entry): &(usize, CString)) -> &[u8] {
        &entry.as_bytes()[..*len]
    }
    base.iter()
        .filter(|kv| !overrides.iter().any(|o| name(o) == name(kv)))
        .filter(|kv| !unset.iter().any(|u| u.as_bytes() == name(kv)))
        .chain(overrides)
        .map(|(_, entry)| entry.as_c_str())
        .collect()
}

pub(super) fn cstrings<'a>(items: impl Iterator<Item = &'a [u8]>) -> Result<Vec<CString>, i32> {
    items
        .map(|b| CString::new(b).map_err(|_| Errno::EINVAL as i32))
        .collect()
}

/// The paths `execve` tries, in `PATH` order like `execvp`; absolute
/// directories without the program are left out here rather than tried.
fn candidates(program: &str, env: &[&CStr], req: &Request) -> Result<Vec<CString>, i32> {
    if program.contains('/') {
        return cstrings(std::iter::once(program.as_bytes()));
    }
    let path = env
        .iter()
        .find_map(|kv| kv.to_bytes().strip_prefix(b"PATH="))
        .unwrap_or(b"/bin:/usr/bin");
    let mut out = Vec::new();
    for dir in path.split(|&b| b == b':') {
        let dir = if dir.is_empty() { b"." as &[u8] } else { dir };
        let full = [dir, b"/", program.as_bytes()].concat();
        if dir.starts_with(b"/") {
            if !std::path::Path::new(OsStr::from_bytes(&full)).is_file() {
                continue;
            }
        } else if req.cwd.is_none() && !std::path::Path::new(OsStr::from_bytes(&full)).exists() {
            continue;
        }
        out.push(CString::new(full).map_err(|_| Errno::EINVAL as i32)?);
    }
    if out.is_empty() {
        return Err(Errno::ENOENT as i32);
    }
    Ok(out)
}
