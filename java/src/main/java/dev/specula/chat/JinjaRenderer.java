package dev.specula.chat;

import dev.specula.chat.JinjaNode.Expr;
import dev.specula.chat.Py.Callable;
import dev.specula.chat.Py.MarkedBuilder;
import dev.specula.chat.Py.Tuple;
import dev.specula.chat.Py.Undefined;
import java.time.LocalDateTime;
import java.time.format.TextStyle;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.function.Supplier;

/**
 * Runs a parsed template as Hugging Face's {@code ImmutableSandboxedEnvironment} does: Python values, the
 * built-in filters and tests chat templates use, Hugging Face's {@code tojson}, {@code raise_exception} and
 * {@code strftime_now}, {@code namespace()}, loop controls, macros. Lists and dicts cannot be changed from the
 * template (the sandbox's rule) and ranges are capped at 100,000 items (its MAX_RANGE). Time, output size and
 * macro depth are bounded, so a template cannot run away. One renderer per render; not thread-safe.
 */
final class JinjaRenderer {
    /** The sandbox's largest range. */
    static final int MAX_RANGE = 100_000;
    static final int MAX_MACRO_DEPTH = 200;
    /**
     * Statements and expressions nested inside each other at once, macro calls included: a bound far above real
     * templates' (tens) and below what the smallest thread stack holds, so that a deeply nested template fails with
     * a clear error rather than a StackOverflowError.
     */
    static final int MAX_NESTING = 1_000;

    private final long deadlineNanos;
    private final long maxOutputChars;
    private final Supplier<LocalDateTime> now;
    private long produced;
    private long ticks;
    private int depth;
    private int nesting;

    JinjaRenderer(long timeLimitMillis, long maxOutputChars, Supplier<LocalDateTime> now) {
        this.deadlineNanos = System.nanoTime() + timeLimitMillis * 1_000_000L;
        this.maxOutputChars = maxOutputChars;
        this.now = now;
    }

    /** A variable scope; lookups fall back to the parent. */
    private static final class Scope {
        final Map<String, Object> vars = new HashMap<>();
        final Scope parent;

        Scope(Scope parent) {
            this.parent = parent;
        }

        Object lookup(String name) {
            for (Scope s = this; s != null; s = s.parent) if (s.vars.containsKey(name)) return s.vars.get(name);
            return MISSING;
        }
    }

    private static final Object MISSING = new Object();

    /** namespace(): the one object a template may change, for state that must outlive a loop iteration. */
    static final class Namespace {
        final Map<String, Object> attrs = new LinkedHashMap<>();

        @Override
        public String toString() {
            return "<Namespace " + Py.repr(attrs) + ">";
        }
    }

    /** The loop variable. */
    private static final class Loop {
        final List<Object> items;
        int index0;

        Loop(List<Object> items) {
            this.items = items;
        }

        Object attr(String name) {
            int n = items.size();
            return switch (name) {
                case "index" -> (long) index0 + 1;
                case "index0" -> (long) index0;
                case "revindex" -> (long) (n - index0);
                case "revindex0" -> (long) (n - index0 - 1);
                case "first" -> index0 == 0;
                case "last" -> index0 == n - 1;
                case "length" -> (long) n;
                case "depth" -> 1L;
                case "depth0" -> 0L;
                case "previtem" -> index0 > 0 ? items.get(index0 - 1) : new Undefined("there is no previous item");
                case "nextitem" -> index0 < n - 1 ? items.get(index0 + 1) : new Undefined("there is no next item");
                case "cycle" -> (Callable) (args, kw) -> {
                    if (args.isEmpty()) throw new ChatTemplateException("no items for cycling given");
                    return args.get(index0 % args.size());
                };
                default -> new Undefined("'LoopContext object' has no attribute '" + name + "'");
            };
        }
    }

    private static final class BreakSignal extends RuntimeException {
        BreakSignal() {
            super(null, null, false, false);
        }
    }

    private static final class ContinueSignal extends RuntimeException {
        ContinueSignal() {
            super(null, null, false, false);
        }
    }

    private static final BreakSignal BREAK = new BreakSignal();
    private static final ContinueSignal CONTINUE = new ContinueSignal();

    /** Renders the template with the given variables; strings from the caller may be {@link MarkedText}. */
    Object render(JinjaNode.Template template, Map<String, Object> variables) {
        Scope globals = new Scope(null);
        globals.vars.put("range", (Callable) this::range);
        globals.vars.put("namespace", (Callable) (args, kw) -> {
            Namespace ns = new Namespace();
            for (Object a : args) if (a instanceof Map<?, ?> m) m.forEach((k, v) -> ns.attrs.put(Py.str(k), v));
            ns.attrs.putAll(kw);
            return ns;
        });
        globals.vars.put("dict", (Callable) (args, kw) -> {
            Map<Object, Object> d = new LinkedHashMap<>();
            for (Object a : args) if (a instanceof Map<?, ?> m) m.forEach((k, v) -> d.put(Py.key(k), v));
            d.putAll(kw);
            return d;
        });
        globals.vars.put("raise_exception", (Callable) (args, kw) -> {
            throw new ChatTemplateException(args.isEmpty() ? "" : Py.str(args.get(0)));
        });
        globals.vars.put("strftime_now", (Callable) (args, kw) -> strftime(now.get(), args.isEmpty() ? "" : Py.str(args.get(0))));
        Scope top = new Scope(globals);
        top.vars.putAll(variables);
        MarkedBuilder out = new MarkedBuilder();
        try {
            run(template.body(), top, out);
        } catch (BreakSignal | ContinueSignal e) {
            throw new ChatTemplateException("break or continue outside a loop");
        } catch (StackOverflowError e) {
            throw new ChatTemplateException("the template nests too deeply");
        }
        return out.value();
    }

    private void tick() {
        if ((++ticks & 255) == 0 && System.nanoTime() > deadlineNanos)
            throw new ChatTemplateException("the chat template ran past its time limit (does it loop forever?)");
    }

    private void emit(MarkedBuilder out, Object value) {
        String s = value.toString();
        produced += s.length();
        if (produced > maxOutputChars)
            throw new ChatTemplateException("the chat template produced more than " + maxOutputChars + " characters (does it loop forever?)");
        out.append(value);
    }

    private void run(List<JinjaNode> body, Scope scope, MarkedBuilder out) {
        enter();
        try {
            runNested(body, scope, out);
        } finally {
            nesting--;
        }
    }

    private void enter() {
        if (++nesting > MAX_NESTING) {
            nesting--;
            throw new ChatTemplateException("the template nests more than " + MAX_NESTING + " statements and expressions deep");
        }
    }

    private void runNested(List<JinjaNode> body, Scope scope, MarkedBuilder out) {
        for (JinjaNode node : body) {
            tick();
            switch (node) {
                case JinjaNode.Text t -> emit(out, t.text());
                case JinjaNode.Print p -> {
                    Object v = eval(p.expr(), scope);
                    emit(out, isStringy(v) ? v : Py.str(v));
                }
                case JinjaNode.If i -> {
                    boolean done = false;
                    for (int k = 0; k < i.conditions().size() && !done; k++) {
                        if (Py.truthy(eval(i.conditions().get(k), scope))) {
                            run(i.bodies().get(k), scope, out);
                            done = true;
                        }
                    }
                    if (!done) run(i.elseBody(), scope, out);
                }
                case JinjaNode.For f -> runFor(f, scope, out);
                case JinjaNode.Set s -> assign(s.targets(), eval(s.value(), scope), scope);
                case JinjaNode.SetAttr s -> {
                    Object ns = scope.lookup(s.namespace());
                    if (!(ns instanceof Namespace n))
                        throw new ChatTemplateException("cannot assign attribute on non-namespace object '" + s.namespace() + "'");
                    n.attrs.put(s.attribute(), eval(s.value(), scope));
                }
                case JinjaNode.SetBlock s -> {
                    MarkedBuilder inner = new MarkedBuilder();
                    run(s.body(), scope, inner);
                    Object v = inner.value();
                    if (s.filter() != null) {
                        Scope fs = new Scope(scope);
                        fs.vars.put("__set_body__", v);
                        v = eval(s.filter(), fs);
                    }
                    scope.vars.put(s.name(), v);
                }
                case JinjaNode.FilterBlock fb -> {
                    MarkedBuilder inner = new MarkedBuilder();
                    run(fb.body(), scope, inner);
                    Scope fs = new Scope(scope);
                    fs.vars.put("__filter_body__", inner.value());
                    Object v = eval(fb.filter(), fs);
                    emit(out, isStringy(v) ? v : Py.str(v));
                }
                case JinjaNode.Macro m -> scope.vars.put(m.name(), macro(m, scope));
                case JinjaNode.Block b -> run(b.body(), scope, out);
                case JinjaNode.Break b -> throw BREAK;
                case JinjaNode.Continue c -> throw CONTINUE;
                case JinjaNode.Template t -> run(t.body(), scope, out);
            }
        }
    }

    private static boolean isStringy(Object v) {
        return Py.isString(v);
    }

    private void assign(List<String> targets, Object value, Scope scope) {
        if (targets.size() == 1) {
            scope.vars.put(targets.getFirst(), value);
            return;
        }
        List<Object> items = Py.toList(value);
        if (items.size() != targets.size())
            throw new ChatTemplateException("cannot unpack " + items.size() + " values into " + targets.size() + " names");
        for (int i = 0; i < targets.size(); i++) scope.vars.put(targets.get(i), items.get(i));
    }

    private void runFor(JinjaNode.For f, Scope scope, MarkedBuilder out) {
        Object iterable = eval(f.iterable(), scope);
        if (iterable instanceof Map<?, ?> m && !(iterable instanceof Namespace)) iterable = new ArrayList<Object>(m.keySet());
        List<Object> items = new ArrayList<>();
        Iterator<?> it = Py.iterate(iterable);
        while (it.hasNext()) {
            tick();
            Object item = it.next();
            if (f.filter() != null) {
                Scope fs = new Scope(scope);
                assign(f.targets(), item, fs);
                if (!Py.truthy(eval(f.filter(), fs))) continue;
            }
            items.add(item);
        }
        if (items.isEmpty()) {
            run(f.elseBody(), scope, out);
            return;
        }
        Loop loop = new Loop(items);
        for (int i = 0; i < items.size(); i++) {
            tick();
            loop.index0 = i;
            Scope inner = new Scope(scope);
            inner.vars.put("loop", loop);
            assign(f.targets(), items.get(i), inner);
            try {
                run(f.body(), inner, out);
            } catch (ContinueSignal c) {
                // next item
            } catch (BreakSignal b) {
                break;
            }
        }
    }

    private Callable macro(JinjaNode.Macro m, Scope defined) {
        return (args, kw) -> {
            if (++depth > MAX_MACRO_DEPTH) throw new ChatTemplateException("macro '" + m.name() + "' recursed more than " + MAX_MACRO_DEPTH + " deep");
            try {
                Scope s = new Scope(defined);
                for (int i = 0; i < m.params().size(); i++) {
                    String p = m.params().get(i);
                    Object v;
                    if (i < args.size()) v = args.get(i);
                    else if (kw.containsKey(p)) v = kw.get(p);
                    else if (m.defaults().get(i) != null) v = eval(m.defaults().get(i), s);
                    else v = new Undefined("parameter '" + p + "' was not provided");
                    s.vars.put(p, v);
                }
                if (args.size() > m.params().size())
                    throw new ChatTemplateException("macro '" + m.name() + "' takes not more than " + m.params().size() + " argument(s)");
                MarkedBuilder out = new MarkedBuilder();
                run(m.body(), s, out);
                return out.value();
            } finally {
                depth--;
            }
        };
    }

    private Object range(List<Object> args, Map<String, Object> kw) {
        long start = 0, stop, step = 1;
        if (args.isEmpty()) throw new ChatTemplateException("range expected at least 1 argument, got 0");
        if (args.size() == 1) stop = integer(args.get(0));
        else {
            start = integer(args.get(0));
            stop = integer(args.get(1));
            if (args.size() > 2) step = integer(args.get(2));
        }
        if (step == 0) throw new ChatTemplateException("range() arg 3 must not be zero");
        long n = step > 0 ? Math.max(0, (stop - start + step - 1) / step) : Math.max(0, (start - stop - step - 1) / -step);
        if (n > MAX_RANGE)
            throw new ChatTemplateException("Range too big. The sandbox blocks ranges larger than MAX_RANGE (" + MAX_RANGE + ").");
        List<Object> out = new ArrayList<>((int) n);
        for (long i = 0, v = start; i < n; i++, v += step) out.add(v);
        return out;
    }

    private static long integer(Object o) {
        if (o instanceof Long || o instanceof Boolean) return Py.toLong(o);
        if (o instanceof Undefined u) throw u.fail();
        throw new ChatTemplateException("'" + Py.typeName(o) + "' object cannot be interpreted as an integer");
    }

    // ---- expressions ----

    Object eval(Expr e, Scope scope) {
        enter();
        try {
            return evalNested(e, scope);
        } finally {
            nesting--;
        }
    }

    private Object evalNested(Expr e, Scope scope) {
        return switch (e) {
            case JinjaNode.Const c -> c.value();
            case JinjaNode.Name n -> {
                Object v = scope.lookup(n.name());
                yield v == MISSING ? new Undefined("'" + n.name() + "' is undefined") : v;
            }
            case JinjaNode.GetAttr g -> getAttr(eval(g.target(), scope), g.name());
            case JinjaNode.GetItem g -> getItem(eval(g.target(), scope), eval(g.key(), scope));
            case JinjaNode.Slice s -> slice(eval(s.target(), scope), s.start() == null ? null : eval(s.start(), scope),
                    s.stop() == null ? null : eval(s.stop(), scope), s.step() == null ? null : eval(s.step(), scope));
            case JinjaNode.Call c -> {
                Object target = eval(c.target(), scope);
                List<Object> args = new ArrayList<>();
                for (Expr a : c.args()) args.add(eval(a, scope));
                Map<String, Object> kw = new LinkedHashMap<>();
                c.kwargs().forEach((k, v) -> kw.put(k, eval(v, scope)));
                yield call(target, args, kw);
            }
            case JinjaNode.Filter f -> {
                Object target = eval(f.target(), scope);
                List<Object> args = new ArrayList<>();
                for (Expr a : f.args()) args.add(eval(a, scope));
                Map<String, Object> kw = new LinkedHashMap<>();
                f.kwargs().forEach((k, v) -> kw.put(k, eval(v, scope)));
                yield JinjaFilters.filter(this, f.name(), target, args, kw);
            }
            case JinjaNode.Test t -> {
                Object target = eval(t.target(), scope);
                List<Object> args = new ArrayList<>();
                for (Expr a : t.args()) args.add(eval(a, scope));
                boolean r = JinjaFilters.test(t.name(), target, args, scope::lookup);
                yield t.negated() != r;
            }
            case JinjaNode.Negate n -> {
                Object v = eval(n.operand(), scope);
                if (v instanceof Long l) yield -l;
                if (v instanceof Double d) yield -d;
                if (v instanceof Boolean b) yield b ? -1L : 0L;
                if (v instanceof Undefined u) throw u.fail();
                throw new ChatTemplateException("bad operand type for unary -: '" + Py.typeName(v) + "'");
            }
            case JinjaNode.Not n -> !Py.truthy(eval(n.operand(), scope));
            case JinjaNode.Logic l -> {
                Object left = eval(l.left(), scope);
                if (l.and()) yield Py.truthy(left) ? eval(l.right(), scope) : left;
                yield Py.truthy(left) ? left : eval(l.right(), scope);
            }
            case JinjaNode.Binary b -> binary(b.op(), eval(b.left(), scope), eval(b.right(), scope));
            case JinjaNode.Compare c -> {
                Object left = eval(c.first(), scope);
                boolean result = true;
                for (int i = 0; i < c.ops().size() && result; i++) {
                    Object right = eval(c.rest().get(i), scope);
                    result = compare(c.ops().get(i), left, right);
                    left = right;
                }
                yield result;
            }
            case JinjaNode.CondExpr c -> Py.truthy(eval(c.condition(), scope)) ? eval(c.then(), scope)
                    : c.otherwise() == null ? new Undefined("the inline if-expression on evaluated to false and no else section was defined.")
                    : eval(c.otherwise(), scope);
            case JinjaNode.ListLit l -> {
                List<Object> out = new ArrayList<>();
                for (Expr x : l.items()) out.add(eval(x, scope));
                yield out;
            }
            case JinjaNode.TupleLit t -> {
                List<Object> out = new ArrayList<>();
                for (Expr x : t.items()) out.add(eval(x, scope));
                yield new Tuple(out);
            }
            case JinjaNode.DictLit d -> {
                Map<Object, Object> out = new LinkedHashMap<>();
                for (int i = 0; i < d.keys().size(); i++) out.put(Py.key(eval(d.keys().get(i), scope)), eval(d.values().get(i), scope));
                yield out;
            }
        };
    }

    Object call(Object target, List<Object> args, Map<String, Object> kw) {
        if (target instanceof Callable c) {
            tick();
            return c.call(args, kw);
        }
        if (target instanceof Undefined u) throw u.fail();
        throw new ChatTemplateException("'" + Py.typeName(target) + "' object is not callable");
    }

    boolean compare(String op, Object a, Object b) {
        if ((a instanceof Undefined || b instanceof Undefined) && !op.equals("==") && !op.equals("!=")) {
            if (op.equals("in") || op.equals("not in")) {
                if (b instanceof Undefined u) throw u.fail();
            } else {
                throw (a instanceof Undefined u ? u : (Undefined) b).fail();
            }
        }
        return switch (op) {
            case "==" -> Py.equal(a, b);
            case "!=" -> !Py.equal(a, b);
            case "<" -> Py.compare(a, b) < 0;
            case ">" -> Py.compare(a, b) > 0;
            case "<=" -> Py.compare(a, b) <= 0;
            case ">=" -> Py.compare(a, b) >= 0;
            case "in" -> contains(b, a);
            case "not in" -> !contains(b, a);
            default -> throw new ChatTemplateException("unknown operator " + op);
        };
    }

    static boolean contains(Object container, Object item) {
        if (Py.isString(container)) {
            if (!Py.isString(item)) throw new ChatTemplateException("'in <string>' requires string as left operand, not " + Py.typeName(item));
            return container.toString().contains(item.toString());
        }
        if (container instanceof Map<?, ?> m) return m.containsKey(Py.key(item));
        if (container instanceof List<?> l) {
            for (Object x : l) if (Py.equal(x, item)) return true;
            return false;
        }
        if (container instanceof Undefined u) throw u.fail();
        throw new ChatTemplateException("argument of type '" + Py.typeName(container) + "' is not iterable");
    }

    Object binary(String op, Object a, Object b) {
        if (op.equals("~")) {
            Object sa = Py.isString(a) ? a : Py.str(a);
            Object sb = Py.isString(b) ? b : Py.str(b);
            Object r = MarkedText.concat(sa, sb);
            checkSize(r);
            return r;
        }
        if (a instanceof Undefined u) throw u.fail();
        if (b instanceof Undefined u) throw u.fail();
        switch (op) {
            case "+" -> {
                if (Py.isString(a) && Py.isString(b)) return checkSize(MarkedText.concat(a, b));
                if (a instanceof List<?> x && b instanceof List<?> y && (a instanceof Tuple) == (b instanceof Tuple)) {
                    List<Object> out = new ArrayList<>(x);
                    out.addAll(y);
                    return a instanceof Tuple ? new Tuple(out) : out;
                }
            }
            case "*" -> {
                if (Py.isString(a) && (b instanceof Long || b instanceof Boolean)) return repeat(a, Py.toLong(b));
                if (Py.isString(b) && (a instanceof Long || a instanceof Boolean)) return repeat(b, Py.toLong(a));
                if (a instanceof List<?> x && b instanceof Long n) {
                    if (x.size() * Math.max(0, n) > maxOutputChars) throw new ChatTemplateException("list repetition too large");
                    List<Object> out = new ArrayList<>();
                    for (long i = 0; i < n; i++) out.addAll(x);
                    return out;
                }
            }
            case "%" -> {
                if (Py.isString(a)) return JinjaFilters.percentFormat(a.toString(), b);
            }
            default -> { }
        }
        if (Py.isNumber(a) && Py.isNumber(b)) {
            boolean ints = !(a instanceof Double) && !(b instanceof Double);
            switch (op) {
                case "+": return ints ? (Object) (Py.toLong(a) + Py.toLong(b)) : Py.toDouble(a) + Py.toDouble(b);
                case "-": return ints ? (Object) (Py.toLong(a) - Py.toLong(b)) : Py.toDouble(a) - Py.toDouble(b);
                case "*": return ints ? (Object) (Py.toLong(a) * Py.toLong(b)) : Py.toDouble(a) * Py.toDouble(b);
                case "/":
                    if (Py.toDouble(b) == 0) throw new ChatTemplateException("division by zero");
                    return Py.toDouble(a) / Py.toDouble(b);
                case "//":
                    if (Py.toDouble(b) == 0) throw new ChatTemplateException("integer division or modulo by zero");
                    return ints ? (Object) Math.floorDiv(Py.toLong(a), Py.toLong(b)) : Math.floor(Py.toDouble(a) / Py.toDouble(b));
                case "%":
                    if (Py.toDouble(b) == 0) throw new ChatTemplateException("integer division or modulo by zero");
                    if (ints) return Math.floorMod(Py.toLong(a), Py.toLong(b));
                    double x = Py.toDouble(a), y = Py.toDouble(b);
                    return x - Math.floor(x / y) * y;
                case "**":
                    if (ints && Py.toLong(b) >= 0) {
                        // by squaring: a loop of b multiplications never ends for 1 ** 2**62
                        long r = 1, base = Py.toLong(a), exponent = Py.toLong(b);
                        try {
                            while (exponent > 0) {
                                if ((exponent & 1) == 1) r = Math.multiplyExact(r, base);
                                exponent >>= 1;
                                if (exponent > 0) base = Math.multiplyExact(base, base);
                            }
                        } catch (ArithmeticException overflow) {
                            throw new ChatTemplateException("integer result of " + Py.str(a) + " ** " + Py.str(b) + " is too large");
                        }
                        return r;
                    }
                    return Math.pow(Py.toDouble(a), Py.toDouble(b));
                default:
            }
        }
        throw new ChatTemplateException("unsupported operand type(s) for " + op + ": '" + Py.typeName(a) + "' and '" + Py.typeName(b) + "'");
    }

    private Object repeat(Object s, long n) {
        if (n <= 0) return "";
        if ((long) s.toString().length() * n > maxOutputChars)
            throw new ChatTemplateException("the chat template built a string longer than " + maxOutputChars + " characters");
        Object out = "";
        for (long i = 0; i < n; i++) out = MarkedText.concat(out, s);
        return out;
    }

    private Object checkSize(Object s) {
        if (s.toString().length() > maxOutputChars)
            throw new ChatTemplateException("the chat template built a string longer than " + maxOutputChars + " characters");
        return s;
    }

    // ---- attributes, items, slices ----

    private static String objectTypeRepr(Object o) {
        if (o == null) return "None";
        return Py.typeName(o) + " object";
    }

    /** Jinja2's getattr: the Python attribute (a method) first, then the item. */
    Object getAttr(Object target, String name) {
        if (target instanceof Undefined u) throw u.fail();
        if (name.startsWith("_"))
            return new Undefined("access to attribute '" + name + "' of '" + Py.typeName(target) + "' object is unsafe.");
        if (target instanceof Namespace ns)
            return ns.attrs.containsKey(name) ? ns.attrs.get(name) : new Undefined("'Namespace object' has no attribute '" + name + "'");
        if (target instanceof Loop loop) return loop.attr(name);
        Callable method = JinjaFilters.method(this, target, name);
        if (method != null) return method;
        if (target instanceof Map<?, ?> m) {
            if (m.containsKey(name)) return m.get(name);
        }
        return new Undefined("'" + objectTypeRepr(target) + "' has no attribute '" + name + "'");
    }

    /** Jinja2's getitem: the item first, then the attribute. */
    Object getItem(Object target, Object key) {
        if (target instanceof Undefined u) throw u.fail();
        if (target instanceof Map<?, ?> m) {
            Object k = Py.key(key);
            if (m.containsKey(k)) return m.get(k);
        } else if (target instanceof List<?> l && (key instanceof Long || key instanceof Boolean)) {
            long i = Py.toLong(key);
            if (i < 0) i += l.size();
            if (i >= 0 && i < l.size()) return l.get((int) i);
        } else if (Py.isString(target) && (key instanceof Long || key instanceof Boolean)) {
            String s = target.toString();
            int n = s.codePointCount(0, s.length());
            long i = Py.toLong(key);
            if (i < 0) i += n;
            if (i >= 0 && i < n) {
                int from = s.offsetByCodePoints(0, (int) i);
                return MarkedText.substring(target, from, s.offsetByCodePoints(from, 1));
            }
        }
        if (Py.isString(key)) {
            Object attr = getAttr(target, key.toString());
            if (!(attr instanceof Undefined)) return attr;
        }
        return new Undefined("'" + objectTypeRepr(target) + "' has no attribute " + Py.repr(key));
    }

    Object slice(Object target, Object start, Object stop, Object step) {
        if (target instanceof Undefined u) throw u.fail();
        long st = step == null ? 1 : integer(step);
        if (st == 0) throw new ChatTemplateException("slice step cannot be zero");
        List<Object> items;
        boolean string = Py.isString(target);
        int[] offsets = null; // code point i starts at char offsets[i]
        if (string) {
            String s = target.toString();
            int n = s.codePointCount(0, s.length());
            offsets = new int[n + 1];
            for (int i = 0, at = 0; i < n; i++) {
                offsets[i] = at;
                at += Character.charCount(s.codePointAt(at));
            }
            offsets[n] = s.length();
            items = null;
        } else if (target instanceof List<?> l) {
            items = new ArrayList<>(l);
        } else {
            throw new ChatTemplateException("'" + Py.typeName(target) + "' object is not subscriptable");
        }
        int n = string ? offsets.length - 1 : items.size();
        long lo, hi;
        if (st > 0) {
            lo = start == null ? 0 : clampIndex(integer(start), n, false);
            hi = stop == null ? n : clampIndex(integer(stop), n, false);
        } else {
            lo = start == null ? n - 1 : clampIndex(integer(start), n, true);
            hi = stop == null ? -1 : clampIndex(integer(stop), n, true);
        }
        if (string) {
            if (st == 1) return lo >= hi ? "" : MarkedText.substring(target, offsets[(int) lo], offsets[(int) hi]);
            Object out = "";
            for (long i = lo; st > 0 ? i < hi : i > hi; i += st)
                out = MarkedText.concat(out, MarkedText.substring(target, offsets[(int) i], offsets[(int) i + 1]));
            return out;
        }
        List<Object> out = new ArrayList<>();
        for (long i = lo; st > 0 ? i < hi : i > hi; i += st) out.add(items.get((int) i));
        return target instanceof Tuple ? new Tuple(out) : out;
    }

    /** Python's slice index adjustment. */
    private static long clampIndex(long i, int n, boolean negativeStep) {
        if (i < 0) {
            i += n;
            if (i < 0) i = negativeStep ? -1 : 0;
        } else if (i >= n) {
            i = negativeStep ? n - 1 : n;
        }
        return i;
    }

    // ---- strftime ----

    static String strftime(LocalDateTime t, String format) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < format.length(); i++) {
            char c = format.charAt(i);
            if (c != '%' || i + 1 >= format.length()) {
                sb.append(c);
                continue;
            }
            char f = format.charAt(++i);
            switch (f) {
                case 'Y' -> sb.append(t.getYear());
                case 'y' -> sb.append(String.format("%02d", t.getYear() % 100));
                case 'm' -> sb.append(String.format("%02d", t.getMonthValue()));
                case 'd' -> sb.append(String.format("%02d", t.getDayOfMonth()));
                case 'e' -> sb.append(String.format("%2d", t.getDayOfMonth()));
                case 'H' -> sb.append(String.format("%02d", t.getHour()));
                case 'I' -> sb.append(String.format("%02d", (t.getHour() + 11) % 12 + 1));
                case 'M' -> sb.append(String.format("%02d", t.getMinute()));
                case 'S' -> sb.append(String.format("%02d", t.getSecond()));
                case 'p' -> sb.append(t.getHour() < 12 ? "AM" : "PM");
                case 'B' -> sb.append(t.getMonth().getDisplayName(TextStyle.FULL, Locale.ENGLISH));
                case 'b', 'h' -> sb.append(t.getMonth().getDisplayName(TextStyle.SHORT, Locale.ENGLISH));
                case 'A' -> sb.append(t.getDayOfWeek().getDisplayName(TextStyle.FULL, Locale.ENGLISH));
                case 'a' -> sb.append(t.getDayOfWeek().getDisplayName(TextStyle.SHORT, Locale.ENGLISH));
                case 'j' -> sb.append(String.format("%03d", t.getDayOfYear()));
                case 'f' -> sb.append(String.format("%06d", t.getNano() / 1000));
                case '%' -> sb.append('%');
                default -> sb.append('%').append(f);
            }
        }
        return sb.toString();
    }

    // helpers for JinjaFilters

    static Set<Object> newKeySet() {
        return new HashSet<>();
    }

    static boolean isCollection(Object o) {
        return o instanceof Collection<?>;
    }
}
