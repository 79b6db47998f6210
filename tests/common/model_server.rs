//! A local model server for tests: scripted HTTP answers, one per connection,
//! and a record of every request (head and JSON body).
#![allow(dead_code, clippy::unwrap_used)]

use serde_json::{Value as Json, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One scripted HTTP answer: status, extra headers, body.
pub struct Answer(pub u16, pub Vec<(&'static str, String)>, pub String);

pub fn chat(content: &str, tokens_in: u64, tokens_out: u64) -> Answer {
    let body = json!({
        "id": "x",
        "object": "chat.completion",
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": content }, "finish_reason": "stop" }],
        "usage": { "prompt_tokens": tokens_in, "completion_tokens": tokens_out },
    });
    Answer(200, vec![], body.to_string())
}

/// A request the server received: its head (lower-cased) and JSON body.
#[derive(Debug, Clone)]
pub struct Seen {
    pub head: String,
    pub body: Json,
    pub at: Instant,
}

impl Seen {
    pub fn user(&self) -> String {
        let msgs = self.body["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        msgs.iter()
            .filter(|m| m["role"] == "user")
            .filter_map(|m| m["content"].as_str())
            .collect()
    }
}

/// Serves `answers` in order, one per connection, and records each request.
pub fn serve(answers: Vec<Answer>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        let mut answers = answers.into_iter();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line.to_ascii_lowercase());
            }
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            log.lock().unwrap().push(Seen {
                head,
                body: serde_json::from_slice(&body).unwrap_or(Json::Null),
                at: Instant::now(),
            });
            let Answer(status, headers, text) = answers.next().unwrap_or(Answer(
                500,
                vec![],
                r#"{"error":{"message":"no scripted answer left"}}"#.into(),
            ));
            let mut reply = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                text.len()
            );
            for (k, v) in headers {
                reply.push_str(&format!("{k}: {v}\r\n"));
            }
            reply.push_str("\r\n");
            reply.push_str(&text);
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    (url, seen)
}
