//! `flowc lsp`: a language server on stdio (diagnostics, hover, definition, completion, symbols, formatting).
//!
//! One thread handles every message in the order it arrives, so a
//! `didChange` is never applied out of order; a change older than the
//! document's version is dropped. Diagnostics are published once the
//! document has been quiet for [`DEBOUNCE`]; requests analyse at once.

mod analysis;
mod complete;
mod describe;
mod navigate;
mod position;
mod uri;

use analysis::{Analysis, analyze};
use lsp_server::{Connection, Message, Notification, Request, Response};
use lsp_types as lsp;
use lsp_types::notification::Notification as _;
use lsp_types::request::Request as _;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long a document must be left alone before it is checked again.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Serves one client on stdin/stdout until it says `exit`.
pub fn run() -> Result<(), String> {
    let (conn, io) = Connection::stdio();
    let caps = serde_json::to_value(capabilities()).map_err(|e| e.to_string())?;
    conn.initialize(caps).map_err(|e| e.to_string())?;
    let mut server = Server::default();
    server.serve(&conn)?;
    drop(conn);
    io.join().map_err(|e| e.to_string())
}

fn capabilities() -> lsp::ServerCapabilities {
    lsp::ServerCapabilities {
        text_document_sync: Some(lsp::TextDocumentSyncCapability::Kind(
            lsp::TextDocumentSyncKind::FULL,
        )),
        hover_provider: Some(lsp::HoverProviderCapability::Simple(true)),
        definition_provider: Some(lsp::OneOf::Left(true)),
        document_symbol_provider: Some(lsp::OneOf::Left(true)),
        document_formatting_provider: Some(lsp::OneOf::Left(true)),
        completion_provider: Some(lsp::CompletionOptions {
            trigger_characters: Some(vec![".".to_string()]),
            ..lsp::CompletionOptions::default()
        }),
        ..lsp::ServerCapabilities::default()
    }
}

/// One open document.
struct Document {
    uri: lsp::Uri,
    version: i32,
    text: String,
    /// When its diagnostics are due (`None`: published for this version).
    due: Option<Instant>,
    /// The analysis of this version, once made.
    analysis: Option<Analysis>,
}

#[derive(Default)]
struct Server {
    docs: HashMap<PathBuf, Document>,
}

impl Server {
    fn serve(&mut self, conn: &Connection) -> Result<(), String> {
        loop {
            let next_due = self.docs.values().filter_map(|d| d.due).min();
            let msg = match next_due {
                Some(due) => {
                    let wait = due.saturating_duration_since(Instant::now());
                    match conn.receiver.recv_timeout(wait) {
                        Ok(msg) => Some(msg),
                        Err(crossbeam_timeout) if crossbeam_timeout.is_timeout() => None,
                        Err(_) => return Ok(()),
                    }
                }
                None => match conn.receiver.recv() {
                    Ok(msg) => Some(msg),
                    Err(_) => return Ok(()),
                },
            };
            match msg {
                Some(Message::Request(req)) => {
                    if conn.handle_shutdown(&req).map_err(|e| e.to_string())? {
                        return Ok(());
                    }
                    let resp = self.request(req);
                    send(conn, resp.into());
                }
                Some(Message::Notification(n)) => self.notification(n),
                Some(Message::Response(_)) | None => {}
            }
            self.publish_due(conn);
        }
    }

    fn notification(&mut self, n: Notification) {
        use lsp::notification::{DidChangeTextDocument, DidCloseTextDocument, DidOpenTextDocument};
        match n.method.as_str() {
            DidOpenTextDocument::METHOD => {
                if let Ok(p) = serde_json::from_value::<lsp::DidOpenTextDocumentParams>(n.params) {
                    let d = p.text_document;
                    self.set(d.uri, d.version, d.text, true);
                }
            }
            DidChangeTextDocument::METHOD => {
                if let Ok(p) = serde_json::from_value::<lsp::DidChangeTextDocumentParams>(n.params)
                {
                    // Full sync: the last change holds the whole text.
                    if let Some(change) = p.content_changes.into_iter().last() {
                        let d = p.text_document;
                        self.set(d.uri, d.version, change.text, false);
                    }
                }
            }
            DidCloseTextDocument::METHOD => {
                if let Ok(p) = serde_json::from_value::<lsp::DidCloseTextDocumentParams>(n.params) {
                    self.docs.remove(&uri::to_path(&p.text_document.uri));
                }
            }
            _ => {}
        }
    }

    /// Stores a new version; an older one than what is stored is dropped.
    fn set(&mut self, uri: lsp::Uri, version: i32, text: String, open: bool) {
        let path = uri::to_path(&uri);
        if let Some(doc) = self.docs.get(&path) {
            if !open && version <= doc.version {
                return;
            }
        }
        let due = Some(if open {
            Instant::now()
        } else {
            Instant::now() + DEBOUNCE
        });
        // An open document that may import this one (it names the file) is
        // checked again too.
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        for other in self.docs.values_mut() {
            if name.as_deref().is_some_and(|n| other.text.contains(n)) {
                other.analysis = None;
                other.due = Some(Instant::now() + DEBOUNCE);
            }
        }
        let doc = Document {
            uri,
            version,
            text,
            due,
            analysis: None,
        };
        self.docs.insert(path, doc);
    }

    /// The analysis of the document at `uri`'s current version.
    fn analysis(&mut self, uri: &lsp::Uri) -> Option<&Analysis> {
        let path = uri::to_path(uri);
        if self.docs.get(&path)?.analysis.is_none() {
            let open: HashMap<PathBuf, String> = self
                .docs
                .iter()
                .filter(|(p, _)| **p != path)
                .map(|(p, d)| (crate::check::normalize(p), d.text.clone()))
                .collect();
            let text = self.docs.get(&path)?.text.clone();
            let result = std::panic::catch_unwind(|| analyze(&path, &text, &open)).ok()?;
            self.docs.get_mut(&path)?.analysis = Some(result);
        }
        self.docs.get(&path)?.analysis.as_ref()
    }

    fn publish_due(&mut self, conn: &Connection) {
        let now = Instant::now();
        let due: Vec<PathBuf> = self
            .docs
            .iter()
            .filter(|(_, d)| d.due.is_some_and(|t| t <= now))
            .map(|(p, _)| p.clone())
            .collect();
        for path in due {
            let Some(doc) = self.docs.get_mut(&path) else {
                continue;
            };
            doc.due = None;
            let (uri, version) = (doc.uri.clone(), doc.version);
            let diagnostics = self
                .analysis(&uri)
                .map(|a| a.diagnostics.clone())
                .unwrap_or_default();
            let params = lsp::PublishDiagnosticsParams {
                uri,
                diagnostics,
                version: Some(version),
            };
            let method = lsp::notification::PublishDiagnostics::METHOD.to_string();
            send(conn, Notification::new(method, params).into());
        }
    }

    fn request(&mut self, req: Request) -> Response {
        let id = req.id.clone();
        let known = capabilities_methods().contains(&req.method.as_str());
        match self.answer(req) {
            Ok(value) => Response::new_ok(id, value),
            Err(message) => {
                let code = if known {
                    lsp_server::ErrorCode::InvalidParams
                } else {
                    lsp_server::ErrorCode::MethodNotFound
                };
                Response::new_err(id, code as i32, message)
            }
        }
    }

    fn answer(&mut self, req: Request) -> Result<serde_json::Value, String> {
        use lsp::request::{
            Completion, DocumentSymbolRequest, Formatting, GotoDefinition, HoverRequest,
        };
        let json = |v: Result<serde_json::Value, serde_json::Error>| v.map_err(|e| e.to_string());
        match req.method.as_str() {
            HoverRequest::METHOD => {
                let p: lsp::HoverParams = params(req)?;
                let at = p.text_document_position_params;
                json(serde_json::to_value(self.at(&at, navigate::hover)))
            }
            GotoDefinition::METHOD => {
                let p: lsp::GotoDefinitionParams = params(req)?;
                let at = p.text_document_position_params;
                json(serde_json::to_value(self.at(&at, navigate::definition)))
            }
            Completion::METHOD => {
                let p: lsp::CompletionParams = params(req)?;
                let items = self.at(&p.text_document_position, |a, o| {
                    Some(complete::completion(a, o))
                });
                json(serde_json::to_value(items.unwrap_or_default()))
            }
            DocumentSymbolRequest::METHOD => {
                let p: lsp::DocumentSymbolParams = params(req)?;
                let symbols = self.analysis(&p.text_document.uri).map(navigate::symbols);
                json(serde_json::to_value(
                    symbols.map(lsp::DocumentSymbolResponse::Nested),
                ))
            }
            Formatting::METHOD => {
                let p: lsp::DocumentFormattingParams = params(req)?;
                json(serde_json::to_value(self.format(&p.text_document.uri)))
            }
            other => Err(format!("`{other}` is not supported")),
        }
    }

    fn at<T>(
        &mut self,
        at: &lsp::TextDocumentPositionParams,
        f: impl FnOnce(&Analysis, usize) -> Option<T>,
    ) -> Option<T> {
        let a = self.analysis(&at.text_document.uri)?;
        let offset = a.index.offset(&a.text, at.position);
        f(a, offset)
    }

    /// One edit replacing the whole document, or none when it is formatted
    /// already or does not parse (the editor then leaves it alone).
    fn format(&mut self, uri: &lsp::Uri) -> Option<Vec<lsp::TextEdit>> {
        let doc = self.docs.get(&uri::to_path(uri))?;
        let out = crate::fmt::format_source(&doc.text).ok()?;
        if out == doc.text {
            return Some(Vec::new());
        }
        let index = position::LineIndex::new(&doc.text);
        let end = index.position(&doc.text, doc.text.len());
        let range = lsp::Range::new(lsp::Position::new(0, 0), end);
        Some(vec![lsp::TextEdit::new(range, out)])
    }
}

/// The requests [`Server::answer`] handles.
fn capabilities_methods() -> [&'static str; 5] {
    use lsp::request::{
        Completion, DocumentSymbolRequest, Formatting, GotoDefinition, HoverRequest,
    };
    [
        HoverRequest::METHOD,
        GotoDefinition::METHOD,
        Completion::METHOD,
        DocumentSymbolRequest::METHOD,
        Formatting::METHOD,
    ]
}

fn params<P: serde::de::DeserializeOwned>(req: Request) -> Result<P, String> {
    serde_json::from_value(req.params).map_err(|e| format!("bad parameters: {e}"))
}

fn send(conn: &Connection, msg: Message) {
    // A closed channel means the client is gone; the loop ends on its own.
    let _ = conn.sender.send(msg);
}
