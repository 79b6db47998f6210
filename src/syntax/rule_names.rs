//! English names for grammar rules, so syntax errors never show pest's names.

use super::parse::Rule;

/// How a rule is called in "expected ..." messages.
pub fn describe(rule: Rule) -> &'static str {
    match rule {
        Rule::EOI => "end of input",
        Rule::item => "an item (`import`, `type`, `model`, `policy`, `skill`, `trigger` or `mcp`)",
        Rule::import => "an `import`",
        Rule::type_def => "a `type` definition",
        Rule::model_def => "a `model`",
        Rule::policy_def => "a `policy`",
        Rule::policy_base => "a base policy `: NAME`",
        Rule::trigger_def => "a `trigger`",
        Rule::mcp_def => "an `mcp` server",
        Rule::skill_def | Rule::skill_head => "a `skill`",
        Rule::params => "a parameter list `(name: type)`",
        Rule::param => "a parameter `name: type`",
        Rule::return_type => "a result type `-> Type`",
        Rule::skill_body | Rule::step_body | Rule::block_body => "`{`",
        Rule::step_def => "a step",
        Rule::output_field => "`output: Type` or `form: Type`",
        Rule::loop_def => "a `loop` block",
        Rule::for_def => "a `for` block",
        Rule::return_stmt => "`return`",
        Rule::block => "a block `name { ... }`",
        Rule::field => "a field `key: value`",
        Rule::type_expr => "a type",
        Rule::optional_mark => "`?`",
        Rule::string_union => "a string type",
        Rule::list_type => "a list type `[T]`",
        Rule::record_type => "a record type `{ field: T }`",
        Rule::record_field => "a record field `name: Type`",
        Rule::expr | Rule::postfix_expr | Rule::paren => "an expression",
        Rule::op_not | Rule::op_neg => "an expression",
        Rule::op_coalesce
        | Rule::op_or
        | Rule::op_and
        | Rule::op_eq
        | Rule::op_ne
        | Rule::op_le
        | Rule::op_ge
        | Rule::op_lt
        | Rule::op_gt
        | Rule::op_in
        | Rule::op_add
        | Rule::op_sub
        | Rule::op_mul
        | Rule::op_div
        | Rule::op_rem => "an operator",
        Rule::method_call => "a method call `.name()`",
        Rule::opt_method_call => "a method call `?.name()`",
        Rule::opt_member => "a field access `?.name`",
        Rule::member => "a field access `.name`",
        Rule::index => "an index `[i]`",
        Rule::call => "a function call",
        Rule::args => "arguments",
        Rule::list => "a list `[...]`",
        Rule::map => "a map `{ key: value }`",
        Rule::map_entry => "a map entry `key: value`",
        Rule::boolean => "`true` or `false`",
        Rule::null => "`null`",
        Rule::number => "a number",
        Rule::string | Rule::string_inner => "a string",
        Rule::multiline_string | Rule::multiline_inner => "a multi-line string",
        Rule::qualified_name => "a name",
        Rule::ident => "a name",
        Rule::kw_import => "`import`",
        Rule::kw_as => "`as`",
        Rule::kw_type => "`type`",
        Rule::kw_model => "`model`",
        Rule::kw_policy => "`policy`",
        Rule::kw_trigger => "`trigger`",
        Rule::kw_mcp => "`mcp`",
        Rule::kw_skill => "`skill`",
        Rule::kw_step => "`step`",
        Rule::kw_loop => "`loop`",
        Rule::kw_for => "`for`",
        Rule::kw_in => "`in`",
        Rule::kw_return => "`return`",
        Rule::kw_output => "`output`",
        Rule::kw_form => "`form`",
        Rule::WHITESPACE | Rule::COMMENT | Rule::ident_char => "whitespace",
        Rule::item_only | Rule::skill_member | Rule::skill_member_one => "an item",
        Rule::prefix | Rule::infix => "an operator",
        Rule::postfix => "`.`, `(` or `[`",
        Rule::primary => "a value",
        Rule::literal => "a literal",
        Rule::digits => "a digit",
    }
}
