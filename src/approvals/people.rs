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

    /// The file's text (JSON strings are YAML double-quoted scalars).
    pub fn render(&self) -> String {
        let q = |s: &str| serde_json::Value::String(s.to_string()).to_string();
        let mut out = String::from("people:\n");
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
