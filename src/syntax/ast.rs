//! The syntax tree of one `.flow` file. Every node carries its byte span.

use crate::span::Span;

/// An identifier with its location.
#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    /// The identifier's text.
    pub name: String,
    /// Where it is written.
    pub span: Span,
}

/// `name` or `namespace.name`.
#[derive(Debug, Clone, PartialEq)]
pub struct QualifiedName {
    /// The namespace part of `ns.name`, if any.
    pub namespace: Option<Ident>,
    /// The item's name.
    pub name: Ident,
    /// The whole name.
    pub span: Span,
}

impl QualifiedName {
    /// The name as written, `ns.name` or `name`.
    pub fn text(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}.{}", ns.name, self.name.name),
            None => self.name.name.clone(),
        }
    }
}

/// A parsed file: its items in source order.
#[derive(Debug, Clone, Default)]
pub struct File {
    /// The top-level items.
    pub items: Vec<Item>,
}

/// A top-level item.
#[derive(Debug, Clone)]
pub enum Item {
    /// `import "path" [as name]`
    Import(Import),
    /// `type Name { ... }`
    Type(TypeDef),
    /// `model`, `policy` or `trigger`: a name and a body of fields.
    Config(ConfigItem),
    /// `skill name(params) -> Type { ... }`
    Skill(SkillDef),
}

/// `import "path" [as name]`.
#[derive(Debug, Clone)]
pub struct Import {
    /// The quoted path.
    pub path: StrLit,
    /// The `as` name, if given.
    pub alias: Option<Ident>,
    /// The whole item.
    pub span: Span,
}

/// `type Name { field: T, ... }`.
#[derive(Debug, Clone)]
pub struct TypeDef {
    /// The type's name.
    pub name: Ident,
    /// Its fields in order.
    pub fields: Vec<RecordField>,
    /// The whole item.
    pub span: Span,
}

/// Which configuration item a [`ConfigItem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    /// `model`
    Model,
    /// `policy`
    Policy,
    /// `trigger`
    Trigger,
    /// `mcp`: a Model Context Protocol server an agent's tools come from
    Mcp,
}

impl ConfigKind {
    /// The keyword that introduces the item.
    pub fn keyword(self) -> &'static str {
        match self {
            ConfigKind::Model => "model",
            ConfigKind::Policy => "policy",
            ConfigKind::Trigger => "trigger",
            ConfigKind::Mcp => "mcp",
        }
    }
}

/// `model`, `policy` or `trigger`: a name and fields.
#[derive(Debug, Clone)]
pub struct ConfigItem {
    /// Which item this is.
    pub kind: ConfigKind,
    /// The item's name.
    pub name: Ident,
    /// The policy a `policy` extends (`policy mine: policy.careful { ... }`).
    pub base: Option<QualifiedName>,
    /// Its fields; a nested block `x { ... }` is a field whose value is a map.
    pub fields: Vec<Field>,
    /// The whole item.
    pub span: Span,
}

/// `skill name(params) [-> T] { body }`.
#[derive(Debug, Clone)]
pub struct SkillDef {
    /// The skill's name.
    pub name: Ident,
    /// Its parameters.
    pub params: Vec<Param>,
    /// The declared result type.
    pub ret: Option<TypeExpr>,
    /// Fields, steps, blocks and the `return`.
    pub body: Body,
    /// The whole item.
    pub span: Span,
}

/// A skill parameter.
#[derive(Debug, Clone)]
pub struct Param {
    /// Its name.
    pub name: Ident,
    /// Its declared type.
    pub ty: TypeExpr,
    /// Its default value.
    pub default: Option<Expr>,
    /// The whole parameter.
    pub span: Span,
}

/// The members of a skill, loop or for body.
#[derive(Debug, Clone, Default)]
pub struct Body {
    /// Fields such as `policy:`, `max:`, `after:`.
    pub fields: Vec<Field>,
    /// Steps and blocks in source order.
    pub nodes: Vec<NodeDef>,
    /// The `return` expression(s); more than one is an error.
    pub returns: Vec<Expr>,
}

/// A step or a block inside a body.
#[derive(Debug, Clone)]
pub enum NodeDef {
    /// `step name: kind { ... }`
    Step(StepDef),
    /// `loop name { ... }`
    Loop(LoopDef),
    /// `for x in expr { ... }`
    For(ForDef),
}

/// `step name: kind [callee] { fields }`.
#[derive(Debug, Clone)]
pub struct StepDef {
    /// The step's name.
    pub name: Ident,
    /// The kind word (`run`, `llm`, ...).
    pub kind: Ident,
    /// The called skill of a `call` step.
    pub callee: Option<QualifiedName>,
    /// Its fields (`output:` holds a type).
    pub fields: Vec<Field>,
    /// The whole step.
    pub span: Span,
}

/// `loop name { max: N, ... }`.
#[derive(Debug, Clone)]
pub struct LoopDef {
    /// The loop's name.
    pub name: Ident,
    /// Its fields and inner steps.
    pub body: Body,
    /// The whole block.
    pub span: Span,
}

/// `for x in expr { parallel: N, ... }`.
#[derive(Debug, Clone)]
pub struct ForDef {
    /// The loop variable.
    pub var: Ident,
    /// The list iterated over.
    pub iter: Expr,
    /// Its fields and inner steps.
    pub body: Body,
    /// The whole block.
    pub span: Span,
}

/// `key: value`.
#[derive(Debug, Clone)]
pub struct Field {
    /// The key.
    pub key: Ident,
    /// The value: an expression, or a type for `output:`.
    pub value: FieldValue,
    /// The whole field.
    pub span: Span,
}

/// The value of a field.
#[derive(Debug, Clone)]
pub enum FieldValue {
    /// Any expression (literals, lists, maps, names, ...).
    Expr(Expr),
    /// A type (only `output:` in a step).
    Type(TypeExpr),
}

/// A type as written.
#[derive(Debug, Clone)]
pub struct TypeExpr {
    /// What kind of type.
    pub kind: TypeExprKind,
    /// Where it is written.
    pub span: Span,
}

/// The shapes a written type can take.
#[derive(Debug, Clone)]
pub enum TypeExprKind {
    /// A built-in or named type: `string`, `Plan`, `ns.Plan`.
    Named(QualifiedName),
    /// `[T]`
    List(Box<TypeExpr>),
    /// `{ field: T }`
    Record(Vec<RecordField>),
    /// `T?`
    Optional(Box<TypeExpr>),
    /// `"a" | "b"`
    Union(Vec<StrLit>),
}

/// A field of a record type.
#[derive(Debug, Clone)]
pub struct RecordField {
    /// The field's name.
    pub name: Ident,
    /// Its type.
    pub ty: TypeExpr,
}

/// A string literal after escapes (or dedent) were applied.
#[derive(Debug, Clone, PartialEq)]
pub struct StrLit {
    /// The string's value.
    pub value: String,
    /// Written with `"""`.
    pub multiline: bool,
    /// The whole literal, quotes included.
    pub span: Span,
}

/// An expression with its span.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    /// What kind of expression.
    pub kind: ExprKind,
    /// Where it is written.
    pub span: Span,
}

/// Unary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnOp {
    /// `!`
    Not,
    /// `-`
    Neg,
}

/// Binary operators, loosest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `??`
    Coalesce,
    /// `||`
    Or,
    /// `&&`
    And,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `in`
    In,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
}

impl BinOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Coalesce => "??",
            BinOp::Or => "||",
            BinOp::And => "&&",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::In => "in",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
        }
    }
}

/// The shapes an expression can take.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// `true`, `false`
    Bool(bool),
    /// `3`, `200_000`
    Int(i64),
    /// `0.25`
    Float(f64),
    /// `10m`, held in milliseconds.
    Duration(u64),
    /// `2GiB`, held in bytes.
    Size(u64),
    /// `"text"` or `"""text"""`
    Str(StrLit),
    /// `name`
    Name(String),
    /// `base.field`
    Member(Box<Expr>, Ident),
    /// `base[index]`
    Index(Box<Expr>, Box<Expr>),
    /// `base.method(args)`
    Method(Box<Expr>, Ident, Vec<Expr>),
    /// `base?.field`: `null` when `base` is `null`
    OptMember(Box<Expr>, Ident),
    /// `base?.method(args)`: `null` when `base` is `null`
    OptMethod(Box<Expr>, Ident, Vec<Expr>),
    /// `null`
    Null,
    /// `function(args)`
    Call(Ident, Vec<Expr>),
    /// `!x`, `-x`
    Unary(UnOp, Box<Expr>),
    /// `a op b`
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `[a, b]`
    List(Vec<Expr>),
    /// `{ k: v }`
    Map(Vec<(MapKey, Expr)>),
    /// Stands in for an expression that failed to lower (already reported).
    Error,
}

/// A key of a map literal (an identifier or a string).
#[derive(Debug, Clone, PartialEq)]
pub struct MapKey {
    /// The key's text.
    pub name: String,
    /// Where it is written.
    pub span: Span,
}
