package dev.specula.chat;

import dev.specula.chat.Py.Callable;
import dev.specula.chat.Py.MarkedBuilder;
import dev.specula.chat.Py.Tuple;
import dev.specula.chat.Py.Undefined;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.function.Function;

/** Jinja2's built-in filters and tests that chat templates use, Hugging Face's tojson, and Python's str/dict/list methods. */
final class JinjaFilters {
    private JinjaFilters() {}

    private static Object arg(List<Object> args, Map<String, Object> kw, int index, String name, Object fallback) {
        if (index < args.size()) return args.get(index);
        if (kw.containsKey(name)) return kw.get(name);
        return fallback;
    }

    private static String text(Object o) {
        return Py.str(o);
    }

    private static Object stringValue(Object o) {
        return Py.isString(o) ? o : Py.str(o);
    }

    static Object filter(JinjaRenderer r, String name, Object v, List<Object> args, Map<String, Object> kw) {
        switch (name) {
            case "default", "d" -> {
                Object fallback = arg(args, kw, 0, "default_value", "");
                boolean bool = Py.truthy(arg(args, kw, 1, "boolean", false));
                return v instanceof Undefined || (bool && !Py.truthy(v)) ? fallback : v;
            }
            case "safe", "string" -> {
                return stringValue(v);
            }
            case "tojson" -> {
                return tojson(v, args, kw);
            }
            case "length", "count" -> {
                return Py.length(v);
            }
            default -> { }
        }
        if (v instanceof Undefined u && !name.equals("list") && !name.equals("join") && !name.equals("trim")
                && !name.equals("upper") && !name.equals("lower") && !name.equals("title") && !name.equals("capitalize")) {
            throw u.fail();
        }
        return switch (name) {
            case "trim" -> {
                Object chars = arg(args, kw, 0, "chars", null);
                yield Py.strip(stringValue(v), chars == null ? null : text(chars), true, true);
            }
            case "upper" -> MarkedText.derived(v, Py.upper(text(v)));
            case "lower" -> MarkedText.derived(v, Py.lower(text(v)));
            case "title" -> MarkedText.derived(v, Py.jinjaTitle(text(v)));
            case "capitalize" -> MarkedText.derived(v, Py.capitalize(text(v)));
            case "replace" -> {
                Object count = arg(args, kw, 2, "count", null);
                yield Py.replace(stringValue(v), text(arg(args, kw, 0, "old", "")), text(arg(args, kw, 1, "new", "")),
                        count == null ? -1 : Py.toLong(count));
            }
            case "list" -> Py.toList(v);
            case "first" -> {
                List<Object> l = Py.toList(v);
                yield l.isEmpty() ? new Undefined("No first item, sequence was empty.") : l.getFirst();
            }
            case "last" -> {
                List<Object> l = Py.toList(v);
                yield l.isEmpty() ? new Undefined("No last item, sequence was empty.") : l.getLast();
            }
            case "join" -> {
                Object sep = arg(args, kw, 0, "d", "");
                Object attribute = arg(args, kw, 1, "attribute", null);
                Object out = "";
                boolean first = true;
                for (Object item : Py.toList(v)) {
                    if (attribute != null) item = attrPath(r, item, attribute);
                    if (!first) out = MarkedText.concat(out, stringValue(sep));
                    first = false;
                    out = MarkedText.concat(out, stringValue(item));
                }
                yield out;
            }
            case "map" -> {
                List<Object> out = new ArrayList<>();
                Object attribute = kw.get("attribute");
                for (Object item : Py.toList(v)) {
                    if (attribute != null) {
                        Object got = attrPath(r, item, attribute);
                        if (got instanceof Undefined && kw.containsKey("default")) got = kw.get("default");
                        out.add(got);
                    } else {
                        if (args.isEmpty()) throw new ChatTemplateException("map requires a filter argument");
                        out.add(filter(r, text(args.getFirst()), item, args.subList(1, args.size()), Map.of()));
                    }
                }
                yield out;
            }
            case "select", "reject" -> {
                boolean keep = name.equals("select");
                List<Object> out = new ArrayList<>();
                for (Object item : Py.toList(v)) {
                    boolean t = args.isEmpty() ? Py.truthy(item)
                            : test(text(args.getFirst()), item, args.subList(1, args.size()), n -> new Undefined(n));
                    if (t == keep) out.add(item);
                }
                yield out;
            }
            case "selectattr", "rejectattr" -> {
                boolean keep = name.equals("selectattr");
                if (args.isEmpty()) throw new ChatTemplateException(name + " needs an attribute name");
                List<Object> out = new ArrayList<>();
                for (Object item : Py.toList(v)) {
                    Object a = attrPath(r, item, args.getFirst());
                    boolean t = args.size() < 2 ? Py.truthy(a)
                            : test(text(args.get(1)), a, args.subList(2, args.size()), n -> new Undefined(n));
                    if (t == keep) out.add(item);
                }
                yield out;
            }
            case "items" -> {
                if (!(v instanceof Map<?, ?> m)) throw new ChatTemplateException("Can only get item pairs from a mapping.");
                List<Object> out = new ArrayList<>();
                m.forEach((k, x) -> out.add(new Tuple(k, x)));
                yield out;
            }
            case "dictsort" -> {
                if (!(v instanceof Map<?, ?> m)) throw new ChatTemplateException("You can only sort by either \"key\" or \"value\"");
                boolean byValue = "value".equals(text(arg(args, kw, 1, "by", "key")));
                boolean reverse = Py.truthy(arg(args, kw, 2, "reverse", false));
                List<Object> out = new ArrayList<>();
                m.forEach((k, x) -> out.add(new Tuple(k, x)));
                Comparator<Object> c = Comparator.comparing(t -> sortKey(((Tuple) t).get(byValue ? 1 : 0), false), Py::compare);
                out.sort(reverse ? c.reversed() : c);
                yield out;
            }
            case "sort" -> {
                boolean reverse = Py.truthy(arg(args, kw, 0, "reverse", false));
                boolean caseSensitive = Py.truthy(arg(args, kw, 1, "case_sensitive", false));
                Object attribute = arg(args, kw, 2, "attribute", null);
                List<Object> out = Py.toList(v);
                Function<Object, Object> key = x -> sortKey(attribute == null ? x : attrPath(r, x, attribute), caseSensitive);
                Comparator<Object> c = Comparator.comparing(key, Py::compare);
                out.sort(reverse ? c.reversed() : c);
                yield out;
            }
            case "unique" -> {
                List<Object> out = new ArrayList<>();
                Set<Object> seen = JinjaRenderer.newKeySet();
                for (Object x : Py.toList(v)) if (seen.add(sortKey(Py.key(x), false))) out.add(x);
                yield out;
            }
            case "reverse" -> {
                if (Py.isString(v)) {
                    yield MarkedText.derived(v, new StringBuilder(text(v)).reverse().toString());
                }
                List<Object> out = Py.toList(v);
                java.util.Collections.reverse(out);
                yield out;
            }
            case "int" -> toInt(v, arg(args, kw, 0, "default", 0L));
            case "float" -> toFloat(v, arg(args, kw, 0, "default", 0.0));
            case "abs" -> v instanceof Long l ? (Object) Math.abs(l) : v instanceof Double d ? (Object) Math.abs(d)
                    : (Object) Math.abs(Py.toLong(v));
            case "round" -> {
                long precision = Py.toLong(arg(args, kw, 0, "precision", 0L));
                String method = text(arg(args, kw, 1, "method", "common"));
                double x = Py.toDouble(v) * Math.pow(10, precision);
                double y = switch (method) {
                    case "ceil" -> Math.ceil(x);
                    case "floor" -> Math.floor(x);
                    default -> Math.signum(x) * Math.floor(Math.abs(x) + 0.5);
                };
                yield y / Math.pow(10, precision);
            }
            case "sum" -> {
                Object attribute = arg(args, kw, 0, "attribute", null);
                Object total = arg(args, kw, 1, "start", 0L);
                for (Object x : Py.toList(v)) total = r.binary("+", total, attribute == null ? x : attrPath(r, x, attribute));
                yield total;
            }
            case "min", "max" -> {
                List<Object> l = Py.toList(v);
                if (l.isEmpty()) yield new Undefined("No aggregated item, sequence was empty.");
                Object best = l.getFirst();
                for (Object x : l) {
                    int c = Py.compare(sortKey(x, false), sortKey(best, false));
                    if (name.equals("min") ? c < 0 : c > 0) best = x;
                }
                yield best;
            }
            case "indent" -> {
                Object width = arg(args, kw, 0, "width", 4L);
                boolean first = Py.truthy(arg(args, kw, 1, "first", false));
                boolean blank = Py.truthy(arg(args, kw, 2, "blank", false));
                String pad = Py.isString(width) ? text(width) : " ".repeat((int) Py.toLong(width));
                List<String> lines = new ArrayList<>(List.of((text(v) + "\n").split("\n", -1)));
                lines.removeLast(); // splitlines() drops the empty piece after the final newline
                StringBuilder sb = new StringBuilder(lines.getFirst());
                for (String line : lines.subList(1, lines.size())) sb.append('\n').append(blank || !line.isEmpty() ? pad : "").append(line);
                yield MarkedText.derived(v, (first ? pad : "") + sb);
            }
            case "escape", "e", "forceescape" -> MarkedText.derived(v, text(v).replace("&", "&amp;").replace("<", "&lt;")
                    .replace(">", "&gt;").replace("'", "&#39;").replace("\"", "&#34;"));
            case "wordcount" -> (long) Py.split(text(v), null, -1).size();
            case "format" -> percentFormat(text(v), args.size() == 1 ? args.getFirst() : new Tuple(args));
            case "batch", "slice", "groupby", "truncate", "striptags", "urlencode", "urlize", "wordwrap", "xmlattr", "center",
                 "filesizeformat", "pprint", "attr" -> throw new ChatTemplateException("the '" + name + "' filter is not supported");
            default -> throw new ChatTemplateException("No filter named '" + name + "'.");
        };
    }

    private static Object sortKey(Object x, boolean caseSensitive) {
        if (!caseSensitive && Py.isString(x)) return Py.lower(x.toString());
        return x instanceof MarkedText m ? m.text : x;
    }

    /** Jinja2's make_attrgetter: a dotted path of items (integers index lists). */
    private static Object attrPath(JinjaRenderer r, Object item, Object attribute) {
        if (attribute instanceof Long) return r.getItem(item, attribute);
        for (String part : text(attribute).split("\\.")) {
            Object key = part.chars().allMatch(Character::isDigit) && !part.isEmpty() ? (Object) Long.parseLong(part) : part;
            item = r.getItem(item, key);
        }
        return item;
    }

    private static Object toInt(Object v, Object fallback) {
        if (v instanceof Long) return v;
        if (v instanceof Boolean b) return b ? 1L : 0L;
        if (v instanceof Double d) return (long) (double) d;
        try {
            String s = text(v).strip().replace("_", "");
            return Long.parseLong(s);
        } catch (NumberFormatException e) {
            try {
                return (long) Double.parseDouble(text(v).strip());
            } catch (NumberFormatException e2) {
                return fallback;
            }
        }
    }

    private static Object toFloat(Object v, Object fallback) {
        if (Py.isNumber(v)) return Py.toDouble(v);
        try {
            return Double.parseDouble(text(v).strip());
        } catch (NumberFormatException e) {
            return fallback;
        }
    }

    /** Hugging Face's tojson: json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False). */
    static Object tojson(Object v, List<Object> args, Map<String, Object> kw) {
        boolean ensureAscii = Py.truthy(arg(args, kw, 0, "ensure_ascii", false));
        Object indentArg = arg(args, kw, 1, "indent", null);
        Object separators = arg(args, kw, 2, "separators", null);
        boolean sortKeys = Py.truthy(arg(args, kw, 3, "sort_keys", false));
        String indent = null;
        if (indentArg != null) indent = Py.isString(indentArg) ? text(indentArg) : " ".repeat((int) Math.max(0, Py.toLong(indentArg)));
        String itemSep = indent == null ? ", " : ",";
        String keySep = ": ";
        if (separators != null) {
            List<Object> s = Py.toList(separators);
            if (s.size() != 2) throw new ChatTemplateException("separators must be an (item_separator, key_separator) pair");
            itemSep = text(s.get(0));
            keySep = text(s.get(1));
        }
        if (v instanceof Undefined) throw new ChatTemplateException("Object of type Undefined is not JSON serializable");
        MarkedBuilder out = new MarkedBuilder();
        Py.dumpJson(v, ensureAscii, indent, itemSep, keySep, sortKeys, 0, out);
        return out.value();
    }

    /** Jinja2's tests. */
    static boolean test(String name, Object v, List<Object> args, Function<String, Object> lookup) {
        Object a = args.isEmpty() ? null : args.getFirst();
        return switch (name) {
            case "defined" -> !(v instanceof Undefined);
            case "undefined" -> v instanceof Undefined;
            case "none" -> v == null;
            case "string" -> Py.isString(v);
            case "mapping" -> v instanceof Map;
            case "iterable" -> Py.isString(v) || v instanceof List || v instanceof Map || v instanceof Undefined;
            case "sequence" -> Py.isString(v) || v instanceof List || v instanceof Map || v instanceof Undefined;
            case "number" -> Py.isNumber(v);
            case "integer" -> v instanceof Long;
            case "float" -> v instanceof Double;
            case "boolean" -> v instanceof Boolean;
            case "true" -> Boolean.TRUE.equals(v);
            case "false" -> Boolean.FALSE.equals(v);
            case "callable" -> v instanceof Callable;
            case "odd" -> Py.toLong(v) % 2 != 0;
            case "even" -> Py.toLong(v) % 2 == 0;
            case "divisibleby" -> {
                long divisor = Py.toLong(a);
                if (divisor == 0) throw new ChatTemplateException("integer division or modulo by zero");
                yield Py.toLong(v) % divisor == 0;
            }
            case "eq", "equalto", "==" -> Py.equal(v, a);
            case "ne", "!=" -> !Py.equal(v, a);
            case "lt", "lessthan", "<" -> Py.compare(v, a) < 0;
            case "le", "<=" -> Py.compare(v, a) <= 0;
            case "gt", "greaterthan", ">" -> Py.compare(v, a) > 0;
            case "ge", ">=" -> Py.compare(v, a) >= 0;
            case "in" -> JinjaRenderer.contains(a, v);
            case "sameas" -> v == a || (v != null && Py.isNumber(v) && Py.equal(v, a) && v.getClass() == a.getClass());
            case "lower" -> Py.isString(v) && text(v).equals(Py.lower(text(v)));
            case "upper" -> Py.isString(v) && text(v).equals(Py.upper(text(v)));
            case "escaped" -> false;
            case "filter" -> true;
            case "test" -> true;
            default -> throw new ChatTemplateException("No test named '" + name + "'.");
        };
    }

    // ---- Python methods ----

    private static final Set<String> UNSAFE = Set.of("append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse",
            "update", "setdefault", "popitem", "add", "discard");

    /** The bound method name of target, or null when it has none. */
    static Callable method(JinjaRenderer r, Object target, String name) {
        if ((target instanceof List || target instanceof Map) && UNSAFE.contains(name)) {
            return (args, kw) -> {
                throw new ChatTemplateException("access to attribute '" + name + "' of '" + Py.typeName(target) + "' object is unsafe.");
            };
        }
        if (Py.isString(target)) return stringMethod(target, name);
        if (target instanceof Map<?, ?> m) {
            return switch (name) {
                case "items" -> (args, kw) -> {
                    List<Object> out = new ArrayList<>();
                    m.forEach((k, x) -> out.add(new Tuple(k, x)));
                    return out;
                };
                case "keys" -> (args, kw) -> new ArrayList<Object>(m.keySet());
                case "values" -> (args, kw) -> new ArrayList<Object>(m.values());
                case "get" -> (args, kw) -> {
                    Object k = Py.key(arg(args, kw, 0, "key", null));
                    return m.containsKey(k) ? m.get(k) : arg(args, kw, 1, "default", null);
                };
                case "copy" -> (args, kw) -> new LinkedHashMap<Object, Object>(m);
                default -> null;
            };
        }
        if (target instanceof List<?> l) {
            return switch (name) {
                case "index" -> (args, kw) -> {
                    for (int i = 0; i < l.size(); i++) if (Py.equal(l.get(i), args.getFirst())) return (long) i;
                    throw new ChatTemplateException(Py.repr(args.getFirst()) + " is not in list");
                };
                case "count" -> (args, kw) -> l.stream().filter(x -> Py.equal(x, args.getFirst())).count();
                case "copy" -> (args, kw) -> new ArrayList<Object>(l);
                default -> null;
            };
        }
        return null;
    }

    private static Callable stringMethod(Object s, String name) {
        String t = s.toString();
        return switch (name) {
            case "strip", "lstrip", "rstrip" -> (args, kw) -> {
                Object chars = arg(args, kw, 0, "chars", null);
                return Py.strip(s, chars == null ? null : text(chars), !name.equals("rstrip"), !name.equals("lstrip"));
            };
            case "startswith", "endswith" -> (args, kw) -> {
                Object p = arg(args, kw, 0, "prefix", "");
                String sub = t;
                if (args.size() > 1) {
                    int n = t.codePointCount(0, t.length());
                    long from = Py.toLong(args.get(1)), to = args.size() > 2 ? Py.toLong(args.get(2)) : n;
                    if (from < 0) from = Math.max(0, from + n);
                    if (to < 0) to = Math.max(0, to + n);
                    from = Math.min(from, n);
                    to = Math.min(to, n);
                    sub = from >= to ? "" : t.substring(t.offsetByCodePoints(0, (int) from), t.offsetByCodePoints(0, (int) to));
                }
                List<Object> options = p instanceof List<?> l ? new ArrayList<>(l) : List.of(p);
                for (Object o : options) {
                    if (name.equals("startswith") ? sub.startsWith(text(o)) : sub.endsWith(text(o))) return true;
                }
                return false;
            };
            case "split", "rsplit" -> (args, kw) -> {
                Object sep = arg(args, kw, 0, "sep", null);
                long max = Py.toLong(arg(args, kw, 1, "maxsplit", -1L));
                return name.equals("split") ? Py.split(s, sep == null ? null : text(sep), max) : Py.rsplit(s, sep == null ? null : text(sep), max);
            };
            case "splitlines" -> (args, kw) -> {
                List<Object> out = Py.split(s, "\n", -1);
                if (!out.isEmpty() && out.getLast().toString().isEmpty()) out.removeLast();
                return out;
            };
            case "upper" -> (args, kw) -> MarkedText.derived(s, Py.upper(t));
            case "lower" -> (args, kw) -> MarkedText.derived(s, Py.lower(t));
            case "title" -> (args, kw) -> MarkedText.derived(s, Py.pyTitle(t));
            case "capitalize" -> (args, kw) -> MarkedText.derived(s, Py.capitalize(t));
            case "replace" -> (args, kw) -> Py.replace(s, text(args.get(0)), text(args.get(1)), args.size() > 2 ? Py.toLong(args.get(2)) : -1);
            case "find", "rfind", "index", "rindex" -> (args, kw) -> {
                String needle = text(args.getFirst());
                int at = name.endsWith("find") && name.startsWith("r") || name.equals("rindex") ? t.lastIndexOf(needle) : t.indexOf(needle);
                if (at < 0 && name.contains("index")) throw new ChatTemplateException("substring not found");
                return at < 0 ? -1L : (long) t.codePointCount(0, at);
            };
            case "count" -> (args, kw) -> {
                String needle = text(args.getFirst());
                if (needle.isEmpty()) return Py.length(s) + 1;
                long c = 0;
                for (int at = t.indexOf(needle); at >= 0; at = t.indexOf(needle, at + needle.length())) c++;
                return c;
            };
            case "join" -> (args, kw) -> {
                Object out = "";
                boolean first = true;
                for (Object x : Py.toList(args.getFirst())) {
                    if (!Py.isString(x)) throw new ChatTemplateException("sequence item: expected str instance, " + Py.typeName(x) + " found");
                    if (!first) out = MarkedText.concat(out, s);
                    first = false;
                    out = MarkedText.concat(out, x);
                }
                return out;
            };
            case "isdigit" -> (args, kw) -> !t.isEmpty() && t.chars().allMatch(Character::isDigit);
            case "isalpha" -> (args, kw) -> !t.isEmpty() && t.chars().allMatch(Character::isLetter);
            case "isalnum" -> (args, kw) -> !t.isEmpty() && t.chars().allMatch(Character::isLetterOrDigit);
            case "isspace" -> (args, kw) -> !t.isEmpty() && Py.isBlank(t);
            case "islower" -> (args, kw) -> t.chars().anyMatch(Character::isLetter) && t.equals(Py.lower(t));
            case "isupper" -> (args, kw) -> t.chars().anyMatch(Character::isLetter) && t.equals(Py.upper(t));
            case "removeprefix" -> (args, kw) -> t.startsWith(text(args.getFirst()))
                    ? MarkedText.substring(s, text(args.getFirst()).length(), t.length()) : s;
            case "removesuffix" -> (args, kw) -> t.endsWith(text(args.getFirst())) && !text(args.getFirst()).isEmpty()
                    ? MarkedText.substring(s, 0, t.length() - text(args.getFirst()).length()) : s;
            case "format" -> (args, kw) -> MarkedText.derived(s, braceFormat(t, args, kw));
            default -> null;
        };
    }

    /** str.format with {}, {0} and {name} fields (no format specs). */
    private static String braceFormat(String t, List<Object> args, Map<String, Object> kw) {
        StringBuilder sb = new StringBuilder();
        int auto = 0;
        for (int i = 0; i < t.length(); i++) {
            char c = t.charAt(i);
            if (c == '{' && i + 1 < t.length() && t.charAt(i + 1) == '{') {
                sb.append('{');
                i++;
            } else if (c == '}' && i + 1 < t.length() && t.charAt(i + 1) == '}') {
                sb.append('}');
                i++;
            } else if (c == '{') {
                int end = t.indexOf('}', i);
                if (end < 0) throw new ChatTemplateException("Single '{' encountered in format string");
                String field = t.substring(i + 1, end);
                Object v;
                if (field.isEmpty()) v = args.get(auto++);
                else if (field.chars().allMatch(Character::isDigit)) v = args.get(Integer.parseInt(field));
                else if (kw.containsKey(field)) v = kw.get(field);
                else throw new ChatTemplateException("KeyError: " + Py.repr(field));
                sb.append(Py.str(v));
                i = end;
            } else {
                sb.append(c);
            }
        }
        return sb.toString();
    }

    /** Python's printf-style 'fmt % values' for %s, %r, %d, %i, %f, %%. */
    static Object percentFormat(String fmt, Object values) {
        List<Object> vals = values instanceof Tuple t ? new ArrayList<>(t) : List.of(values == null ? "None" : values);
        if (values == null) vals = java.util.Collections.singletonList(null);
        StringBuilder sb = new StringBuilder();
        int next = 0;
        for (int i = 0; i < fmt.length(); i++) {
            char c = fmt.charAt(i);
            if (c != '%') {
                sb.append(c);
                continue;
            }
            int j = i + 1;
            while (j < fmt.length() && "-+ 0#.0123456789".indexOf(fmt.charAt(j)) >= 0) j++;
            if (j >= fmt.length()) throw new ChatTemplateException("incomplete format");
            String spec = fmt.substring(i + 1, j);
            char conv = fmt.charAt(j);
            i = j;
            if (conv == '%') {
                sb.append('%');
                continue;
            }
            if (next >= vals.size()) throw new ChatTemplateException("not enough arguments for format string");
            Object v = vals.get(next++);
            switch (conv) {
                case 's' -> sb.append(String.format("%" + spec + "s", Py.str(v)));
                case 'r' -> sb.append(String.format("%" + spec + "s", Py.repr(v)));
                case 'd', 'i' -> sb.append(String.format("%" + spec + "d", Py.toLong(v)));
                case 'f', 'e', 'g' -> sb.append(String.format(Locale.ROOT, "%" + (spec.contains(".") || conv != 'f' ? spec : spec + ".6") + conv, Py.toDouble(v)));
                default -> throw new ChatTemplateException("unsupported format character '" + conv + "'");
            }
        }
        if (next < vals.size()) throw new ChatTemplateException("not all arguments converted during string formatting");
        return sb.toString();
    }
}
