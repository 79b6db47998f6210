//! The people file (`--people FILE`): each person's name, OS user, groups and token hash.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chacha20poly1305::aead::Generate;
use serde::Deserialize;
use std::path::Path;

/// One person who may decide.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Person {
    /// Their name, as `approvers` lists it.
    pub name: String,
    /// The OS user the CLI maps to this person.
    #[serde(default)]
    pub os_user: Option<String>,
    /// Their groups (`approvers` lists them as `group:NAME`).
    #[serde(default)]
    pub groups: Vec<String>,
    /// The blake3 hex hash of their token; the token itself is never stored.
    #[serde(default)]
    pub token_hash: Option<String>,
}

impl Person {
    /// Someone the people file does not list: known only by a name.
    pub fn unlisted(name: &str) -> Person {
        Person {
            name: name.to_string(),
            os_user: None,
            groups: Vec::new(),
            token_hash: None,
        }
    }

    /// Whether an `approvers` entry names this person or one of their groups.
    pub fn matches(&self, entry: &str) -> bool {
        match entry.strip_prefix("group:") {
            Some(group) => self.groups.iter().any(|g| g == group),
            None => entry == self.name,
        }
    }

    /// Whether `who` (a recorded name or OS user) is this person.
    pub fn is(&self, who: &str) -> bool {
        who == self.name || self.os_user.as_deref() == Some(who)
    }
}

/// The people file.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct People {
    /// Everyone listed.
    #[serde(default)]
    pub people: Vec<Person>,
    /// Where the key that signs `webhook(…)` notifications comes from:
    /// `env:NAME` or `secret:NAME` (never the key itself).
    #[serde(default)]
    pub notify_secret: Option<String>,
}

impl People {
    /// Reads the file; a missing file is an empty list.
    pub fn load(path: &Path) -> Result<People, String> {
        match std::fs::read_to_string(path) {
            Ok(text) if text.trim().is_empty() => Ok(People::default()),
            Ok(text) => serde_saphyr::from_str(&text)
                .map_err(|e| format!("the people file `{}` is not valid: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(People::default()),
            Err(e) => Err(format!("cannot read `{}`: {e}", path.display())),
        }
    }

    /// The person an OS user decides as: the one whose `os_user` (else `name`) it is.
    pub fn for_os_user(&self, user: &str) -> Person {
        self.people
            .iter()
            .find(|p| p.os_user.as_deref() == Some(user))
            .or_else(|| self.people.iter().find(|p| p.name == user))
            .cloned()
            .unwrap_or_else(|| Person::unlisted(user))
    }

    /// The person whose token hashes to `hash`, if any.
    pub fn by_token_hash(&self, hash: &str) -> Option<&Person> {
        self.people.iter().find(|p| {
            p.token_hash
                .as_deref()
                .is_some_and(|h| eq_constant_time(h, hash))
        })
    }

    /// The listed person of this name, or an unlisted one.
    pub fn named(&self, name: &str) -> Person {
        self.people
            .iter()
            .find(|p| p.name == name)
            .cloned()
            .unwrap_or_else(|| Person::unlisted(name))
    }

    /// The file's text (JSON strings are YAML double-quoted scalars).
    pub fn render(&self) -> String {
        let q = |s: &str| serde_json::Value::String(s.to_string()).to_string();
        let mut out = String::new();
        if let Some(n) = &self.notify_secret {
            out.push_str(&format!("notify_secret: {}\n", q(n)));
        }
        out.push_str("people:\n");
        for p in &self.people {
            out.push_str(&format!("  - name: {}\n", q(&p.name)));
            if let Some(u) = &p.os_user {
                out.push_str(&format!("    os_user: {}\n", q(u)));
            }
            let groups: Vec<String> = p.groups.iter().map(|g| q(g)).collect();
            out.push_str(&format!("    groups: [{}]\n", groups.join(", ")));
            if let Some(h) = &p.token_hash {
                out.push_str(&format!("    token_hash: {}\n", q(h)));
            }
        }
        out
    }
}

/// A fresh 256-bit token, base64url without padding.
pub fn new_token() -> Result<String, String> {
    let bytes =
        <[u8; 32]>::try_generate().map_err(|e| format!("no randomness for a token: {e}"))?;
    Ok(B64.encode(bytes))
}

/// The stored form of a token: its blake3 hash, hex.
pub fn token_hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

/// Compares two strings in time that depends only on their lengths.
pub fn eq_constant_time(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A people file that is read again when it changes (people are added while a service runs).
#[derive(Debug)]
pub struct PeopleFile {
    path: Option<std::path::PathBuf>,
    state: std::sync::Mutex<(Option<std::time::SystemTime>, std::sync::Arc<People>)>,
}

impl PeopleFile {
    /// The file at `path` (already read once as `people`), or none.
    pub fn new(path: Option<std::path::PathBuf>, people: People) -> PeopleFile {
        let mtime = path.as_deref().and_then(modified);
        PeopleFile {
            path,
            state: std::sync::Mutex::new((mtime, std::sync::Arc::new(people))),
        }
    }

    /// The people as the file says now; a file that no longer parses keeps the last good list.
    pub fn get(&self) -> std::sync::Arc<People> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(path) = &self.path {
            let now = modified(path);
            if now != state.0
                && let Ok(people) = People::load(path)
            {
                *state = (now, std::sync::Arc::new(people));
            }
        }
        state.1.clone()
    }
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
