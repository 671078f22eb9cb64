package dev.specula.chat;

import java.math.BigDecimal;
import java.util.AbstractList;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.Collection;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * Python value semantics for the template engine, so output matches Jinja2 byte for byte: {@code str()} and
 * {@code repr()} of None, booleans, floats, lists, tuples and dicts; truthiness and equality; the string methods
 * templates call; and {@code json.dumps} as Hugging Face's {@code tojson} calls it. Strings are {@link String} or
 * {@link MarkedText}; integers {@link Long}; floats {@link Double}; lists {@link List}; dicts {@link Map}
 * (insertion-ordered); None is null.
 */
final class Py {
    private Py() {}

    /** Jinja2's Undefined: prints as nothing, is false, iterates as empty; anything else fails with its hint. */
    static final class Undefined {
        final String hint;

        Undefined(String hint) {
            this.hint = hint;
        }

        ChatTemplateException fail() {
            return new ChatTemplateException(hint);
        }

        @Override
        public String toString() {
            return "";
        }
    }

    /** A Python tuple: an immutable list that prints with parentheses. */
    static final class Tuple extends AbstractList<Object> {
        private final Object[] items;

        Tuple(Object... items) {
            this.items = items;
        }

        Tuple(List<?> items) {
            this.items = items.toArray();
        }

        @Override
        public Object get(int index) {
            return items[index];
        }

        @Override
        public int size() {
            return items.length;
        }
    }

    /** Something a template can call: a global, a macro, a bound method. */
    @FunctionalInterface
    interface Callable {
        Object call(List<Object> args, Map<String, Object> kwargs);
    }

    // ---- types ----

    static boolean isString(Object o) {
        return MarkedText.isString(o);
    }

    static boolean isNumber(Object o) {
        return o instanceof Long || o instanceof Double || o instanceof Boolean;
    }

    static String typeName(Object o) {
        if (o == null) return "NoneType";
        if (isString(o)) return "str";
        if (o instanceof Boolean) return "bool";
        if (o instanceof Long) return "int";
        if (o instanceof Double) return "float";
        if (o instanceof Tuple) return "tuple";
        if (o instanceof List) return "list";
        if (o instanceof Map) return "dict";
        if (o instanceof Undefined) return "Undefined";
        if (o instanceof Callable) return "function";
        return o.getClass().getSimpleName();
    }

    static boolean truthy(Object o) {
        if (o == null || o instanceof Undefined) return false;
        if (o instanceof Boolean b) return b;
        if (o instanceof Long l) return l != 0;
        if (o instanceof Double d) return d != 0.0;
        if (o instanceof CharSequence s) return s.length() > 0;
        if (o instanceof Collection<?> c) return !c.isEmpty();
        if (o instanceof Map<?, ?> m) return !m.isEmpty();
        return true;
    }

    // ---- str() and repr() ----

    static String str(Object o) {
        if (o == null) return "None";
        if (o instanceof CharSequence s) return s.toString();
        if (o instanceof Boolean b) return b ? "True" : "False";
        if (o instanceof Long l) return l.toString();
        if (o instanceof Double d) return floatRepr(d);
        if (o instanceof Undefined) return "";
        return repr(o);
    }

    static String repr(Object o) {
        if (o instanceof CharSequence s) return stringRepr(s.toString());
        if (o instanceof Tuple t) {
            StringBuilder sb = new StringBuilder("(");
            for (int i = 0; i < t.size(); i++) {
                if (i > 0) sb.append(", ");
                sb.append(repr(t.get(i)));
            }
            return sb.append(t.size() == 1 ? ",)" : ")").toString();
        }
        if (o instanceof List<?> l) {
            StringBuilder sb = new StringBuilder("[");
            for (int i = 0; i < l.size(); i++) {
                if (i > 0) sb.append(", ");
                sb.append(repr(l.get(i)));
            }
            return sb.append(']').toString();
        }
        if (o instanceof Map<?, ?> m) {
            StringBuilder sb = new StringBuilder("{");
            boolean first = true;
            for (Map.Entry<?, ?> e : m.entrySet()) {
                if (!first) sb.append(", ");
                first = false;
                sb.append(repr(e.getKey())).append(": ").append(repr(e.getValue()));
            }
            return sb.append('}').toString();
        }
        if (o instanceof Undefined) return "Undefined";
        return str(o);
    }

    static String stringRepr(String s) {
        char quote = s.indexOf('\'') >= 0 && s.indexOf('"') < 0 ? '"' : '\'';
        StringBuilder sb = new StringBuilder().append(quote);
        for (int i = 0; i < s.length(); ) {
            int cp = s.codePointAt(i);
            i += Character.charCount(cp);
            if (cp == quote || cp == '\\') sb.append('\\').appendCodePoint(cp);
            else if (cp == '\n') sb.append("\\n");
            else if (cp == '\r') sb.append("\\r");
            else if (cp == '\t') sb.append("\\t");
            else if (cp < 0x20 || cp == 0x7f) sb.append(String.format("\\x%02x", cp));
            else if (!isPrintable(cp)) sb.append(cp <= 0xff ? String.format("\\x%02x", cp)
                    : cp <= 0xffff ? String.format("\\u%04x", cp) : String.format("\\U%08x", cp));
            else sb.appendCodePoint(cp);
        }
        return sb.append(quote).toString();
    }

    private static boolean isPrintable(int cp) {
        if (cp == ' ') return true;
        int t = Character.getType(cp);
        return !(t == Character.CONTROL || t == Character.FORMAT || t == Character.SURROGATE || t == Character.PRIVATE_USE
                || t == Character.UNASSIGNED || t == Character.LINE_SEPARATOR || t == Character.PARAGRAPH_SEPARATOR
                || t == Character.SPACE_SEPARATOR);
    }

    /** Python's repr of a float: the shortest round-trip digits, scientific below 1e-4 and from 1e16. */
    static String floatRepr(double d) {
        if (Double.isNaN(d)) return "nan";
        if (Double.isInfinite(d)) return d > 0 ? "inf" : "-inf";
        if (d == 0) return (1 / d < 0) ? "-0.0" : "0.0";
        BigDecimal b = new BigDecimal(Double.toString(Math.abs(d))).stripTrailingZeros();
        String digits = b.unscaledValue().toString();
        int exp = digits.length() - 1 - b.scale(); // decimal exponent of the first digit
        StringBuilder sb = new StringBuilder(d < 0 ? "-" : "");
        if (exp < -4 || exp >= 16) {
            sb.append(digits.charAt(0));
            if (digits.length() > 1) sb.append('.').append(digits, 1, digits.length());
            sb.append('e').append(exp < 0 ? '-' : '+');
            String e = Integer.toString(Math.abs(exp));
            if (e.length() < 2) sb.append('0');
            sb.append(e);
        } else if (exp < 0) {
            sb.append("0.").append("0".repeat(-exp - 1)).append(digits);
        } else if (digits.length() <= exp + 1) {
            sb.append(digits).append("0".repeat(exp + 1 - digits.length())).append(".0");
        } else {
            sb.append(digits, 0, exp + 1).append('.').append(digits, exp + 1, digits.length());
        }
        return sb.toString();
    }

    // ---- equality and ordering ----

    static boolean equal(Object a, Object b) {
        if (a == null || b == null) return a == b;
        if (isNumber(a) && isNumber(b)) return toDouble(a) == toDouble(b);
        if (isString(a) && isString(b)) return a.toString().equals(b.toString());
        if (a instanceof List<?> x && b instanceof List<?> y) {
            if (x.size() != y.size() || (a instanceof Tuple) != (b instanceof Tuple)) return false;
            for (int i = 0; i < x.size(); i++) if (!equal(x.get(i), y.get(i))) return false;
            return true;
        }
        if (a instanceof Map<?, ?> x && b instanceof Map<?, ?> y) {
            if (x.size() != y.size()) return false;
            for (Map.Entry<?, ?> e : x.entrySet()) {
                if (!y.containsKey(e.getKey()) || !equal(e.getValue(), y.get(e.getKey()))) return false;
            }
            return true;
        }
        if (a instanceof Undefined && b instanceof Undefined) return true;
        return a.equals(b);
    }

    static int compare(Object a, Object b) {
        if (isNumber(a) && isNumber(b)) {
            if (a instanceof Double || b instanceof Double) return Double.compare(toDouble(a), toDouble(b));
            return Long.compare(toLong(a), toLong(b));
        }
        if (isString(a) && isString(b)) return a.toString().compareTo(b.toString());
        if (a instanceof List<?> x && b instanceof List<?> y) {
            for (int i = 0; i < Math.min(x.size(), y.size()); i++) {
                if (!equal(x.get(i), y.get(i))) return compare(x.get(i), y.get(i));
            }
            return Integer.compare(x.size(), y.size());
        }
        throw new ChatTemplateException("'<' not supported between instances of '" + typeName(a) + "' and '" + typeName(b) + "'");
    }

    static double toDouble(Object o) {
        if (o instanceof Boolean b) return b ? 1 : 0;
        return ((Number) o).doubleValue();
    }

    static long toLong(Object o) {
        if (o instanceof Boolean b) return b ? 1 : 0;
        return ((Number) o).longValue();
    }

    /** Dict keys are stored as plain values: strings without marks. */
    static Object key(Object o) {
        return o instanceof MarkedText m ? m.text : o;
    }

    // ---- strings ----

    /** Python's str.isspace for one char. */
    static boolean isSpace(char c) {
        return Character.isWhitespace(c) || Character.isSpaceChar(c) || c == '\u0085';
    }

    static boolean isBlank(String s) {
        for (int i = 0; i < s.length(); i++) if (!isSpace(s.charAt(i))) return false;
        return true;
    }

    static String rstrip(String s) {
        int e = s.length();
        while (e > 0 && isSpace(s.charAt(e - 1))) e--;
        return s.substring(0, e);
    }

    /** str.strip/lstrip/rstrip(chars): chars null strips whitespace. Marks kept. */
    static Object strip(Object s, String chars, boolean left, boolean right) {
        String t = s.toString();
        int b = 0, e = t.length();
        if (left) while (b < e && stripped(t.charAt(b), chars)) b++;
        if (right) while (e > b && stripped(t.charAt(e - 1), chars)) e--;
        return MarkedText.substring(s, b, e);
    }

    private static boolean stripped(char c, String chars) {
        return chars == null ? isSpace(c) : chars.indexOf(c) >= 0;
    }

    /** str.split(sep=None, maxsplit=-1). Marks kept on the pieces. */
    static List<Object> split(Object s, String sep, long maxsplit) {
        String t = s.toString();
        List<Object> out = new ArrayList<>();
        if (sep == null) {
            int i = 0, n = t.length();
            while (true) {
                while (i < n && isSpace(t.charAt(i))) i++;
                if (i >= n) break;
                if (maxsplit >= 0 && out.size() == maxsplit) {
                    int e = n;
                    while (e > i && isSpace(t.charAt(e - 1))) e--;
                    out.add(MarkedText.substring(s, i, e));
                    break;
                }
                int j = i;
                while (j < n && !isSpace(t.charAt(j))) j++;
                out.add(MarkedText.substring(s, i, j));
                i = j;
            }
            return out;
        }
        if (sep.isEmpty()) throw new ChatTemplateException("empty separator");
        int from = 0, at;
        while ((maxsplit < 0 || out.size() < maxsplit) && (at = t.indexOf(sep, from)) >= 0) {
            out.add(MarkedText.substring(s, from, at));
            from = at + sep.length();
        }
        out.add(MarkedText.substring(s, from, t.length()));
        return out;
    }

    /** str.rsplit(sep, maxsplit) for an explicit separator. */
    static List<Object> rsplit(Object s, String sep, long maxsplit) {
        if (sep == null || maxsplit < 0) return split(s, sep, maxsplit);
        String t = s.toString();
        List<Object> out = new ArrayList<>();
        int end = t.length(), at;
        while (out.size() < maxsplit && (at = t.lastIndexOf(sep, end - sep.length())) >= 0 && end - sep.length() >= 0) {
            out.addFirst(MarkedText.substring(s, at + sep.length(), end));
            end = at;
        }
        out.addFirst(MarkedText.substring(s, 0, end));
        return out;
    }

    /** str.replace(old, new, count). */
    static Object replace(Object s, String old, String with, long count) {
        String t = s.toString();
        StringBuilder sb = new StringBuilder();
        BitSet marks = new BitSet();
        BitSet src = MarkedText.marks(s);
        int from = 0, done = 0;
        while (count < 0 || done < count) {
            int at = old.isEmpty() ? (from <= t.length() ? from : -1) : t.indexOf(old, from);
            if (at < 0) break;
            copy(t, src, from, at, sb, marks);
            int w = sb.length();
            sb.append(with);
            if (s instanceof MarkedText) marks.set(w, sb.length()); // replaced text takes the source's marks
            if (old.isEmpty()) {
                if (at < t.length()) copy(t, src, at, at + 1, sb, marks);
                from = at + 1;
            } else {
                from = at + old.length();
            }
            done++;
        }
        if (from < t.length()) copy(t, src, from, t.length(), sb, marks);
        return MarkedText.of(sb.toString(), marks);
    }

    private static void copy(String t, BitSet src, int from, int to, StringBuilder sb, BitSet marks) {
        int base = sb.length();
        sb.append(t, from, to);
        for (int i = src.nextSetBit(from); i >= 0 && i < to; i = src.nextSetBit(i + 1)) marks.set(base + i - from);
    }

    /** Python's str.title(): each cased letter after an uncased character upper, the rest lower. */
    static String pyTitle(String s) {
        StringBuilder sb = new StringBuilder();
        boolean prevCased = false;
        for (int i = 0; i < s.length(); ) {
            int cp = s.codePointAt(i);
            i += Character.charCount(cp);
            boolean cased = Character.isUpperCase(cp) || Character.isLowerCase(cp) || Character.isTitleCase(cp);
            sb.appendCodePoint(prevCased ? Character.toLowerCase(cp) : Character.toTitleCase(cp));
            prevCased = cased;
        }
        return sb.toString();
    }

    /** Jinja2's title filter: words start after '-', whitespace or an opening bracket. */
    static String jinjaTitle(String s) {
        StringBuilder sb = new StringBuilder();
        boolean start = true;
        for (int i = 0; i < s.length(); ) {
            int cp = s.codePointAt(i);
            i += Character.charCount(cp);
            boolean separator = cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' || (cp < 0x10000 && isSpace((char) cp));
            if (separator) {
                sb.appendCodePoint(cp);
                start = true;
            } else {
                sb.appendCodePoint(start ? Character.toUpperCase(cp) : Character.toLowerCase(cp));
                start = false;
            }
        }
        return sb.toString();
    }

    static String capitalize(String s) {
        if (s.isEmpty()) return s;
        int first = s.codePointAt(0);
        return new StringBuilder().appendCodePoint(Character.toUpperCase(first))
                .append(s.substring(Character.charCount(first)).toLowerCase(java.util.Locale.ROOT)).toString();
    }

    static String upper(String s) {
        return s.toUpperCase(java.util.Locale.ROOT);
    }

    static String lower(String s) {
        return s.toLowerCase(java.util.Locale.ROOT);
    }

    // ---- json.dumps ----

    /** json.dumps(value, ensure_ascii, indent, separators, sort_keys) into out, string marks kept. */
    static void dumpJson(Object v, boolean ensureAscii, String indent, String itemSep, String keySep, boolean sortKeys,
                         int level, MarkedBuilder out) {
        if (v == null) out.append("null");
        else if (v instanceof Boolean b) out.append(b ? "true" : "false");
        else if (v instanceof Long l) out.append(l.toString());
        else if (v instanceof Double d) {
            if (d.isNaN()) out.append("NaN");
            else if (d.isInfinite()) out.append(d > 0 ? "Infinity" : "-Infinity");
            else out.append(floatRepr(d));
        } else if (isString(v)) {
            out.append(jsonString(v.toString(), ensureAscii), v instanceof MarkedText);
        } else if (v instanceof List<?> list) {
            if (list.isEmpty()) {
                out.append("[]");
                return;
            }
            out.append("[");
            for (int i = 0; i < list.size(); i++) {
                if (i > 0) out.append(itemSep);
                newline(indent, level + 1, out);
                dumpJson(list.get(i), ensureAscii, indent, itemSep, keySep, sortKeys, level + 1, out);
            }
            newline(indent, level, out);
            out.append("]");
        } else if (v instanceof Map<?, ?> map) {
            if (map.isEmpty()) {
                out.append("{}");
                return;
            }
            Map<?, ?> entries = map;
            if (sortKeys) {
                TreeMap<String, Object> sorted = new TreeMap<>();
                for (Map.Entry<?, ?> e : map.entrySet()) sorted.put(str(e.getKey()), e.getValue());
                entries = sorted;
            }
            out.append("{");
            boolean first = true;
            for (Map.Entry<?, ?> e : entries.entrySet()) {
                if (!first) out.append(itemSep);
                first = false;
                newline(indent, level + 1, out);
                Object k = e.getKey();
                String keyText = k == null ? "null" : k instanceof Boolean b ? (b ? "true" : "false")
                        : isString(k) ? k.toString() : str(k);
                out.append(jsonString(keyText, ensureAscii));
                out.append(keySep);
                dumpJson(e.getValue(), ensureAscii, indent, itemSep, keySep, sortKeys, level + 1, out);
            }
            newline(indent, level, out);
            out.append("}");
        } else {
            throw new ChatTemplateException("Object of type " + typeName(v) + " is not JSON serializable");
        }
    }

    private static void newline(String indent, int level, MarkedBuilder out) {
        if (indent == null) return;
        out.append("\n" + indent.repeat(level));
    }

    static String jsonString(String s, boolean ensureAscii) {
        StringBuilder sb = new StringBuilder(s.length() + 2).append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> sb.append("\\\"");
                case '\\' -> sb.append("\\\\");
                case '\n' -> sb.append("\\n");
                case '\r' -> sb.append("\\r");
                case '\t' -> sb.append("\\t");
                case '\b' -> sb.append("\\b");
                case '\f' -> sb.append("\\f");
                default -> {
                    if (c < 0x20 || (ensureAscii && c > 0x7e)) sb.append(String.format("\\u%04x", (int) c));
                    else sb.append(c);
                }
            }
        }
        return sb.append('"').toString();
    }

    /** Text with marks, built by appending. */
    static final class MarkedBuilder {
        final StringBuilder text = new StringBuilder();
        final BitSet marks = new BitSet();

        void append(String s) {
            text.append(s);
        }

        void append(String s, boolean marked) {
            int from = text.length();
            text.append(s);
            if (marked) marks.set(from, text.length());
        }

        void append(Object value) {
            int from = text.length();
            String s = value.toString();
            text.append(s);
            BitSet m = MarkedText.marks(value);
            for (int i = m.nextSetBit(0); i >= 0; i = m.nextSetBit(i + 1)) marks.set(from + i);
        }

        int length() {
            return text.length();
        }

        Object value() {
            return MarkedText.of(text.toString(), marks);
        }
    }

    static Iterator<?> iterate(Object o) {
        if (o instanceof Undefined || o == null) {
            if (o == null) throw new ChatTemplateException("'NoneType' object is not iterable");
            return List.of().iterator();
        }
        if (o instanceof List<?> l) return l.iterator();
        if (o instanceof Map<?, ?> m) return m.keySet().iterator();
        if (isString(o)) {
            List<Object> chars = new ArrayList<>();
            String s = o.toString();
            for (int i = 0; i < s.length(); ) {
                int n = Character.charCount(s.codePointAt(i));
                chars.add(MarkedText.substring(o, i, i + n));
                i += n;
            }
            return chars.iterator();
        }
        throw new ChatTemplateException("'" + typeName(o) + "' object is not iterable");
    }

    static List<Object> toList(Object o) {
        List<Object> out = new ArrayList<>();
        iterate(o).forEachRemaining(out::add);
        return out;
    }

    /** len() of a string counts code points, as Python does. */
    static long length(Object o) {
        if (isString(o)) return o.toString().codePointCount(0, o.toString().length());
        if (o instanceof Collection<?> c) return c.size();
        if (o instanceof Map<?, ?> m) return m.size();
        if (o instanceof Undefined) return 0;
        throw new ChatTemplateException("object of type '" + typeName(o) + "' has no len()");
    }
}
