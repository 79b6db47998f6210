//! Stable diagnostic codes. A code never changes meaning once released.

macro_rules! codes {
    ($($code:ident => $title:literal,)*) => {
        /// A stable diagnostic code (`E0301`, `W0001`, ...).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code {
            $(
                #[doc = $title]
                $code,
            )*
        }

        impl Code {
            /// Every code, in order.
            pub const ALL: &'static [Code] = &[$(Code::$code,)*];

            /// The code as written (`E0301`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$code => stringify!($code),)*
                }
            }

            /// A short title for lists and docs.
            pub fn title(self) -> &'static str {
                match self {
                    $(Code::$code => $title,)*
                }
            }
        }
    };
}

codes! {
    E0101 => "file is not valid UTF-8",
    E0102 => "syntax error",
    E0103 => "unterminated string",
    E0104 => "invalid escape sequence",
    E0105 => "nesting too deep",
    E0106 => "invalid number, duration or size",
    E0107 => "unbalanced delimiter",
    E0108 => "reserved word used as a name",
    E0201 => "unknown name",
    E0202 => "duplicate item",
    E0203 => "duplicate step or block name",
    E0204 => "imported file not found",
    E0205 => "import cycle",
    E0206 => "unknown item in namespace",
    E0207 => "unknown type",
    E0208 => "unknown model",
    E0209 => "unknown policy",
    E0210 => "unknown skill",
    E0211 => "invalid or duplicate namespace",
    E0212 => "unknown standard library module",
    E0213 => "duplicate field or parameter",
    E0214 => "item of the wrong kind",
    E0301 => "mismatched types",
    E0302 => "unknown field",
    E0303 => "unknown method or function",
    E0304 => "wrong number of arguments",
    E0305 => "operator applied to the wrong types",
    E0306 => "condition is not a bool",
    E0307 => "unknown field for this step kind or item",
    E0308 => "missing required field",
    E0309 => "invalid choice",
    E0310 => "unknown step kind",
    E0311 => "missing argument in call",
    E0312 => "unknown argument in call",
    E0313 => "invalid return",
    E0314 => "for over a value that is not a list",
    E0315 => "indexing a value that is not a list or map",
    E0316 => "script does not compile",
    E0317 => "conflicting fields",
    E0318 => "value out of range",
    E0319 => "secret flows where it is journaled or shown",
    E0320 => "value may be absent",
    E0321 => "invalid regular expression",
    E0322 => "invalid cron expression",
    E0323 => "unknown time zone",
    E0324 => "cached step with a write effect",
    E0325 => "invalid memory key",
    E0330 => "tool cannot be used",
    E0331 => "duplicate tool name",
    E0401 => "template syntax error",
    E0402 => "unknown name in template",
    E0403 => "unknown field in template",
    E0501 => "dependency cycle",
    E0502 => "step refers to itself",
    E0503 => "unknown step in `after`",
    E0504 => "recursive skill call",
    E0505 => "step reads a loop variable outside its block",
    E0601 => "attempts exceed the policy cap",
    E0602 => "timeout exceeds the policy cap",
    E0603 => "call depth exceeds the policy cap",
    E0604 => "step sandbox widens the policy",
    E0605 => "inconsistent policy caps",
    E0606 => "policy extension cycle",
    W0001 => "unused step result",
    W0002 => "unused import",
    W0003 => "unused parameter",
    W0004 => "step can never run",
    W0005 => "template braces inside an expression",
    W0006 => "write step that may run more than once",
    W0009 => "MCP server allows every tool",
}

impl Code {
    /// Warnings start with `W`.
    pub fn is_warning(self) -> bool {
        self.as_str().starts_with('W')
    }

    /// Looks a code up by its text, ignoring case.
    pub fn parse(text: &str) -> Option<Code> {
        Code::ALL
            .iter()
            .copied()
            .find(|c| c.as_str().eq_ignore_ascii_case(text.trim()))
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
