//! Secrets: the encrypted local store, `secret(NAME)` resolution, and the
//! redaction of every resolved value from what flowc writes or prints.
//!
//! The store is a JSON file (default `.flowc/secrets.json`) holding, per
//! name, an XChaCha20-Poly1305 ciphertext whose associated data is the name
//! (a value cannot be moved to another name). The key is derived with
//! Argon2id from a passphrase given in `FLOWC_SECRETS_KEY`, or read from the
//! file named by `FLOWC_SECRETS_KEY_FILE`, and the store's random salt.
//!
//! Architecture invariant: every secret value flowc resolves goes through
//! [`resolve`], which registers it with the process-wide redactor before
//! returning it; the scheduler redacts every event before it is journaled or
//! shown.

mod redact;

pub use redact::{redact, redact_bytes, redact_json, register};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Environment variable holding the store's passphrase.
pub const KEY_ENV: &str = "FLOWC_SECRETS_KEY";
/// Environment variable naming a file that holds the passphrase.
pub const KEY_FILE_ENV: &str = "FLOWC_SECRETS_KEY_FILE";
/// Environment variable naming the store file.
pub const STORE_ENV: &str = "FLOWC_SECRETS";

/// Argon2id cost: 19 MiB, 2 passes, 1 lane (OWASP's minimum recommendation).
const M_COST_KIB: u32 = 19 * 1024;
const T_COST: u32 = 2;

/// The store file as written.
#[derive(Debug, Serialize, Deserialize)]
struct File {
    version: u32,
    kdf: Kdf,
    secrets: BTreeMap<String, Sealed>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Kdf {
    alg: String,
    salt: String,
    m_cost: u32,
    t_cost: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Sealed {
    nonce: String,
    ciphertext: String,
}

/// An opened store.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    file: File,
}

/// The store path: `FLOWC_SECRETS`, else `.flowc/secrets.json`.
pub fn default_path() -> PathBuf {
    std::env::var_os(STORE_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".flowc/secrets.json"))
}

/// A valid secret name: what an environment variable may be called.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid secret name: use letters, digits and `_`, not starting with a digit"
        ))
    }
}

/// Variables of flowc's environment that hold secrets a run reads: kept
/// from every step's inherited environment (see `sandbox::env`).
static HIDDEN_VARS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Keeps the variable `name` from the environment steps inherit.
pub fn hide_var(name: &str) {
    let mut vars = HIDDEN_VARS.lock().unwrap_or_else(|p| p.into_inner());
    if !vars.iter().any(|v| v == name) {
        vars.push(name.to_string());
    }
}

/// The variables [`hide_var`] named.
pub fn hidden_vars() -> Vec<String> {
    HIDDEN_VARS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// Before a run starts: the store's passphrase (from the environment or the
/// key file) becomes a redaction target, and every variable a `secret()` or
/// a model key of `program` may read is kept from steps that do not name it.
pub fn guard_run(program: &crate::ir::Program) {
    // An unreadable key file is reported when a secret is needed, not here.
    let _ = passphrase();
    for skill in program.skills.values() {
        for node in &skill.nodes {
            if let Some(when) = &node.when {
                secret_names(&when.source).for_each(hide_var);
            }
            let crate::ir::NodeKind::Step(step) = &node.kind else {
                continue;
            };
            secret_names(&step.fingerprint).for_each(hide_var);
            let model = match &step.kind {
                crate::ir::StepKind::Llm(llm) => Some(&llm.model),
                crate::ir::StepKind::Agent(agent) => Some(&agent.model),
                _ => None,
            };
            if let Some(model) = model {
                match &model.api_key {
                    Some(crate::ir::SecretSource::Secret(n) | crate::ir::SecretSource::Env(n)) => {
                        hide_var(n)
                    }
                    None => {}
                }
            }
        }
    }
    for model in &program.models {
        if let Some(crate::ir::SecretSource::Secret(n) | crate::ir::SecretSource::Env(n)) =
            &model.api_key
        {
            hide_var(n);
        }
    }
}

/// The names in `secret("NAME")` calls of a definition's source text.
fn secret_names(source: &str) -> impl Iterator<Item = &str> {
    source.match_indices("secret(").filter_map(|(i, m)| {
        let rest = source[i + m.len()..].trim_start().strip_prefix('"')?;
        let name = &rest[..rest.find('"')?];
        check_name(name).ok().map(|()| name)
    })
}

/// The passphrase from the environment or the key file, registered for
/// redaction as soon as it is read (a step might print it).
fn passphrase() -> Result<Zeroizing<Vec<u8>>, String> {
    let pass = read_passphrase()?;
    if let Ok(text) = std::str::from_utf8(&pass) {
        register(text);
    }
    Ok(pass)
}

fn read_passphrase() -> Result<Zeroizing<Vec<u8>>, String> {
    if let Some(v) = std::env::var_os(KEY_ENV).filter(|v| !v.is_empty()) {
        return Ok(Zeroizing::new(v.into_encoded_bytes()));
    }
    if let Some(p) = std::env::var_os(KEY_FILE_ENV).filter(|v| !v.is_empty()) {
        let bytes = std::fs::read(&p).map_err(|e| {
            format!(
                "cannot read the secrets key file `{}` ({KEY_FILE_ENV}): {e}",
                Path::new(&p).display()
            )
        })?;
        let mut bytes = Zeroizing::new(bytes);
        // The whole file too: a step that reads it prints it with its newline.
        if let Ok(text) = std::str::from_utf8(&bytes) {
            register(text);
        }
        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            bytes.pop();
        }
        if bytes.is_empty() {
            return Err(format!(
                "the secrets key file `{}` is empty",
                Path::new(&p).display()
            ));
        }
        return Ok(bytes);
    }
    Err(format!(
        "the secret store needs a key: set {KEY_ENV} to a passphrase, or {KEY_FILE_ENV} to a file holding one"
    ))
}

impl Store {
    /// Opens the store at `path`; a missing file is an empty store.
    pub fn open(path: &Path) -> Result<Store, String> {
        let file = match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str::<File>(&text)
                .map_err(|e| format!("the secret store `{}` is not valid: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let salt = <[u8; 16]>::try_generate()
                    .map_err(|e| format!("no randomness for the store's salt: {e}"))?;
                File {
                    version: 1,
                    kdf: Kdf {
                        alg: "argon2id".into(),
                        salt: B64.encode(salt),
                        m_cost: M_COST_KIB,
                        t_cost: T_COST,
                    },
                    secrets: BTreeMap::new(),
                }
            }
            Err(e) => {
                return Err(format!(
                    "cannot read the secret store `{}`: {e}",
                    path.display()
                ));
            }
        };
        if file.version != 1 || file.kdf.alg != "argon2id" {
            return Err(format!(
                "the secret store `{}` has version {} ({}), which this flowc cannot read",
                path.display(),
                file.version,
                file.kdf.alg
            ));
        }
        Ok(Store {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Secret names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.file.secrets.keys().cloned().collect()
    }

    fn cipher(&self) -> Result<XChaCha20Poly1305, String> {
        // Argon2id is slow on purpose (tens of ms): derive each key once per
        // process, not once per `secret()` call of every step.
        static DERIVED: std::sync::Mutex<Vec<(String, XChaCha20Poly1305)>> =
            std::sync::Mutex::new(Vec::new());
        let pass = passphrase()?;
        let id = format!(
            "{}:{}:{}:{}",
            self.file.kdf.salt,
            self.file.kdf.m_cost,
            self.file.kdf.t_cost,
            blake3::hash(&pass).to_hex()
        );
        let mut derived = DERIVED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, c)) = derived.iter().find(|(k, _)| *k == id) {
            return Ok(c.clone());
        }
        let cipher = self.derive(&pass)?;
        derived.push((id, cipher.clone()));
        Ok(cipher)
    }

    fn derive(&self, pass: &[u8]) -> Result<XChaCha20Poly1305, String> {
        let salt = B64
            .decode(&self.file.kdf.salt)
            .map_err(|_| "the secret store's salt is damaged".to_string())?;
        let params = argon2::Params::new(self.file.kdf.m_cost, self.file.kdf.t_cost, 1, Some(32))
            .map_err(|e| format!("the secret store's key parameters are invalid: {e}"))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(pass, &salt, key.as_mut())
            .map_err(|e| format!("cannot derive the secret store's key: {e}"))?;
        let key = Key::try_from(key.as_slice())
            .map_err(|_| "the derived key has the wrong length".to_string())?;
        Ok(XChaCha20Poly1305::new(&key))
    }

    /// Reads one secret; `None` when the store has no such name.
    pub fn get(&self, name: &str) -> Result<Option<Zeroizing<String>>, String> {
        let Some(sealed) = self.file.secrets.get(name) else {
            return Ok(None);
        };
        let nonce = B64
            .decode(&sealed.nonce)
            .ok()
            .and_then(|n| XNonce::try_from(n.as_slice()).ok())
            .ok_or_else(|| format!("the secret `{name}` in the store is damaged"))?;
        let ct = B64
            .decode(&sealed.ciphertext)
            .map_err(|_| format!("the secret `{name}` in the store is damaged"))?;
        let plain = self
            .cipher()?
            .decrypt(
                &nonce,
                Payload {
                    msg: &ct,
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| {
                format!(
                    "cannot decrypt the secret `{name}`: wrong key ({KEY_ENV}/{KEY_FILE_ENV}) or a damaged store"
                )
            })?;
        let text = String::from_utf8(plain)
            .map_err(|_| format!("the secret `{name}` is not UTF-8 text"))?;
        Ok(Some(Zeroizing::new(text)))
    }

    /// Sets one secret and writes the store (atomically, mode 0600).
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        check_name(name)?;
        let cipher = self.cipher()?;
        // A store may only hold values under one key: check it opens the others.
        if let Some(other) = self.file.secrets.keys().next().cloned() {
            self.get(&other)?;
        }
        let nonce =
            XNonce::try_generate().map_err(|e| format!("no randomness for a nonce: {e}"))?;
        let ct = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: value.as_bytes(),
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| "encryption failed".to_string())?;
        self.file.secrets.insert(
            name.to_string(),
            Sealed {
                nonce: B64.encode(nonce),
                ciphertext: B64.encode(ct),
            },
        );
        self.save()
    }

    /// Removes one secret; false when there was none.
    pub fn remove(&mut self, name: &str) -> Result<bool, String> {
        if self.file.secrets.remove(name).is_none() {
            return Ok(false);
        }
        self.save().map(|()| true)
    }

    fn save(&self) -> Result<(), String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let shown = self.path.display();
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(&self.file).map_err(|e| e.to_string())?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| format!("cannot write the secret store `{shown}`: {e}"))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| format!("cannot write the secret store `{shown}`: {e}"))?;
        std::fs::rename(&tmp, &self.path)
            .map_err(|e| format!("cannot write the secret store `{shown}`: {e}"))
    }
}

/// `secret(NAME)`: the environment variable `NAME`, else the store. The
/// value is registered for redaction before it is returned.
pub fn resolve(name: &str) -> Result<String, String> {
    hide_var(name);
    if let Some(v) = std::env::var(name).ok().filter(|v| !v.is_empty()) {
        register(&v);
        return Ok(v);
    }
    let path = default_path();
    if !path.exists() {
        return Err(format!(
            "secret `{name}` is not set: neither the environment variable `{name}` nor the secret store `{}` (see `flowc secret set`)",
            path.display()
        ));
    }
    let store = Store::open(&path)?;
    match store.get(name)? {
        Some(v) => {
            register(&v);
            Ok(v.to_string())
        }
        None => Err(format!(
            "secret `{name}` is not set: neither the environment variable `{name}` nor in the secret store `{}`",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("OPENAI_API_KEY").is_ok());
        assert!(check_name("a1").is_ok());
        assert!(check_name("1a").is_err());
        assert!(check_name("a-b").is_err());
        assert!(check_name("").is_err());
    }
}
