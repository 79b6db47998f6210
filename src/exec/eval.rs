//! Evaluating compiled expressions, templates and values at run time.
//!
//! Expressions were translated to rhai by the checker (`v_NAME` for names,
//! `m_NAME` for methods, `f_NAME` for functions); this module registers exactly
//! those built-ins and feeds each evaluation only the names it reads.

use super::memory::Memory;
use crate::ir::template_methods::MEMORY_VAR;
use crate::ir::{CompiledExpr, Skill, TemplateRef, Ty, Value};
use rhai::{Dynamic, EvalAltResult, ImmutableString};
use serde_json::{Map, Number, Value as Json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

type RhaiResult = Result<Dynamic, Box<EvalAltResult>>;

/// Looks a name up in the current scope.
pub trait Names {
    /// The value bound to `name`, if any.
    fn get(&self, name: &str) -> Option<Json>;

    /// Why `name` is a null left by a step that failed without a result
    /// (`on_failure: continue`): reading it fails with this cause, not with
    /// whatever rhai or minijinja would say about a null.
    fn failure(&self, name: &str) -> Option<String> {
        match self.get(&super::frame::failure_key(name)) {
            Some(Json::String(why)) => Some(why),
            _ => None,
        }
    }
}

impl<F: Fn(&str) -> Option<Json>> Names for F {
    fn get(&self, name: &str) -> Option<Json> {
        self(name)
    }
}

/// Most operations a `script` step may perform (rhai's operation counter).
pub const SCRIPT_MAX_OPERATIONS: u64 = 50_000_000;

/// Most operations a `script` step runs inline on the scheduler; a script
/// that needs more is stopped and run again, from the start, on a blocking
/// thread (with [`SCRIPT_MAX_OPERATIONS`]). A few thousand operations take
/// well under a millisecond, so the scheduler is never held up for long,
/// while the usual small script skips two thread hand-overs.
pub const SCRIPT_INLINE_OPERATIONS: u64 = 10_000;

thread_local! {
    /// What an inline script printed: shown only if it finished inline, so a
    /// script that moves to a blocking thread does not print twice.
    static INLINE_PRINTS: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The shared evaluator: one rhai engine and a cache of template names.
pub struct Evaluator {
    engine: rhai::Engine,
    /// The engine for inline scripts: [`SCRIPT_INLINE_OPERATIONS`], prints buffered.
    inline: OnceLock<rhai::Engine>,
    template_names: Mutex<HashMap<(usize, String), Vec<String>>>,
    /// The run's memory, which `recall` reads.
    memory: Arc<Memory>,
}

impl std::fmt::Debug for Evaluator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Evaluator")
    }
}

impl Default for Evaluator {
    fn default() -> Self {
        Evaluator::new()
    }
}

pub(super) fn err(msg: impl Into<String>) -> Box<EvalAltResult> {
    msg.into().into()
}

impl Evaluator {
    /// An engine with the built-ins of the expression language registered
    /// (and no memory: `recall` gives its default).
    pub fn new() -> Evaluator {
        Evaluator::with_memory(Memory::default())
    }

    /// An evaluator whose `recall` reads `memory`.
    pub fn with_memory(memory: Memory) -> Evaluator {
        let memory = Arc::new(memory);
        let mut engine = engine(SCRIPT_MAX_OPERATIONS);
        super::memory::register_recall(&mut engine, &memory);
        Evaluator {
            engine,
            inline: OnceLock::new(),
            template_names: Mutex::new(HashMap::new()),
            memory,
        }
    }

    /// The run's memory.
    pub fn memory(&self) -> &Memory {
        &self.memory
    }

    /// Evaluates a compiled expression.
    pub fn expr(&self, e: &CompiledExpr, names: &dyn Names) -> Result<Json, String> {
        let mut scope = rhai::Scope::new();
        for name in prefixed_names(&e.code) {
            let value = names
                .get(name)
                .ok_or_else(|| format!("`{name}` has no value here"))?;
            scope.push_dynamic(format!("v_{name}"), to_dynamic(&value));
        }
        let out = self
            .engine
            .eval_ast_with_scope::<Dynamic>(&mut scope, &e.ast)
            .map_err(|err| {
                let msg = format!("`{}`: {}", e.source, describe(&err));
                with_failures(msg, prefixed_names(&e.code), names)
            })?;
        Ok(to_json(&out))
    }

    /// Evaluates a boolean expression.
    pub fn condition(&self, e: &CompiledExpr, names: &dyn Names) -> Result<bool, String> {
        match self.expr(e, names)? {
            Json::Bool(b) => Ok(b),
            other => Err(format!("`{}` gave {other}, not a bool", e.source)),
        }
    }

    /// Runs a `script` step's code; its names are bare identifiers.
    pub fn script(
        &self,
        code_names: &[String],
        ast: &rhai::AST,
        names: &dyn Names,
    ) -> Result<Json, String> {
        let mut scope = rhai::Scope::new();
        for name in code_names {
            if let Some(value) = names.get(name) {
                scope.push_dynamic(name.clone(), to_dynamic(&value));
            }
        }
        let out = self
            .engine
            .eval_ast_with_scope::<Dynamic>(&mut scope, ast)
            .map_err(|err| format!("script failed: {}", describe(&err)))?;
        super::script_result::script_result(&out)
    }

    /// Runs a `script` step's code on the calling thread with a budget of
    /// [`SCRIPT_INLINE_OPERATIONS`]; `None` when it needs more (nothing it
    /// printed is shown then: run it with [`Evaluator::script`] instead).
    pub fn script_inline(
        &self,
        code_names: &[String],
        ast: &rhai::AST,
        names: &dyn Names,
    ) -> Option<Result<Json, String>> {
        let engine = self.inline.get_or_init(|| {
            let mut e = engine(SCRIPT_INLINE_OPERATIONS);
            // The same text as rhai's default `print` and `debug`, held back.
            e.on_print(|s| INLINE_PRINTS.with(|p| p.borrow_mut().push(s.to_string())));
            e.on_debug(|s, source, pos| {
                let line = match (source, pos) {
                    (Some(source), rhai::Position::NONE) => format!("{source} | {s}"),
                    (Some(source), pos) => format!("{source} @ {pos:?} | {s}"),
                    (None, rhai::Position::NONE) => s.to_string(),
                    (None, pos) => format!("{pos:?} | {s}"),
                };
                INLINE_PRINTS.with(|p| p.borrow_mut().push(line));
            });
            e
        });
        INLINE_PRINTS.with(|p| p.borrow_mut().clear());
        let mut scope = rhai::Scope::new();
        for name in code_names {
            if let Some(value) = names.get(name) {
                scope.push_dynamic(name.clone(), to_dynamic(&value));
            }
        }
        let out = engine.eval_ast_with_scope::<Dynamic>(&mut scope, ast);
        let printed = INLINE_PRINTS.with(|p| std::mem::take(&mut *p.borrow_mut()));
        match out {
            Err(err) if matches!(err.unwrap_inner(), EvalAltResult::ErrorTooManyOperations(_)) => {
                None
            }
            out => {
                for line in printed {
                    println!("{line}");
                }
                Some(
                    out.map_err(|err| format!("script failed: {}", describe(&err)))
                        .and_then(|v| super::script_result::script_result(&v)),
                )
            }
        }
    }

    /// Renders a template of `skill`.
    pub fn render(
        &self,
        skill: &Skill,
        t: &TemplateRef,
        names: &dyn Names,
    ) -> Result<String, String> {
        let tmpl = skill
            .templates
            .get_template(&t.name)
            .map_err(|e| format!("template missing: {e}"))?;
        let key = (std::ptr::from_ref(skill) as usize, t.name.clone());
        let wanted = {
            let mut cache = self
                .template_names
                .lock()
                .map_err(|_| "template cache poisoned".to_string())?;
            cache
                .entry(key)
                .or_insert_with(|| tmpl.undeclared_variables(false).into_iter().collect())
                .clone()
        };
        let mut ctx: BTreeMap<String, minijinja::Value> = BTreeMap::new();
        for name in &wanted {
            if let Some(v) = names.get(name) {
                ctx.insert(name.clone(), to_jinja(&v));
            }
        }
        if wanted.iter().any(|n| n == "recall") {
            let values = self.memory.for_template(&t.source);
            ctx.insert(MEMORY_VAR.to_string(), to_jinja(&values));
        }
        tmpl.render(minijinja::Value::from(ctx)).map_err(|e| {
            let msg = format!(
                "template `{}` failed: {}",
                short(&t.source),
                jinja_error(&e, &t.source)
            );
            with_failures(msg, wanted.iter().map(String::as_str), names)
        })
    }

    /// Evaluates a value: constant, template, expression, or a list or map of them.
    pub fn value(&self, skill: &Skill, v: &Value, names: &dyn Names) -> Result<Json, String> {
        Ok(match v {
            Value::Const(c) => c.clone(),
            Value::Template(t) => Json::String(self.render(skill, t, names)?),
            Value::Expr(e) => self.expr(e, names)?,
            Value::List(items) => Json::Array(
                items
                    .iter()
                    .map(|i| self.value(skill, i, names))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Map(entries) => {
                let mut map = Map::new();
                for (k, v) in entries {
                    map.insert(k.clone(), self.value(skill, v, names)?);
                }
                Json::Object(map)
            }
        })
    }

    /// Evaluates a value that must be text.
    pub fn text(&self, skill: &Skill, v: &Value, names: &dyn Names) -> Result<String, String> {
        Ok(match self.value(skill, v, names)? {
            Json::String(s) => s,
            other => other.to_string(),
        })
    }
}

fn short(s: &str) -> String {
    let line = s.lines().next().unwrap_or_default();
    if line.chars().count() > 60 || s.contains('\n') {
        format!("{}…", line.chars().take(60).collect::<String>())
    } else {
        line.to_string()
    }
}

/// `msg`, with the cause of every name it read that a failed step left
/// without a result (`on_failure: continue`): a read that fails on such a
/// null says why the value is missing. A read that handles the null
/// (`x?.f ?? d`, `| default`) never gets here.
fn with_failures<'a>(
    mut msg: String,
    read: impl Iterator<Item = &'a str>,
    names: &dyn Names,
) -> String {
    for name in read {
        if let Some(why) = names.failure(name) {
            msg.push_str(&format!(" ({why})"));
        }
    }
    msg
}

/// A render error in the user's terms: what failed, and the part of the
/// template it failed on; never minijinja's internal template name.
fn jinja_error(e: &minijinja::Error, source: &str) -> String {
    let mut msg = match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    if e.detail().is_none()
        && let Some(part) = e.range().and_then(|r| source.get(r))
    {
        let part = part.trim();
        if !part.is_empty() {
            msg.push_str(&format!(" at `{}`", short(part)));
        }
    }
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

fn describe(err: &EvalAltResult) -> String {
    match err {
        EvalAltResult::ErrorRuntime(v, _) => v.to_string(),
        EvalAltResult::ErrorTooManyOperations(_) => format!(
            "the script ran more than {SCRIPT_MAX_OPERATIONS} operations (an endless loop?)"
        ),
        other => other.to_string(),
    }
}

/// The names (without `v_`) an expression's rhai code reads.
pub fn prefixed_names(code: &str) -> impl Iterator<Item = &str> {
    crate::check::script::identifiers(code)
        .into_iter()
        .filter_map(|ident| ident.strip_prefix("v_"))
}

/// JSON → rhai.
pub fn to_dynamic(v: &Json) -> Dynamic {
    match v {
        Json::Null => Dynamic::UNIT,
        Json::Bool(b) => Dynamic::from_bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from_int(i),
            None => Dynamic::from_float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Dynamic::from(ImmutableString::from(s.as_str())),
        Json::Array(items) => Dynamic::from_array(items.iter().map(to_dynamic).collect()),
        Json::Object(map) => Dynamic::from_map(
            map.iter()
                .map(|(k, v)| (k.as_str().into(), to_dynamic(v)))
                .collect(),
        ),
    }
}

/// rhai → JSON.
pub fn to_json(d: &Dynamic) -> Json {
    if d.is_unit() {
        return Json::Null;
    }
    if let Ok(b) = d.as_bool() {
        return Json::Bool(b);
    }
    if let Ok(i) = d.as_int() {
        return Json::Number(i.into());
    }
    if let Ok(f) = d.as_float() {
        return Number::from_f64(f).map_or(Json::Null, Json::Number);
    }
    if let Some(s) = d.read_lock::<ImmutableString>() {
        return Json::String(s.to_string());
    }
    if let Ok(c) = d.as_char() {
        return Json::String(c.to_string());
    }
    if let Some(arr) = d.read_lock::<rhai::Array>() {
        return Json::Array(arr.iter().map(to_json).collect());
    }
    if let Some(map) = d.read_lock::<rhai::Map>() {
        return Json::Object(
            map.iter()
                .map(|(k, v)| (k.to_string(), to_json(v)))
                .collect(),
        );
    }
    Json::String(d.to_string())
}

/// JSON → minijinja.
pub fn to_jinja(v: &Json) -> minijinja::Value {
    crate::ir::template_methods::json_to_value(v)
}

/// Checks a JSON value against a type; the error names the path of the first mismatch.
pub fn validate(v: &Json, ty: &Ty) -> Result<(), String> {
    validate_at(v, ty, "$")
}

fn validate_at(v: &Json, ty: &Ty, path: &str) -> Result<(), String> {
    let bad = || Err(format!("{path} should be {ty}, found {}", kind_of(v)));
    match ty {
        Ty::Json | Ty::Error => Ok(()),
        Ty::Optional(inner) => {
            if v.is_null() {
                Ok(())
            } else {
                validate_at(v, inner, path)
            }
        }
        Ty::String | Ty::Path => {
            if v.is_string() {
                Ok(())
            } else {
                bad()
            }
        }
        Ty::Bool => {
            if v.is_boolean() {
                Ok(())
            } else {
                bad()
            }
        }
        Ty::Int | Ty::Duration | Ty::Size => {
            if v.is_i64() || v.is_u64() {
                Ok(())
            } else {
                bad()
            }
        }
        Ty::Float => {
            if v.is_number() {
                Ok(())
            } else {
                bad()
            }
        }
        Ty::Union(options) => match v.as_str() {
            Some(s) if options.iter().any(|o| o == s) => Ok(()),
            Some(s) => Err(format!("{path} is {s:?}, which is not one of {ty}")),
            None => bad(),
        },
        Ty::List(elem) => match v.as_array() {
            Some(items) => items
                .iter()
                .enumerate()
                .try_for_each(|(i, item)| validate_at(item, elem, &format!("{path}[{i}]"))),
            None => bad(),
        },
        Ty::Record(rec) => match v.as_object() {
            Some(map) => rec
                .fields
                .iter()
                .try_for_each(|(name, fty)| match map.get(name) {
                    Some(fv) => validate_at(fv, fty, &format!("{path}.{name}")),
                    None if matches!(fty, Ty::Optional(_)) => Ok(()),
                    None => Err(format!("{path}.{name} is missing (expected {fty})")),
                }),
            None => bad(),
        },
    }
}

fn kind_of(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a bool",
        Json::Number(n) if n.is_f64() => "a float",
        Json::Number(_) => "an int",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

fn string_of(d: &Dynamic) -> Option<String> {
    d.read_lock::<ImmutableString>().map(|s| s.to_string())
}

fn values_equal(a: &Dynamic, b: &Dynamic) -> bool {
    let (a, b) = (to_json(a), to_json(b));
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn contains(hay: &Dynamic, needle: &Dynamic) -> RhaiResult {
    if let Some(s) = string_of(hay) {
        let n = string_of(needle).ok_or_else(|| err("contains() on a string takes a string"))?;
        return Ok(Dynamic::from_bool(s.contains(n.as_str())));
    }
    if let Some(arr) = hay.read_lock::<rhai::Array>() {
        return Ok(Dynamic::from_bool(
            arr.iter().any(|x| values_equal(x, needle)),
        ));
    }
    if let Some(map) = hay.read_lock::<rhai::Map>() {
        let key = string_of(needle).unwrap_or_default();
        return Ok(Dynamic::from_bool(map.contains_key(key.as_str())));
    }
    Err(err(format!(
        "contains() is not defined on {}",
        hay.type_name()
    )))
}

pub(super) fn with_str(d: &Dynamic, what: &str) -> Result<String, Box<EvalAltResult>> {
    string_of(d).ok_or_else(|| err(format!("{what}() needs a string, found {}", type_word(d))))
}

pub(super) fn type_word(d: &Dynamic) -> String {
    if d.is_unit() {
        "null (a value that is not set)".into()
    } else {
        d.type_name()
            .rsplit("::")
            .next()
            .unwrap_or("value")
            .to_string()
    }
}

/// Script steps call the built-ins by their plain names; rhai's own `trim`
/// (which edits in place and returns nothing) and friends are shadowed so
/// scripts and expressions mean the same thing.
fn register_script_names(engine: &mut rhai::Engine) {
    engine.register_fn("trim", |s: ImmutableString| -> ImmutableString {
        s.trim().into()
    });
    engine.register_fn("lower", |s: ImmutableString| -> ImmutableString {
        s.to_lowercase().into()
    });
    engine.register_fn("upper", |s: ImmutableString| -> ImmutableString {
        s.to_uppercase().into()
    });
    engine.register_fn("lines", |s: ImmutableString| -> rhai::Array {
        s.lines()
            .map(|l| Dynamic::from(ImmutableString::from(l)))
            .collect()
    });
    engine.register_fn("parse_int", |s: ImmutableString| -> RhaiResult {
        s.trim()
            .parse::<i64>()
            .map(Dynamic::from_int)
            .map_err(|_| err(format!("parse_int(): {:?} is not an integer", short(&s))))
    });
    engine.register_fn("parse_json", |s: ImmutableString| -> RhaiResult {
        let v: Json = serde_json::from_str(&s).map_err(|e| err(format!("parse_json(): {e}")))?;
        Ok(to_dynamic(&v))
    });
    engine.register_fn(
        "matches",
        |s: ImmutableString, p: ImmutableString| -> RhaiResult {
            let re = regex::Regex::new(&p)
                .map_err(|e| err(format!("matches(): bad regular expression: {e}")))?;
            Ok(Dynamic::from_bool(re.is_match(&s)))
        },
    );
    engine.register_fn("env", |name: ImmutableString| -> RhaiResult {
        env_var(&name, None)
    });
    engine.register_fn(
        "env",
        |name: ImmutableString, d: ImmutableString| -> RhaiResult { env_var(&name, Some(d)) },
    );
    engine.register_fn("exists", |p: ImmutableString| -> bool {
        std::path::Path::new(p.as_str()).exists()
    });
    engine.register_fn("read", |p: ImmutableString| -> RhaiResult {
        std::fs::read_to_string(p.as_str())
            .map(|s| Dynamic::from(ImmutableString::from(s)))
            .map_err(|e| err(format!("read({p:?}): {e}")))
    });
    engine.register_fn("json", |x: Dynamic| -> ImmutableString {
        to_json(&x).to_string().into()
    });
}

/// `as_string()`, `as_int()`, …: `x` itself when it is `want`, else an error naming what it is.
fn as_kind(x: Dynamic, want: &str) -> RhaiResult {
    let ok = match want {
        "a string" => x.is_string(),
        "an int" => x.is_int(),
        "a number" => x.is_int() || x.is_float(),
        "a bool" => x.is_bool(),
        _ => x.is_array(),
    };
    if !ok {
        return Err(err(format!(
            "as_{}(): the value is {}, not {want}",
            match want {
                "a string" => "string",
                "an int" => "int",
                "a number" => "float",
                "a bool" => "bool",
                _ => "list",
            },
            type_word(&x)
        )));
    }
    if want == "a number" && x.is_int() {
        return Ok(Dynamic::from_float(x.as_int().unwrap_or_default() as f64));
    }
    Ok(x)
}

fn env_var(name: &str, default: Option<ImmutableString>) -> RhaiResult {
    match (std::env::var(name), default) {
        (Ok(v), _) => Ok(Dynamic::from(ImmutableString::from(v))),
        (Err(_), Some(d)) => Ok(Dynamic::from(d)),
        (Err(_), None) => Err(err(format!("environment variable `{name}` is not set"))),
    }
}

/// An engine with the built-ins registered, allowing `max_operations`.
fn engine(max_operations: u64) -> rhai::Engine {
    let mut engine = rhai::Engine::new();
    engine.set_max_operations(max_operations);
    engine.set_max_expr_depths(128, 64);
    engine.set_max_string_size(256 << 20);
    register(&mut engine);
    engine
}

fn register(engine: &mut rhai::Engine) {
    register_script_names(engine);
    engine.register_fn("m_len", |x: Dynamic| -> RhaiResult {
        if let Some(s) = string_of(&x) {
            return Ok(Dynamic::from_int(s.chars().count() as i64));
        }
        if let Some(a) = x.read_lock::<rhai::Array>() {
            return Ok(Dynamic::from_int(a.len() as i64));
        }
        if let Some(m) = x.read_lock::<rhai::Map>() {
            return Ok(Dynamic::from_int(m.len() as i64));
        }
        Err(err(format!("len() is not defined on {}", type_word(&x))))
    });
    engine.register_fn("m_is_empty", |x: Dynamic| -> RhaiResult {
        if let Some(s) = string_of(&x) {
            return Ok(Dynamic::from_bool(s.is_empty()));
        }
        if let Some(a) = x.read_lock::<rhai::Array>() {
            return Ok(Dynamic::from_bool(a.is_empty()));
        }
        Err(err(format!(
            "is_empty() is not defined on {}",
            type_word(&x)
        )))
    });
    engine.register_fn("m_contains", |x: Dynamic, y: Dynamic| contains(&x, &y));
    engine.register_fn("f_in", |x: Dynamic, y: Dynamic| contains(&y, &x));
    engine.register_fn("m_starts_with", |x: Dynamic, y: Dynamic| -> RhaiResult {
        Ok(Dynamic::from_bool(
            with_str(&x, "starts_with")?.starts_with(&with_str(&y, "starts_with")?),
        ))
    });
    engine.register_fn("m_ends_with", |x: Dynamic, y: Dynamic| -> RhaiResult {
        Ok(Dynamic::from_bool(
            with_str(&x, "ends_with")?.ends_with(&with_str(&y, "ends_with")?),
        ))
    });
    engine.register_fn("m_matches", |x: Dynamic, y: Dynamic| -> RhaiResult {
        let pattern = with_str(&y, "matches")?;
        let re = regex::Regex::new(&pattern)
            .map_err(|e| err(format!("matches(): bad regular expression: {e}")))?;
        Ok(Dynamic::from_bool(re.is_match(&with_str(&x, "matches")?)))
    });
    engine.register_fn("m_lines", |x: Dynamic| -> RhaiResult {
        let s = with_str(&x, "lines")?;
        Ok(Dynamic::from_array(
            s.lines()
                .map(|l| Dynamic::from(ImmutableString::from(l)))
                .collect(),
        ))
    });
    engine.register_fn("m_trim", |x: Dynamic| -> RhaiResult {
        Ok(Dynamic::from(ImmutableString::from(
            with_str(&x, "trim")?.trim(),
        )))
    });
    engine.register_fn("m_lower", |x: Dynamic| -> RhaiResult {
        Ok(Dynamic::from(ImmutableString::from(
            with_str(&x, "lower")?.to_lowercase(),
        )))
    });
    engine.register_fn("m_upper", |x: Dynamic| -> RhaiResult {
        Ok(Dynamic::from(ImmutableString::from(
            with_str(&x, "upper")?.to_uppercase(),
        )))
    });
    engine.register_fn("m_parse_json", |x: Dynamic| -> RhaiResult {
        let s = with_str(&x, "parse_json")?;
        let v: Json = serde_json::from_str(&s).map_err(|e| err(format!("parse_json(): {e}")))?;
        Ok(to_dynamic(&v))
    });
    engine.register_fn("m_parse_int", |x: Dynamic| -> RhaiResult {
        let s = with_str(&x, "parse_int")?;
        s.trim()
            .parse::<i64>()
            .map(Dynamic::from_int)
            .map_err(|_| err(format!("parse_int(): {:?} is not an integer", short(&s))))
    });
    for (method, want) in [
        ("m_as_string", "a string"),
        ("m_as_int", "an int"),
        ("m_as_float", "a number"),
        ("m_as_bool", "a bool"),
        ("m_as_list", "a list"),
    ] {
        engine.register_fn(method, move |x: Dynamic| as_kind(x, want));
    }
    engine.register_fn("m_keys", |x: Dynamic| -> RhaiResult {
        let map = x
            .read_lock::<rhai::Map>()
            .ok_or_else(|| err(format!("keys() needs a record, found {}", type_word(&x))))?;
        Ok(Dynamic::from_array(
            map.keys().map(|k| Dynamic::from(k.clone())).collect(),
        ))
    });
    engine.register_fn("m_contains_key", |x: Dynamic, k: Dynamic| -> RhaiResult {
        let map = x.read_lock::<rhai::Map>().ok_or_else(|| {
            err(format!(
                "contains_key() needs a record, found {}",
                type_word(&x)
            ))
        })?;
        Ok(Dynamic::from_bool(
            map.contains_key(with_str(&k, "contains_key")?.as_str()),
        ))
    });
    engine.register_fn("f_env", |name: Dynamic| -> RhaiResult {
        env_var(&with_str(&name, "env")?, None)
    });
    engine.register_fn("f_env", |name: Dynamic, default: Dynamic| -> RhaiResult {
        env_var(
            &with_str(&name, "env")?,
            Some(with_str(&default, "env")?.into()),
        )
    });
    engine.register_fn("f_secret", |name: Dynamic| -> RhaiResult {
        let name = with_str(&name, "secret")?;
        crate::secrets::resolve(&name)
            .map(|v| Dynamic::from(ImmutableString::from(v)))
            .map_err(err)
    });
    engine.register_fn("f_exists", |path: Dynamic| -> RhaiResult {
        Ok(Dynamic::from_bool(
            std::path::Path::new(&with_str(&path, "exists")?).exists(),
        ))
    });
    engine.register_fn("f_read", |path: Dynamic| -> RhaiResult {
        let path = with_str(&path, "read")?;
        std::fs::read_to_string(&path)
            .map(|s| Dynamic::from(ImmutableString::from(s)))
            .map_err(|e| err(format!("read({path:?}): {e}")))
    });
    engine.register_fn("f_json", |x: Dynamic| -> RhaiResult {
        Ok(Dynamic::from(ImmutableString::from(
            to_json(&x).to_string(),
        )))
    });
}
