//! The Postgres connection: its own thread (the driver blocks on a runtime of
//! its own), prepared statements, and the journal's SQL as Postgres takes it.

use super::value::Param;
use super::{DbError, Params};
use postgres::types::{ToSql, Type};
use std::collections::HashMap;
use std::sync::mpsc;

/// A Postgres connection, owned by a thread of its own: the driver blocks
/// on a runtime of its own, which must not happen on a thread that drives
/// the executor's (a runtime cannot start inside another). Each call sends
/// the statement there and waits for the rows.
pub struct Pg {
    jobs: std::cell::RefCell<mpsc::Sender<Job>>,
    /// Whether a transaction is open (a failed prepare must not abort it).
    pub(super) in_tx: std::cell::Cell<bool>,
    /// Where to connect again after the connection broke.
    url: String,
    /// The connection broke: the next call connects again first. The call
    /// that met the break fails (it may or may not have happened), so a
    /// run stops there and resumes; a service's next tick just goes on.
    broken: std::cell::Cell<bool>,
}

/// Rows and their column names.
pub(super) type Rows = (Vec<String>, Vec<postgres::Row>);

/// One call for the connection's thread, with where to send the answer.
pub(super) enum Job {
    Batch(String, mpsc::SyncSender<Result<(), postgres::Error>>),
    Execute(
        String,
        Vec<Param>,
        bool,
        mpsc::SyncSender<Result<u64, postgres::Error>>,
    ),
    Query(
        String,
        Vec<Param>,
        bool,
        mpsc::SyncSender<Result<Rows, postgres::Error>>,
    ),
}

/// Connects to a Postgres server at `url`, on a thread of the connection's own.
pub(super) fn connect(url: &str) -> Result<Pg, DbError> {
    let (plain_url, tls) = tls_options(url);
    let mut config: postgres::Config = plain_url.parse()?;
    if config.get_application_name().is_none() {
        config.application_name("flowc");
    }
    // As libpq does: a password kept out of the URL (and so out of
    // command lines and logs) comes from `PGPASSWORD`.
    if config.get_password().is_none()
        && let Some(pw) = std::env::var_os("PGPASSWORD")
    {
        config.password(pw.as_encoded_bytes());
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(10));
    }
    let (jobs, inbox) = mpsc::channel::<Job>();
    let (ready, connected) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("flowc-postgres".into())
        .spawn(move || {
            match tls_connector(&config, &tls).and_then(|t| match t {
                Some(t) => config.connect(t).map_err(DbError::from),
                None => config.connect(postgres::NoTls).map_err(DbError::from),
            }) {
                Ok(client) => {
                    let _ = ready.send(Ok(()));
                    serve_jobs(client, &inbox);
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                }
            }
        })
        .map_err(|e| {
            DbError::Value(format!(
                "cannot start the Postgres connection's thread: {e}"
            ))
        })?;
    match connected.recv() {
        Ok(Ok(())) => Ok(Pg {
            jobs: std::cell::RefCell::new(jobs),
            in_tx: std::cell::Cell::new(false),
            url: url.to_string(),
            broken: std::cell::Cell::new(false),
        }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(DbError::Lost),
    }
}

/// What the URL asks of TLS, beyond what the driver parses itself.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct TlsAsk {
    /// `sslmode=require` (or libpq's `verify-ca`/`verify-full`): TLS or nothing.
    pub(super) required: bool,
    /// `sslrootcert=PATH`: the CA certificates (PEM) to trust, beside the
    /// public roots.
    pub(super) root_cert: Option<std::path::PathBuf>,
}

/// `url` without the options the driver does not know (`sslrootcert`, and
/// libpq's `verify-ca`/`verify-full` spelled as `require`), and what they asked.
pub(super) fn tls_options(url: &str) -> (String, TlsAsk) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), TlsAsk::default());
    };
    let mut ask = TlsAsk::default();
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match (k, v) {
            ("sslrootcert", path) => {
                ask.root_cert = Some(std::path::PathBuf::from(percent_decode(path)))
            }
            ("sslmode", "require" | "verify-ca" | "verify-full") => {
                ask.required = true;
                kept.push("sslmode=require".to_string());
            }
            _ => kept.push(pair.to_string()),
        }
    }
    if ask.root_cert.is_some() && !ask.required && !kept.iter().any(|p| p.starts_with("sslmode=")) {
        // A CA given means TLS is wanted.
        ask.required = true;
        kept.push("sslmode=require".to_string());
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (url, ask)
}

fn percent_decode(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        let hex = tail.get(..2).and_then(|h| std::str::from_utf8(h).ok());
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(byte) if b == b'%' => {
                out.push(byte);
                rest = &tail[2..];
            }
            _ => {
                out.push(b);
                rest = tail;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The TLS connector when the URL asks for TLS: the server's certificate is
/// always verified (the public roots, and `sslrootcert`'s), stricter than
/// libpq's `require`. Without `sslmode=require` (or a CA), plain TCP or a
/// Unix socket, as before.
fn tls_connector(
    config: &postgres::Config,
    ask: &TlsAsk,
) -> Result<Option<tokio_postgres_rustls::MakeRustlsConnect>, DbError> {
    use postgres::config::SslMode;
    if !ask.required && config.get_ssl_mode() != SslMode::Require {
        return Ok(None);
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &ask.root_cert {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        let certs = CertificateDer::pem_file_iter(path).map_err(|e| {
            DbError::Value(format!(
                "cannot read `sslrootcert` `{}`: {e}",
                path.display()
            ))
        })?;
        for cert in certs {
            let cert = cert
                .map_err(|e| DbError::Value(format!("`sslrootcert` `{}`: {e}", path.display())))?;
            roots
                .add(cert)
                .map_err(|e| DbError::Value(format!("`sslrootcert` `{}`: {e}", path.display())))?;
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DbError::Value(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(tokio_postgres_rustls::MakeRustlsConnect::new(tls)))
}

/// The journal's SQL as Postgres takes it: `?N` (and bare `?`) placeholders
/// as `$N`, leaving string literals alone, and SQLite's join-order hint
/// `CROSS JOIN` as a plain `JOIN` (Postgres plans the order itself; every
/// `CROSS JOIN` in the journal's SQL has its `ON`).
pub fn postgres_sql(sql: &str) -> String {
    let sql = sql.replace(" CROSS JOIN ", " JOIN ");
    let sql = sql.as_str();
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut next = 1;
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                out.push(c);
            }
            (Some(_), c) => out.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                out.push(c);
            }
            (None, '?') => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                if digits.is_empty() {
                    digits = next.to_string();
                }
                next = digits.parse::<usize>().unwrap_or(next) + 1;
                out.push('$');
                out.push_str(&digits);
            }
            (None, c) => out.push(c),
        }
    }
    out
}

pub(super) fn pg_params(params: Params<'_>) -> Result<Vec<Param>, DbError> {
    params.iter().map(|p| Param::from_sqlite(*p)).collect()
}

pub(super) fn pg_refs(values: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

impl Pg {
    /// Sends a job to the connection's thread and waits for its answer.
    pub(super) fn call<T>(
        &self,
        job: impl FnOnce(mpsc::SyncSender<Result<T, postgres::Error>>) -> Job,
    ) -> Result<T, DbError> {
        if self.broken.get() {
            let fresh = connect(&self.url)?;
            *self.jobs.borrow_mut() = fresh.jobs.into_inner();
            self.in_tx.set(false);
            self.broken.set(false);
        }
        let (reply, answer) = mpsc::sync_channel(1);
        let sent = self.jobs.borrow().send(job(reply));
        let result = match sent {
            Ok(()) => answer
                .recv()
                .map_err(|_| DbError::Lost)
                .and_then(|r| r.map_err(DbError::from)),
            Err(_) => Err(DbError::Lost),
        };
        if result.as_ref().is_err_and(DbError::is_connection) {
            self.broken.set(true);
        }
        result
    }
}

/// The connection's thread: runs jobs until the [`Pg`] is dropped, each
/// statement prepared once.
fn serve_jobs(mut client: postgres::Client, inbox: &mpsc::Receiver<Job>) {
    let mut statements = Statements::default();
    while let Ok(job) = inbox.recv() {
        match job {
            Job::Batch(sql, reply) => {
                let _ = reply.send(client.batch_execute(&sql));
            }
            Job::Execute(sql, values, in_tx, reply) => {
                let refs = pg_refs(&values);
                let r = statements
                    .get(&mut client, &sql, &values, in_tx)
                    .and_then(|stmt| client.execute(&stmt, &refs));
                let _ = reply.send(r);
            }
            Job::Query(sql, values, in_tx, reply) => {
                let refs = pg_refs(&values);
                let r = statements
                    .get(&mut client, &sql, &values, in_tx)
                    .and_then(|stmt| {
                        let cols = stmt
                            .columns()
                            .iter()
                            .map(|c| c.name().to_string())
                            .collect();
                        client.query(&stmt, &refs).map(|rows| (cols, rows))
                    });
                let _ = reply.send(r);
            }
        }
    }
}

/// Prepared statements of one connection. Postgres infers each parameter's
/// type from where it stands; where it cannot (`?1 IS NULL OR skill = ?1`
/// gives the same parameter two types), the statement is prepared again
/// with the types of the values bound, once per combination of them.
#[derive(Default)]
struct Statements {
    inferred: HashMap<String, postgres::Statement>,
    typed: HashMap<(String, Vec<Type>), postgres::Statement>,
    needs_types: std::collections::HashSet<String>,
}

impl Statements {
    fn get(
        &mut self,
        client: &mut postgres::Client,
        sql: &str,
        values: &[Param],
        in_tx: bool,
    ) -> Result<postgres::Statement, postgres::Error> {
        if !self.needs_types.contains(sql) {
            if let Some(s) = self.inferred.get(sql) {
                return Ok(s.clone());
            }
            // Inside a transaction a failed prepare would abort it: try
            // under a savepoint, given back either way.
            if in_tx {
                client.batch_execute("SAVEPOINT flowc_prepare")?;
            }
            let tried = client.prepare(&postgres_sql(sql));
            if in_tx {
                client.batch_execute(if tried.is_ok() {
                    "RELEASE SAVEPOINT flowc_prepare"
                } else {
                    "ROLLBACK TO SAVEPOINT flowc_prepare; RELEASE SAVEPOINT flowc_prepare"
                })?;
            }
            match tried {
                Ok(stmt) => {
                    self.inferred.insert(sql.to_string(), stmt.clone());
                    return Ok(stmt);
                }
                Err(e)
                    if !e.as_db_error().is_some_and(|d| {
                        matches!(d.code().code(), "42P18" | "42P08" | "42804" | "42883")
                    }) =>
                {
                    return Err(e);
                }
                Err(_) => {
                    self.needs_types.insert(sql.to_string());
                }
            }
        }
        let types: Vec<Type> = values.iter().map(Param::natural_type).collect();
        let key = (sql.to_string(), types);
        if let Some(s) = self.typed.get(&key) {
            return Ok(s.clone());
        }
        let stmt = client.prepare_typed(&postgres_sql(sql), &key.1)?;
        self.typed.insert(key, stmt.clone());
        Ok(stmt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_options_are_taken_out_of_the_url() {
        let (url, ask) = tls_options(
            "postgres://u@h/db?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&application_name=x",
        );
        assert_eq!(url, "postgres://u@h/db?sslmode=require&application_name=x");
        assert!(ask.required);
        assert_eq!(
            ask.root_cert.as_deref(),
            Some(std::path::Path::new("/tmp/ca.pem"))
        );
        let (url, ask) = tls_options("postgres://u@h/db");
        assert_eq!(
            (url.as_str(), ask),
            ("postgres://u@h/db", TlsAsk::default())
        );
        let (url, ask) = tls_options("postgres://u@h/db?sslrootcert=/ca.pem");
        assert_eq!(url, "postgres://u@h/db?sslmode=require");
        assert!(ask.required);
    }

    #[test]
    fn placeholders_become_dollars_outside_literals() {
        assert_eq!(
            postgres_sql("SELECT a FROM t WHERE b = ?1 AND c = '?2' AND d = ?2"),
            "SELECT a FROM t WHERE b = $1 AND c = '?2' AND d = $2"
        );
        assert_eq!(postgres_sql("VALUES (?, ?)"), "VALUES ($1, $2)");
        assert_eq!(
            postgres_sql("x LIKE ?2 ESCAPE '\\'"),
            "x LIKE $2 ESCAPE '\\'"
        );
    }
}
