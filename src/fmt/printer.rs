//! Lays out a [`Doc`] at a width: each group flat if it fits, else broken (Lindig's strict printer).

use super::doc::Doc;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Flat,
    Break,
}

/// Prints `doc` within `width` columns. Lines never end in spaces: the
/// indentation after a newline is written only before the next text.
pub fn print(doc: &Doc, width: usize) -> String {
    let mut out = Out::default();
    let mut stack: Vec<(usize, Mode, &Doc)> = vec![(0, Mode::Break, doc)];
    while let Some((indent, mode, doc)) = stack.pop() {
        match doc {
            Doc::Nil | Doc::BreakParent => {}
            Doc::Text(s) => out.text(s),
            Doc::Raw(s) => out.raw(s),
            Doc::Line if mode == Mode::Flat => out.text(" "),
            Doc::SoftLine if mode == Mode::Flat => {}
            Doc::Line | Doc::SoftLine | Doc::HardLine => out.newline(indent),
            Doc::Nest(n, d) => stack.push((indent + n, mode, d)),
            Doc::Group(d) => {
                let left = width.saturating_sub(out.column) as isize;
                let flat = mode == Mode::Flat || fits(d, &stack, left);
                stack.push((indent, if flat { Mode::Flat } else { Mode::Break }, d));
            }
            Doc::IfBreak(broken, flat) => stack.push((
                indent,
                mode,
                if mode == Mode::Break { broken } else { flat },
            )),
            Doc::Concat(ds) => {
                for d in ds.iter().rev() {
                    stack.push((indent, mode, d));
                }
            }
        }
    }
    out.finish()
}

/// Whether `doc` printed flat, and what follows it up to the next line break
/// of a broken group, fits in `left` columns.
fn fits(doc: &Doc, rest: &[(usize, Mode, &Doc)], mut left: isize) -> bool {
    let mut local: Vec<(Mode, &Doc)> = vec![(Mode::Flat, doc)];
    let mut rest_at = rest.len();
    loop {
        if left < 0 {
            return false;
        }
        let (mode, doc) = match local.pop() {
            Some(next) => next,
            None if rest_at > 0 => {
                rest_at -= 1;
                let (_, mode, doc) = rest[rest_at];
                (mode, doc)
            }
            None => return true,
        };
        match doc {
            Doc::Nil => {}
            Doc::BreakParent if mode == Mode::Flat => return false,
            Doc::BreakParent => {}
            Doc::Text(s) => left -= width_of(s),
            Doc::Raw(s) => match s.find('\n') {
                Some(_) if mode == Mode::Flat => return false,
                Some(nl) => return left >= width_of(&s[..nl]),
                None => left -= width_of(s),
            },
            Doc::Line | Doc::SoftLine | Doc::HardLine if mode == Mode::Break => return true,
            Doc::HardLine => return false,
            Doc::Line => left -= 1,
            Doc::SoftLine => {}
            Doc::Nest(_, d) | Doc::Group(d) => local.push((mode, d)),
            Doc::IfBreak(broken, flat) => {
                local.push((mode, if mode == Mode::Break { broken } else { flat }))
            }
            Doc::Concat(ds) => {
                for d in ds.iter().rev() {
                    local.push((mode, d));
                }
            }
        }
    }
}

fn width_of(s: &str) -> isize {
    s.chars().count() as isize
}

#[derive(Default)]
struct Out {
    text: String,
    column: usize,
    /// Indentation owed by the last newline, written before the next text.
    pending: Option<usize>,
}

impl Out {
    fn text(&mut self, s: &str) {
        if s.is_empty() {
            return;
        }
        if let Some(indent) = self.pending.take() {
            self.text.extend(std::iter::repeat_n(' ', indent));
            self.column = indent;
        }
        self.text.push_str(s);
        self.column += s.chars().count();
    }

    fn raw(&mut self, s: &str) {
        match s.rfind('\n') {
            Some(nl) => {
                self.text(&s[..nl]);
                self.text.push_str(&s[nl..]);
                self.column = s[nl + 1..].chars().count();
            }
            None => self.text(s),
        }
    }

    fn newline(&mut self, indent: usize) {
        self.text.push('\n');
        self.column = 0;
        self.pending = Some(indent);
    }

    fn finish(mut self) -> String {
        while self.text.ends_with('\n') {
            self.text.pop();
        }
        self.text.push('\n');
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Doc {
        let inner = Doc::join(items.iter().map(|s| Doc::text(*s)), || {
            Doc::concat([Doc::text(","), Doc::Line])
        });
        Doc::concat([
            Doc::text("["),
            Doc::concat([Doc::SoftLine, inner, Doc::if_break(Doc::text(","))]).nest(),
            Doc::SoftLine,
            Doc::text("]"),
        ])
        .group()
    }

    #[test]
    fn a_group_is_flat_when_it_fits_and_broken_when_not() {
        assert_eq!(print(&list(&["a", "b"]), 20), "[a, b]\n");
        assert_eq!(
            print(&list(&["aaaa", "bbbb"]), 8),
            "[\n  aaaa,\n  bbbb,\n]\n"
        );
    }

    #[test]
    fn a_hard_line_breaks_the_group_and_blank_lines_have_no_spaces() {
        let d = Doc::concat([
            Doc::text("{"),
            Doc::concat([
                Doc::HardLine,
                Doc::text("a"),
                Doc::HardLine,
                Doc::HardLine,
                Doc::text("b"),
            ])
            .nest(),
            Doc::HardLine,
            Doc::text("}"),
        ])
        .group();
        assert_eq!(print(&d, 80), "{\n  a\n\n  b\n}\n");
    }

    #[test]
    fn raw_text_is_kept_and_breaks_its_group() {
        let d = Doc::concat([
            Doc::text("x:"),
            Doc::Line,
            Doc::Raw("\"\"\"\n a\n\"\"\"".into()),
        ])
        .group();
        assert_eq!(print(&d, 80), "x:\n\"\"\"\n a\n\"\"\"\n");
    }
}
