//! A POSIX shell parser for the subset that decides which programs run:
//! words and quoting, expansions, control operators, redirections and
//! here-documents, compound commands and function definitions. It yields
//! simple commands (to `resolve`), not a tree; what it cannot follow is an
//! `Err(why)`, which makes the view opaque.

use super::{View, resolve};

/// Deeper nesting of `$(…)`, backquotes and `sh -c` than this is opaque.
pub(crate) const MAX_DEPTH: usize = 16;

/// One shell word after quote removal.
#[derive(Debug, Clone, Default)]
pub(crate) struct Word {
    /// The text with quotes removed; expansions stay as written.
    pub text: String,
    /// Contains a parameter expansion or a command substitution.
    pub dynamic: bool,
    /// Contains an unquoted glob or brace character (`*`, `?`, `[`, `{`).
    pub glob: bool,
    /// Contains a quote or an escape (so it is never a reserved word).
    pub quoted: bool,
    /// Starts with `NAME=` or `NAME+=` unquoted.
    pub assignment: bool,
}

impl Word {
    /// A word that is exactly `text` (an argv element).
    pub fn literal(text: &str) -> Word {
        Word {
            text: text.to_string(),
            quoted: true,
            ..Word::default()
        }
    }

    /// Its text is known before the command runs.
    pub fn is_static(&self) -> bool {
        !self.dynamic && !self.glob
    }

    fn is_plain(&self, text: &str) -> bool {
        !self.quoted && self.is_static() && self.text == text
    }

    fn is_reserved(&self) -> bool {
        const RESERVED: &[&str] = &[
            "if", "then", "else", "elif", "fi", "do", "done", "while", "until", "for", "select",
            "case", "esac", "function", "{", "}", "!", "time",
        ];
        !self.quoted && self.is_static() && RESERVED.contains(&self.text.as_str())
    }
}

/// Parses `text` and adds its commands to `view` (opaque on anything it cannot follow).
pub(crate) fn script(text: &str, depth: usize, view: &mut View) {
    if depth > MAX_DEPTH {
        view.set_opaque("commands nested too deeply");
        return;
    }
    let mut p = Parser {
        s: text.chars().collect(),
        i: 0,
        depth,
        view,
        heredocs: Vec::new(),
    };
    if let Err(why) = p.list(false) {
        p.view.set_opaque(why);
    }
}

#[derive(Debug)]
enum Tok {
    Word(Word),
    Op(&'static str),
    Newline,
    IoNumber,
    Eof,
}

#[derive(Clone, Copy, PartialEq)]
enum Case {
    /// `case WORD` before `in`.
    Header,
    /// Patterns up to `)`.
    Pattern,
    /// Commands up to `;;`.
    Body,
}

struct Heredoc {
    delim: String,
    quoted: bool,
    strip_tabs: bool,
}

struct Parser<'v> {
    s: Vec<char>,
    i: usize,
    depth: usize,
    view: &'v mut View,
    heredocs: Vec<Heredoc>,
}

type Parsed<T> = Result<T, String>;

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }

    fn peek_at(&self, k: usize) -> Option<char> {
        self.s.get(self.i + k).copied()
    }

    /// A list of commands, up to the end or (when `close`) an unmatched `)`.
    fn list(&mut self, close: bool) -> Parsed<()> {
        let mut cmd: Vec<Word> = Vec::new();
        let mut parens = 0usize;
        let mut cases: Vec<Case> = Vec::new();
        // After `for`/`select`: the loop variable and its words, up to `;` or a newline.
        let mut loop_header = false;
        // After `function`: the function's name.
        let mut function_name = false;
        loop {
            let tok = self.token()?;
            if let Some(state) = cases.last_mut() {
                match (*state, &tok) {
                    (Case::Header, Tok::Word(w)) => {
                        if w.is_plain("in") {
                            *state = Case::Pattern;
                        }
                        continue;
                    }
                    (Case::Pattern, Tok::Word(w)) if w.is_plain("esac") => {
                        cases.pop();
                        continue;
                    }
                    (Case::Header | Case::Pattern, Tok::Newline)
                    | (Case::Pattern, Tok::Word(_) | Tok::Op("|" | "(")) => continue,
                    (Case::Pattern, Tok::Op(")")) => {
                        *state = Case::Body;
                        continue;
                    }
                    (Case::Header | Case::Pattern, _) => {
                        return Err("a `case` flowc cannot follow".into());
                    }
                    (Case::Body, Tok::Op(";;" | ";&" | ";;&")) => {
                        self.finish(&mut cmd);
                        *state = Case::Pattern;
                        continue;
                    }
                    (Case::Body, Tok::Word(w)) if cmd.is_empty() && w.is_plain("esac") => {
                        cases.pop();
                        continue;
                    }
                    (Case::Body, _) => {}
                }
            }
            match tok {
                Tok::Eof => {
                    self.finish(&mut cmd);
                    if close {
                        return Err("an unterminated `$(`".into());
                    }
                    if !cases.is_empty() {
                        return Err("an unterminated `case`".into());
                    }
                    return Ok(());
                }
                Tok::Newline
                | Tok::Op(";" | "&" | "&&" | "||" | "|" | "|&" | ";;" | ";&" | ";;&") => {
                    loop_header = false;
                    self.finish(&mut cmd);
                }
                Tok::Op("(") => {
                    if cmd.len() == 1 && self.eat_close_paren() {
                        // `name() { …; }`: the body's commands are listed where they are written.
                        cmd.clear();
                        continue;
                    }
                    self.finish(&mut cmd);
                    parens += 1;
                }
                Tok::Op(")") => {
                    self.finish(&mut cmd);
                    if parens > 0 {
                        parens -= 1;
                    } else if close {
                        return Ok(());
                    } else {
                        return Err("an unmatched `)`".into());
                    }
                }
                Tok::Op(op) => {
                    let Tok::Word(target) = self.token()? else {
                        return Err(format!("`{op}` without a target"));
                    };
                    if op == "<<" || op == "<<-" {
                        self.heredocs.push(Heredoc {
                            delim: target.text,
                            quoted: target.quoted,
                            strip_tabs: op == "<<-",
                        });
                    }
                }
                Tok::IoNumber => {}
                Tok::Word(w) => {
                    if loop_header {
                        continue;
                    }
                    if function_name {
                        function_name = false;
                        continue;
                    }
                    if cmd.is_empty() && w.is_reserved() {
                        match w.text.as_str() {
                            "for" | "select" => loop_header = true,
                            "case" => cases.push(Case::Header),
                            "function" => function_name = true,
                            _ => {}
                        }
                        continue;
                    }
                    cmd.push(w);
                }
            }
        }
    }

    fn finish(&mut self, cmd: &mut Vec<Word>) {
        if !cmd.is_empty() {
            resolve::command(cmd, self.depth, self.view, false);
            cmd.clear();
        }
    }

    fn eat_close_paren(&mut self) -> bool {
        self.skip_blanks();
        if self.peek() == Some(')') {
            self.i += 1;
            return true;
        }
        false
    }

    fn skip_blanks(&mut self) {
        loop {
            match self.peek() {
                Some(' ' | '\t' | '\r') => self.i += 1,
                Some('\\') if self.peek_at(1) == Some('\n') => self.i += 2,
                Some('#') => {
                    while self.peek().is_some_and(|c| c != '\n') {
                        self.i += 1;
                    }
                }
                _ => return,
            }
        }
    }

    fn op(&mut self, candidates: &[&'static str]) -> Tok {
        for op in candidates {
            let n = op.chars().count();
            if self.s[self.i..].iter().take(n).copied().eq(op.chars()) {
                self.i += n;
                return Tok::Op(op);
            }
        }
        // The last candidate is the one character already seen.
        self.i += 1;
        Tok::Op(candidates[candidates.len() - 1])
    }

    fn token(&mut self) -> Parsed<Tok> {
        self.skip_blanks();
        let Some(c) = self.peek() else {
            return Ok(Tok::Eof);
        };
        Ok(match c {
            '\n' => {
                self.i += 1;
                self.heredoc_bodies()?;
                Tok::Newline
            }
            ';' => self.op(&[";;&", ";;", ";&", ";"]),
            '&' => self.op(&["&&", "&>>", "&>", "&"]),
            '|' => self.op(&["||", "|&", "|"]),
            '(' => self.op(&["("]),
            ')' => self.op(&[")"]),
            '<' | '>' if self.peek_at(1) == Some('(') => {
                // Process substitution: its commands run.
                let start = self.i;
                self.i += 2;
                self.nested()?;
                Tok::Word(Word {
                    text: self.s[start..self.i].iter().collect(),
                    dynamic: true,
                    ..Word::default()
                })
            }
            '<' => self.op(&["<<<", "<<-", "<<", "<&", "<>", "<"]),
            '>' => self.op(&[">>", ">&", ">|", ">"]),
            _ => self.word()?,
        })
    }

    fn word(&mut self) -> Parsed<Tok> {
        let mut w = Word::default();
        // Only unquoted literal characters so far (so `NAME=` is an assignment).
        let mut literal = true;
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\r' | '\n' | ';' | '&' | '|' | '(' | ')' | '<' | '>' => break,
                '\\' => {
                    self.i += 1;
                    match self.peek() {
                        Some('\n') => self.i += 1,
                        Some(c) => {
                            w.text.push(c);
                            self.i += 1;
                        }
                        None => w.text.push('\\'),
                    }
                    w.quoted = true;
                    literal = false;
                }
                '\'' => {
                    self.i += 1;
                    loop {
                        match self.peek() {
                            None => return Err("an unterminated `'`".into()),
                            Some('\'') => break,
                            Some(c) => w.text.push(c),
                        }
                        self.i += 1;
                    }
                    self.i += 1;
                    w.quoted = true;
                    literal = false;
                }
                '"' => {
                    self.i += 1;
                    self.double_quoted(&mut w)?;
                    literal = false;
                }
                '$' => {
                    self.dollar(&mut w, false)?;
                    literal = false;
                }
                '`' => {
                    self.backquote(&mut w)?;
                    literal = false;
                }
                '*' | '?' | '[' | '{' | '}' => {
                    w.glob = true;
                    w.text.push(c);
                    self.i += 1;
                }
                '=' if literal && !w.assignment => {
                    let name = w.text.strip_suffix('+').unwrap_or(&w.text);
                    w.assignment = is_name(name);
                    w.text.push(c);
                    self.i += 1;
                    literal = false;
                }
                c => {
                    w.text.push(c);
                    self.i += 1;
                }
            }
        }
        // `[ -f x ]`, `{ …; }`: these are commands and reserved words, not patterns.
        if matches!(w.text.as_str(), "[" | "]" | "[[" | "]]" | "{" | "}") {
            w.glob = false;
        }
        let digits = !w.text.is_empty() && w.text.chars().all(|c| c.is_ascii_digit());
        if digits && !w.quoted && !w.dynamic && matches!(self.peek(), Some('<' | '>')) {
            return Ok(Tok::IoNumber);
        }
        Ok(Tok::Word(w))
    }

    fn double_quoted(&mut self, w: &mut Word) -> Parsed<()> {
        w.quoted = true;
        loop {
            let Some(c) = self.peek() else {
                return Err("an unterminated `\"`".into());
            };
            match c {
                '"' => {
                    self.i += 1;
                    return Ok(());
                }
                '\\' => match self.peek_at(1) {
                    Some(d @ ('$' | '`' | '"' | '\\')) => {
                        w.text.push(d);
                        self.i += 2;
                    }
                    Some('\n') => self.i += 2,
                    _ => {
                        w.text.push('\\');
                        self.i += 1;
                    }
                },
                '$' => self.dollar(w, true)?,
                '`' => self.backquote(w)?,
                c => {
                    w.text.push(c);
                    self.i += 1;
                }
            }
        }
    }

    /// An expansion starting at `$`; its text goes into `w` as written.
    fn dollar(&mut self, w: &mut Word, in_double_quotes: bool) -> Parsed<()> {
        let start = self.i;
        match self.peek_at(1) {
            Some('(') if self.peek_at(2) == Some('(') => {
                self.i += 3;
                self.arithmetic()?;
            }
            Some('(') => {
                self.i += 2;
                self.nested()?;
            }
            Some('{') => {
                self.i += 2;
                self.braced()?;
            }
            Some('\'') if !in_double_quotes => {
                // `$'…'`: its escapes are not decoded, so it is not a static word.
                self.i += 2;
                loop {
                    match self.peek() {
                        None => return Err("an unterminated `$'`".into()),
                        Some('\\') => self.i += 2,
                        Some('\'') => break,
                        Some(_) => self.i += 1,
                    }
                }
                self.i += 1;
            }
            Some('"') if !in_double_quotes => {
                // `$"…"` is a double-quoted string.
                self.i += 1;
                return Ok(());
            }
            Some(c) if c.is_ascii_digit() => self.i += 2,
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                self.i += 1;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    self.i += 1;
                }
            }
            Some('@' | '*' | '#' | '?' | '-' | '$' | '!') => self.i += 2,
            _ => {
                w.text.push('$');
                self.i += 1;
                return Ok(());
            }
        }
        w.dynamic = true;
        w.text.extend(&self.s[start..self.i.min(self.s.len())]);
        Ok(())
    }

    /// The commands of `$(…)` or `<(…)`, up to its `)`.
    fn nested(&mut self) -> Parsed<()> {
        if self.depth >= MAX_DEPTH {
            return Err("commands nested too deeply".into());
        }
        self.depth += 1;
        let r = self.list(true);
        self.depth -= 1;
        r
    }

    /// `$(( … ))`, after `$((`.
    fn arithmetic(&mut self) -> Parsed<()> {
        let mut open = 2usize;
        while open > 0 {
            match self.peek() {
                None => return Err("an unterminated `$((`".into()),
                Some('(') => open += 1,
                Some(')') => open -= 1,
                Some('$') if self.peek_at(1) == Some('(') => {
                    return Err("a command substitution inside `$((…))`".into());
                }
                Some('`') => return Err("a command substitution inside `$((…))`".into()),
                Some(_) => {}
            }
            self.i += 1;
        }
        Ok(())
    }

    /// `${…}`, after `${`; substitutions inside it are parsed.
    fn braced(&mut self) -> Parsed<()> {
        let mut inner = Word::default();
        loop {
            match self.peek() {
                None => return Err("an unterminated `${`".into()),
                Some('}') => {
                    self.i += 1;
                    return Ok(());
                }
                Some('\\') => self.i += 2,
                Some('\'') => {
                    self.i += 1;
                    while self.peek().is_some_and(|c| c != '\'') {
                        self.i += 1;
                    }
                    if self.peek().is_none() {
                        return Err("an unterminated `'`".into());
                    }
                    self.i += 1;
                }
                Some('"') => {
                    self.i += 1;
                    self.double_quoted(&mut inner)?;
                }
                Some('$') => self.dollar(&mut inner, true)?,
                Some('`') => self.backquote(&mut inner)?,
                Some(_) => self.i += 1,
            }
        }
    }

    /// `` `…` ``: its text, unescaped, is parsed as a script of its own.
    fn backquote(&mut self, w: &mut Word) -> Parsed<()> {
        let start = self.i;
        self.i += 1;
        let mut body = String::new();
        loop {
            match self.peek() {
                None => return Err("an unterminated backquote".into()),
                Some('`') => break,
                Some('\\') if matches!(self.peek_at(1), Some('`' | '\\' | '$')) => {
                    body.push(self.s[self.i + 1]);
                    self.i += 2;
                }
                Some(c) => {
                    body.push(c);
                    self.i += 1;
                }
            }
        }
        self.i += 1;
        script(&body, self.depth + 1, self.view);
        w.dynamic = true;
        w.text.extend(&self.s[start..self.i]);
        Ok(())
    }

    /// The bodies of the here-documents announced on the line just ended.
    fn heredoc_bodies(&mut self) -> Parsed<()> {
        for doc in std::mem::take(&mut self.heredocs) {
            let mut body = String::new();
            while self.i < self.s.len() {
                let end = self.s[self.i..]
                    .iter()
                    .position(|&c| c == '\n')
                    .map_or(self.s.len(), |n| self.i + n);
                let line: String = self.s[self.i..end].iter().collect();
                self.i = (end + 1).min(self.s.len());
                let line = if doc.strip_tabs {
                    line.trim_start_matches('\t').to_string()
                } else {
                    line
                };
                if line == doc.delim {
                    break;
                }
                body.push_str(&line);
                body.push('\n');
            }
            if !doc.quoted && (body.contains("$(") || body.contains('`')) {
                return Err("a command substitution inside a here-document".into());
            }
        }
        Ok(())
    }
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
