package dev.specula.chat;

import java.util.List;
import java.util.Map;

/** The parsed template: statements and expressions, as built by {@link JinjaParser} and run by {@link JinjaRenderer}. */
sealed interface JinjaNode {
    record Template(List<JinjaNode> body) implements JinjaNode {}

    record Text(String text) implements JinjaNode {}

    record Print(Expr expr) implements JinjaNode {}

    record If(List<Expr> conditions, List<List<JinjaNode>> bodies, List<JinjaNode> elseBody) implements JinjaNode {}

    record For(List<String> targets, Expr iterable, Expr filter, List<JinjaNode> body, List<JinjaNode> elseBody, int line)
            implements JinjaNode {}

    record Set(List<String> targets, Expr value) implements JinjaNode {}

    record SetAttr(String namespace, String attribute, Expr value, int line) implements JinjaNode {}

    /** {@code {% set name %}body{% endset %}}, the body's text optionally filtered (filter reads {@code __set_body__}). */
    record SetBlock(String name, List<JinjaNode> body, Expr filter) implements JinjaNode {}

    record Macro(String name, List<String> params, List<Expr> defaults, List<JinjaNode> body) implements JinjaNode {}

    record Break() implements JinjaNode {}

    record Continue() implements JinjaNode {}

    /** A body rendered in place ({@code {% generation %}}). */
    record Block(List<JinjaNode> body) implements JinjaNode {}

    /** {@code {% filter f %}body{% endfilter %}}: filter reads the body's text as {@code __filter_body__}. */
    record FilterBlock(List<JinjaNode> body, Expr filter) implements JinjaNode {}

    sealed interface Expr {}

    record Const(Object value) implements Expr {}

    record Name(String name, int line) implements Expr {}

    record GetAttr(Expr target, String name, int line) implements Expr {}

    record GetItem(Expr target, Expr key, int line) implements Expr {}

    record Slice(Expr target, Expr start, Expr stop, Expr step, int line) implements Expr {}

    record Call(Expr target, List<Expr> args, Map<String, Expr> kwargs, int line) implements Expr {}

    record Filter(Expr target, String name, List<Expr> args, Map<String, Expr> kwargs, int line) implements Expr {}

    record Test(Expr target, String name, List<Expr> args, boolean negated, int line) implements Expr {}

    record Negate(Expr operand, int line) implements Expr {}

    record Not(Expr operand) implements Expr {}

    /** and (true) / or (false), returning an operand as Python does. */
    record Logic(boolean and, Expr left, Expr right) implements Expr {}

    record Binary(String op, Expr left, Expr right, int line) implements Expr {}

    record Compare(Expr first, List<String> ops, List<Expr> rest, int line) implements Expr {}

    /** {@code then if condition else otherwise}; otherwise null gives undefined. */
    record CondExpr(Expr condition, Expr then, Expr otherwise) implements Expr {}

    record ListLit(List<Expr> items) implements Expr {}

    record TupleLit(List<Expr> items) implements Expr {}

    record DictLit(List<Expr> keys, List<Expr> values) implements Expr {}
}
