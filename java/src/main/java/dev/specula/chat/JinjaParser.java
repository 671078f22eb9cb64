package dev.specula.chat;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Lexes and parses a Jinja template the way Python Jinja2 does in Hugging Face's chat-template environment:
 * {@code trim_blocks} and {@code lstrip_blocks} on, {@code keep_trailing_newline} off, {@code -}/{@code +}
 * whitespace control, newlines normalised to {@code \n}, and the {@code loopcontrols} extension. The result is a
 * tree of {@link JinjaNode}s.
 */
final class JinjaParser {

    // ---- lexing ----

    enum Kind { DATA, VAR_BEGIN, VAR_END, BLOCK_BEGIN, BLOCK_END, NAME, STRING, INT, FLOAT, OP, EOF }

    record Token(Kind kind, String text, Object value, int line) {}

    private static final Pattern RAW_END = Pattern.compile("\\{%(-?)\\s*endraw\\s*(-?)%}");

    /**
     * Expressions and statements nested inside each other, at most: far above real templates' (a few), and low
     * enough that the recursive descent (about a dozen frames a level) stays well inside a thread's stack.
     */
    static final int MAX_NESTING = 100;

    private final String src;
    /** Where each line after the first starts, for {@link #lineAt}. */
    private final int[] lineStarts;
    private final List<Token> tokens = new ArrayList<>();
    private int p;
    private int nesting;

    private JinjaParser(String source) {
        String s = source.replace("\r\n", "\n").replace('\r', '\n');
        if (s.endsWith("\n")) s = s.substring(0, s.length() - 1); // keep_trailing_newline=False
        this.src = s;
        this.lineStarts = lineStartsOf(s);
    }

    private static int[] lineStartsOf(String s) {
        List<Integer> starts = new ArrayList<>();
        for (int i = 0; i < s.length(); i++) if (s.charAt(i) == '\n') starts.add(i + 1);
        return starts.stream().mapToInt(Integer::intValue).toArray();
    }

    static JinjaNode.Template parse(String source) {
        JinjaParser parser = new JinjaParser(source);
        parser.lex();
        List<JinjaNode> body;
        try {
            body = parser.parseBody(List.of());
        } catch (StackOverflowError e) {
            // MAX_NESTING keeps the descent far from this; a thread with a tiny stack is the only way here
            throw new ChatTemplateException("the template nests too deeply to parse");
        }
        if (parser.peek().kind != Kind.EOF) throw parser.error(parser.peek(), "unexpected '" + parser.peek().text + "'");
        return new JinjaNode.Template(body);
    }

    /** The 1-based line of a position: one plus the newlines before it (a binary search: lexing calls it per token). */
    private int lineAt(int pos) {
        int i = java.util.Arrays.binarySearch(lineStarts, pos);
        return 1 + (i >= 0 ? i + 1 : -i - 1);
    }

    /**
     * The code point of the {@code digits} hex digits after the escape letter at {@code letter} ({@code \\xhh},
     * {@code \\uhhhh}, {@code \\Uhhhhhhhh}); a short or non-hex escape, or one past Unicode, is a syntax error, as
     * in Python.
     */
    private int hexEscape(int letter, int digits, int line) {
        String hex = src.substring(letter + 1, Math.min(src.length(), letter + 1 + digits));
        String escape = "\\" + src.charAt(letter) + hex;
        if (hex.length() < digits || !hex.chars().allMatch(ch -> Character.digit(ch, 16) >= 0 && ch < 128))
            throw new ChatTemplateException("template syntax error at line " + line + ": truncated escape '" + escape + "'");
        int codePoint = Integer.parseUnsignedInt(hex, 16);
        if (!Character.isValidCodePoint(codePoint))
            throw new ChatTemplateException("template syntax error at line " + line + ": escape '" + escape + "' is past Unicode");
        return codePoint;
    }

    /** One level deeper into the template; {@link #MAX_NESTING} levels is a syntax error. */
    private void enter() {
        if (++nesting > MAX_NESTING)
            throw error(peek(), "the template nests more than " + MAX_NESTING + " expressions and statements deep");
    }

    private void lex() {
        int pos = 0;
        int n = src.length();
        while (pos < n) {
            int start = nextTagStart(pos);
            String text = src.substring(pos, start < 0 ? n : start);
            if (start < 0) {
                addData(text, pos);
                break;
            }
            char kindChar = src.charAt(start + 1);
            char modifier = start + 2 < n ? src.charAt(start + 2) : ' ';
            if (modifier == '-') {
                text = Py.rstrip(text);
            } else if (kindChar != '{' && modifier != '+') { // lstrip_blocks: blocks and comments
                int lineStart = text.lastIndexOf('\n') + 1;
                boolean lineStarting = lineStart > 0 || pos == 0 || src.charAt(pos - 1) == '\n';
                if (lineStarting && lineStart < text.length() && Py.isBlank(text.substring(lineStart))) text = text.substring(0, lineStart);
            }
            addData(text, pos);
            int inner = start + 2 + (modifier == '-' || modifier == '+' ? 1 : 0);
            if (kindChar == '#') {
                int end = src.indexOf("#}", inner);
                if (end < 0) throw new ChatTemplateException("template syntax error at line " + lineAt(start) + ": unclosed comment");
                pos = end + 2;
                if (end > inner && src.charAt(end - 1) == '-') pos = skipSpace(pos);
                else if (pos < n && src.charAt(pos) == '\n') pos++;
                continue;
            }
            boolean block = kindChar == '%';
            int line = lineAt(start);
            // {% raw %} ... {% endraw %}: the body is data, untouched
            Matcher raw = Pattern.compile("\\s*raw\\s*(-?)%}").matcher(src).region(inner, n);
            if (block && raw.lookingAt()) {
                int bodyStart = raw.end();
                if (raw.group(1).equals("-")) bodyStart = skipSpace(bodyStart);
                else if (bodyStart < n && src.charAt(bodyStart) == '\n') bodyStart++;
                Matcher end = RAW_END.matcher(src);
                if (!end.find(bodyStart)) throw new ChatTemplateException("template syntax error at line " + line + ": missing endraw");
                String body = src.substring(bodyStart, end.start());
                if (end.group(1).equals("-")) body = Py.rstrip(body);
                addData(body, bodyStart);
                pos = end.end();
                if (end.group(2).equals("-")) pos = skipSpace(pos);
                else if (pos < n && src.charAt(pos) == '\n') pos++;
                continue;
            }
            tokens.add(new Token(block ? Kind.BLOCK_BEGIN : Kind.VAR_BEGIN, block ? "{%" : "{{", null, line));
            pos = lexExpression(inner, block);
        }
        tokens.add(new Token(Kind.EOF, "end of template", null, lineAt(n)));
    }

    private void addData(String text, int pos) {
        if (!text.isEmpty()) tokens.add(new Token(Kind.DATA, text, text, lineAt(pos)));
    }

    private int nextTagStart(int from) {
        int i = src.indexOf('{', from);
        while (i >= 0 && i + 1 < src.length()) {
            char c = src.charAt(i + 1);
            if (c == '{' || c == '%' || c == '#') return i;
            i = src.indexOf('{', i + 1);
        }
        return -1;
    }

    private int skipSpace(int pos) {
        while (pos < src.length() && Py.isSpace(src.charAt(pos))) pos++;
        return pos;
    }

    /** Lexes expression tokens up to the closing delimiter; returns the position after it (and its trimming). */
    private int lexExpression(int pos, boolean block) {
        int n = src.length();
        String close = block ? "%}" : "}}";
        int depth = 0; // brackets, so that a dict literal's '}}' is not taken for the end
        while (true) {
            while (pos < n && Py.isSpace(src.charAt(pos))) pos++;
            int line = lineAt(pos);
            if (pos >= n) throw new ChatTemplateException("template syntax error at line " + line + ": unexpected end of template, expected '" + close + "'");
            if (depth == 0) {
                if (src.startsWith("-" + close, pos)) {
                    tokens.add(new Token(block ? Kind.BLOCK_END : Kind.VAR_END, close, null, line));
                    return skipSpace(pos + 3);
                }
                if (block && src.startsWith("+" + close, pos)) {
                    tokens.add(new Token(Kind.BLOCK_END, close, null, line));
                    return pos + 3;
                }
                if (src.startsWith(close, pos)) {
                    tokens.add(new Token(block ? Kind.BLOCK_END : Kind.VAR_END, close, null, line));
                    pos += 2;
                    if (block && pos < n && src.charAt(pos) == '\n') pos++; // trim_blocks
                    return pos;
                }
            }
            char c = src.charAt(pos);
            if (Character.isLetter(c) || c == '_') {
                int e = pos;
                while (e < n && (Character.isLetterOrDigit(src.charAt(e)) || src.charAt(e) == '_')) e++;
                tokens.add(new Token(Kind.NAME, src.substring(pos, e), null, line));
                pos = e;
            } else if (Character.isDigit(c)) {
                int e = pos;
                while (e < n && (Character.isDigit(src.charAt(e)) || src.charAt(e) == '_')) e++;
                boolean isFloat = false;
                if (e + 1 < n && src.charAt(e) == '.' && Character.isDigit(src.charAt(e + 1))) {
                    isFloat = true;
                    e++;
                    while (e < n && (Character.isDigit(src.charAt(e)) || src.charAt(e) == '_')) e++;
                }
                if (e < n && (src.charAt(e) == 'e' || src.charAt(e) == 'E')) {
                    int f = e + 1;
                    if (f < n && (src.charAt(f) == '+' || src.charAt(f) == '-')) f++;
                    if (f < n && Character.isDigit(src.charAt(f))) {
                        isFloat = true;
                        e = f;
                        while (e < n && Character.isDigit(src.charAt(e))) e++;
                    }
                }
                String num = src.substring(pos, e).replace("_", "");
                Object value;
                try {
                    value = isFloat ? (Object) Double.parseDouble(num) : (Object) Long.parseLong(num);
                } catch (NumberFormatException tooLarge) {
                    throw new ChatTemplateException("template syntax error at line " + line + ": cannot read the number '" + num + "' (out of range?)");
                }
                tokens.add(new Token(isFloat ? Kind.FLOAT : Kind.INT, num, value, line));
                pos = e;
            } else if (c == '\'' || c == '"') {
                StringBuilder sb = new StringBuilder();
                int e = pos + 1;
                while (true) {
                    if (e >= n) throw new ChatTemplateException("template syntax error at line " + line + ": unterminated string");
                    char d = src.charAt(e);
                    if (d == c) break;
                    if (d == '\\' && e + 1 < n) {
                        char x = src.charAt(++e);
                        switch (x) {
                            case 'n' -> sb.append('\n');
                            case 't' -> sb.append('\t');
                            case 'r' -> sb.append('\r');
                            case '0' -> sb.append('\0');
                            case 'b' -> sb.append('\b');
                            case 'f' -> sb.append('\f');
                            case 'x' -> { sb.appendCodePoint(hexEscape(e, 2, line)); e += 2; }
                            case 'u' -> { sb.appendCodePoint(hexEscape(e, 4, line)); e += 4; }
                            case 'U' -> { sb.appendCodePoint(hexEscape(e, 8, line)); e += 8; }
                            case '\\', '\'', '"' -> sb.append(x);
                            case '\n' -> { }
                            default -> sb.append('\\').append(x);
                        }
                    } else {
                        sb.append(d);
                    }
                    e++;
                }
                tokens.add(new Token(Kind.STRING, src.substring(pos, e + 1), sb.toString(), line));
                pos = e + 1;
            } else {
                String op = null;
                for (String o : new String[] {"//", "**", "==", "!=", "<=", ">="}) if (src.startsWith(o, pos)) op = o;
                if (op == null) {
                    if ("+-*/%~<>=()[]{}.,:|".indexOf(c) < 0)
                        throw new ChatTemplateException("template syntax error at line " + line + ": unexpected character '" + c + "'");
                    op = String.valueOf(c);
                }
                if (op.equals("(") || op.equals("[") || op.equals("{")) depth++;
                if (op.equals(")") || op.equals("]") || op.equals("}")) depth = Math.max(0, depth - 1);
                tokens.add(new Token(Kind.OP, op, null, line));
                pos += op.length();
            }
        }
    }

    // ---- parsing ----

    private Token peek() {
        return tokens.get(p);
    }

    private Token peek(int ahead) {
        return tokens.get(Math.min(p + ahead, tokens.size() - 1));
    }

    private Token next() {
        return tokens.get(p++);
    }

    private ChatTemplateException error(Token t, String message) {
        return new ChatTemplateException("template syntax error at line " + t.line + ": " + message);
    }

    private boolean isOp(String op) {
        return peek().kind == Kind.OP && peek().text.equals(op);
    }

    private boolean isName(String name) {
        return peek().kind == Kind.NAME && peek().text.equals(name);
    }

    private boolean acceptOp(String op) {
        if (isOp(op)) {
            p++;
            return true;
        }
        return false;
    }

    private boolean acceptName(String name) {
        if (isName(name)) {
            p++;
            return true;
        }
        return false;
    }

    private void expectOp(String op) {
        if (!acceptOp(op)) throw error(peek(), "expected '" + op + "', got '" + peek().text + "'");
    }

    private void expectName(String name) {
        if (!acceptName(name)) throw error(peek(), "expected '" + name + "', got '" + peek().text + "'");
    }

    private String expectIdentifier() {
        if (peek().kind != Kind.NAME) throw error(peek(), "expected a name, got '" + peek().text + "'");
        return next().text;
    }

    private void expectBlockEnd() {
        if (peek().kind != Kind.BLOCK_END) throw error(peek(), "expected end of statement block, got '" + peek().text + "'");
        p++;
    }

    /** Parses nodes until a block tag whose name is in {@code enders} (left unconsumed, after its '{%'). */
    private List<JinjaNode> parseBody(List<String> enders) {
        List<JinjaNode> body = new ArrayList<>();
        while (true) {
            Token t = peek();
            switch (t.kind) {
                case EOF -> {
                    if (!enders.isEmpty()) throw error(t, "unexpected end of template, expected " + String.join(" or ", enders));
                    return body;
                }
                case DATA -> {
                    p++;
                    body.add(new JinjaNode.Text((String) t.value));
                }
                case VAR_BEGIN -> {
                    p++;
                    JinjaNode.Expr e = parseExpression();
                    if (peek().kind != Kind.VAR_END) throw error(peek(), "expected end of print statement, got '" + peek().text + "'");
                    p++;
                    body.add(new JinjaNode.Print(e));
                }
                case BLOCK_BEGIN -> {
                    Token name = peek(1);
                    if (name.kind == Kind.NAME && enders.contains(name.text)) {
                        p++;
                        return body;
                    }
                    p++;
                    body.add(parseStatement());
                }
                default -> throw error(t, "unexpected '" + t.text + "'");
            }
        }
    }

    private JinjaNode parseStatement() {
        enter();
        try {
            return parseStatementNested();
        } finally {
            nesting--;
        }
    }

    private JinjaNode parseStatementNested() {
        Token t = peek();
        if (t.kind != Kind.NAME) throw error(t, "expected a statement name, got '" + t.text + "'");
        p++;
        return switch (t.text) {
            case "if" -> parseIf();
            case "for" -> parseFor();
            case "set" -> parseSet();
            case "macro" -> parseMacro();
            case "break" -> { expectBlockEnd(); yield new JinjaNode.Break(); }
            case "continue" -> { expectBlockEnd(); yield new JinjaNode.Continue(); }
            case "generation" -> { // Hugging Face's AssistantTracker: renders its body as is
                expectBlockEnd();
                List<JinjaNode> body = parseBody(List.of("endgeneration"));
                expectName("endgeneration");
                expectBlockEnd();
                yield new JinjaNode.Block(body);
            }
            case "filter" -> {
                JinjaNode.Expr target = new JinjaNode.Name("__filter_body__", t.line);
                JinjaNode.Expr filtered = parseFilterChain(target, true);
                expectBlockEnd();
                List<JinjaNode> body = parseBody(List.of("endfilter"));
                expectName("endfilter");
                expectBlockEnd();
                yield new JinjaNode.FilterBlock(body, filtered);
            }
            default -> throw error(t, "unknown statement '" + t.text + "'"
                    + (t.text.startsWith("end") || t.text.equals("elif") || t.text.equals("else") ? " (no block is open for it)" : ""));
        };
    }

    private JinjaNode parseIf() {
        List<JinjaNode.Expr> conditions = new ArrayList<>();
        List<List<JinjaNode>> bodies = new ArrayList<>();
        conditions.add(parseExpression());
        expectBlockEnd();
        List<JinjaNode> elseBody = List.of();
        while (true) {
            bodies.add(parseBody(List.of("elif", "else", "endif")));
            String which = next().text;
            if (which.equals("elif")) {
                conditions.add(parseExpression());
                expectBlockEnd();
            } else if (which.equals("else")) {
                expectBlockEnd();
                elseBody = parseBody(List.of("endif"));
                expectName("endif");
                expectBlockEnd();
                break;
            } else {
                expectBlockEnd();
                break;
            }
        }
        return new JinjaNode.If(conditions, bodies, elseBody);
    }

    private JinjaNode parseFor() {
        Token at = peek();
        List<String> targets = new ArrayList<>();
        boolean parens = acceptOp("(");
        targets.add(expectIdentifier());
        while (acceptOp(",")) targets.add(expectIdentifier());
        if (parens) expectOp(")");
        expectName("in");
        JinjaNode.Expr iterable = parseTernaryFree();
        JinjaNode.Expr filter = null;
        if (acceptName("if")) filter = parseExpression();
        boolean recursive = acceptName("recursive");
        if (recursive) throw error(at, "recursive for loops are not supported");
        expectBlockEnd();
        List<JinjaNode> body = parseBody(List.of("else", "endfor"));
        List<JinjaNode> elseBody = List.of();
        if (next().text.equals("else")) {
            expectBlockEnd();
            elseBody = parseBody(List.of("endfor"));
            expectName("endfor");
        }
        expectBlockEnd();
        return new JinjaNode.For(targets, iterable, filter, body, elseBody, at.line);
    }

    private JinjaNode parseSet() {
        Token at = peek();
        String first = expectIdentifier();
        if (acceptOp(".")) {
            String attr = expectIdentifier();
            expectOp("=");
            JinjaNode.Expr value = parseExpression();
            expectBlockEnd();
            return new JinjaNode.SetAttr(first, attr, value, at.line);
        }
        List<String> targets = new ArrayList<>();
        targets.add(first);
        while (acceptOp(",")) targets.add(expectIdentifier());
        if (acceptOp("=")) {
            JinjaNode.Expr value = parseTuple();
            expectBlockEnd();
            return new JinjaNode.Set(targets, value);
        }
        if (targets.size() != 1) throw error(peek(), "expected '='");
        JinjaNode.Expr filter = null;
        if (isOp("|")) filter = parseFilterChain(new JinjaNode.Name("__set_body__", at.line), true);
        expectBlockEnd();
        List<JinjaNode> body = parseBody(List.of("endset"));
        expectName("endset");
        expectBlockEnd();
        return new JinjaNode.SetBlock(first, body, filter);
    }

    private JinjaNode parseMacro() {
        String name = expectIdentifier();
        List<String> params = new ArrayList<>();
        List<JinjaNode.Expr> defaults = new ArrayList<>();
        expectOp("(");
        while (!isOp(")")) {
            if (!params.isEmpty()) expectOp(",");
            if (isOp(")")) break;
            params.add(expectIdentifier());
            defaults.add(acceptOp("=") ? parseExpression() : null);
        }
        expectOp(")");
        expectBlockEnd();
        List<JinjaNode> body = parseBody(List.of("endmacro"));
        expectName("endmacro");
        if (peek().kind == Kind.NAME) p++; // {% endmacro name %}
        expectBlockEnd();
        return new JinjaNode.Macro(name, params, defaults, body);
    }

    // ---- expressions (Jinja2's precedence) ----

    /** An expression or an unparenthesized tuple (for set and for). */
    private JinjaNode.Expr parseTuple() {
        JinjaNode.Expr first = parseExpression();
        if (!isOp(",")) return first;
        List<JinjaNode.Expr> items = new ArrayList<>();
        items.add(first);
        while (acceptOp(",")) {
            if (peek().kind == Kind.BLOCK_END) break;
            items.add(parseExpression());
        }
        return new JinjaNode.TupleLit(items);
    }

    JinjaNode.Expr parseExpression() {
        enter();
        try {
            return parseExpressionNested();
        } finally {
            nesting--;
        }
    }

    private JinjaNode.Expr parseExpressionNested() {
        JinjaNode.Expr e = parseOr();
        while (isName("if")) {
            p++;
            JinjaNode.Expr cond = parseOr();
            JinjaNode.Expr otherwise = acceptName("else") ? parseExpression() : null;
            e = new JinjaNode.CondExpr(cond, e, otherwise);
        }
        return e;
    }

    /** The iterable of a for loop: no conditional expression, since 'if' starts the loop filter. */
    private JinjaNode.Expr parseTernaryFree() {
        return parseOr();
    }

    private JinjaNode.Expr parseOr() {
        JinjaNode.Expr e = parseAnd();
        while (acceptName("or")) e = new JinjaNode.Logic(false, e, parseAnd());
        return e;
    }

    private JinjaNode.Expr parseAnd() {
        JinjaNode.Expr e = parseNot();
        while (acceptName("and")) e = new JinjaNode.Logic(true, e, parseNot());
        return e;
    }

    private JinjaNode.Expr parseNot() {
        if (isName("not")) {
            p++;
            enter();
            try {
                return new JinjaNode.Not(parseNot());
            } finally {
                nesting--;
            }
        }
        return parseCompare();
    }

    private JinjaNode.Expr parseCompare() {
        int line = peek().line;
        JinjaNode.Expr first = parseMath1();
        List<String> ops = new ArrayList<>();
        List<JinjaNode.Expr> rest = new ArrayList<>();
        while (true) {
            Token t = peek();
            if (t.kind == Kind.OP && List.of("==", "!=", "<", ">", "<=", ">=").contains(t.text)) {
                p++;
                ops.add(t.text);
            } else if (isName("in")) {
                p++;
                ops.add("in");
            } else if (isName("not") && peek(1).kind == Kind.NAME && peek(1).text.equals("in")) {
                p += 2;
                ops.add("not in");
            } else {
                break;
            }
            rest.add(parseMath1());
        }
        return ops.isEmpty() ? first : new JinjaNode.Compare(first, ops, rest, line);
    }

    private JinjaNode.Expr parseMath1() {
        JinjaNode.Expr e = parseConcat();
        while (isOp("+") || isOp("-")) {
            Token op = next();
            e = new JinjaNode.Binary(op.text, e, parseConcat(), op.line);
        }
        return e;
    }

    private JinjaNode.Expr parseConcat() {
        JinjaNode.Expr e = parseMath2();
        while (isOp("~")) {
            Token op = next();
            e = new JinjaNode.Binary("~", e, parseMath2(), op.line);
        }
        return e;
    }

    private JinjaNode.Expr parseMath2() {
        JinjaNode.Expr e = parsePow();
        while (isOp("*") || isOp("/") || isOp("//") || isOp("%")) {
            Token op = next();
            e = new JinjaNode.Binary(op.text, e, parsePow(), op.line);
        }
        return e;
    }

    private JinjaNode.Expr parsePow() {
        JinjaNode.Expr e = parseUnary(true);
        while (isOp("**")) {
            Token op = next();
            e = new JinjaNode.Binary("**", e, parseUnary(true), op.line);
        }
        return e;
    }

    private JinjaNode.Expr parseUnary(boolean withFilter) {
        Token t = peek();
        JinjaNode.Expr e;
        if (isOp("-") || isOp("+")) {
            p++;
            enter();
            try {
                JinjaNode.Expr operand = parseUnary(false);
                e = t.text.equals("-") ? new JinjaNode.Negate(operand, t.line) : operand;
            } finally {
                nesting--;
            }
        } else {
            e = parsePostfix(parsePrimary());
        }
        return withFilter ? parseFilterChain(e, false) : e;
    }

    private JinjaNode.Expr parsePrimary() {
        Token t = next();
        switch (t.kind) {
            case NAME -> {
                return switch (t.text) {
                    case "true", "True" -> new JinjaNode.Const(Boolean.TRUE);
                    case "false", "False" -> new JinjaNode.Const(Boolean.FALSE);
                    case "none", "None" -> new JinjaNode.Const(null);
                    default -> new JinjaNode.Name(t.text, t.line);
                };
            }
            case STRING -> {
                StringBuilder sb = new StringBuilder((String) t.value);
                while (peek().kind == Kind.STRING) sb.append((String) next().value);
                return new JinjaNode.Const(sb.toString());
            }
            case INT, FLOAT -> {
                return new JinjaNode.Const(t.value);
            }
            case OP -> {
                switch (t.text) {
                    case "(" -> {
                        if (acceptOp(")")) return new JinjaNode.TupleLit(List.of());
                        JinjaNode.Expr first = parseExpression();
                        if (acceptOp(")")) return first;
                        List<JinjaNode.Expr> items = new ArrayList<>();
                        items.add(first);
                        while (acceptOp(",")) {
                            if (isOp(")")) break;
                            items.add(parseExpression());
                        }
                        expectOp(")");
                        return new JinjaNode.TupleLit(items);
                    }
                    case "[" -> {
                        List<JinjaNode.Expr> items = new ArrayList<>();
                        while (!isOp("]")) {
                            if (!items.isEmpty()) expectOp(",");
                            if (isOp("]")) break;
                            items.add(parseExpression());
                        }
                        expectOp("]");
                        return new JinjaNode.ListLit(items);
                    }
                    case "{" -> {
                        List<JinjaNode.Expr> keys = new ArrayList<>();
                        List<JinjaNode.Expr> values = new ArrayList<>();
                        while (!isOp("}")) {
                            if (!keys.isEmpty()) expectOp(",");
                            if (isOp("}")) break;
                            keys.add(parseExpression());
                            expectOp(":");
                            values.add(parseExpression());
                        }
                        expectOp("}");
                        return new JinjaNode.DictLit(keys, values);
                    }
                    default -> { }
                }
            }
            default -> { }
        }
        throw error(t, "unexpected '" + t.text + "'");
    }

    private JinjaNode.Expr parsePostfix(JinjaNode.Expr e) {
        while (true) {
            Token t = peek();
            if (isOp(".")) {
                p++;
                Token name = next();
                if (name.kind == Kind.NAME) e = new JinjaNode.GetAttr(e, name.text, t.line);
                else if (name.kind == Kind.INT) e = new JinjaNode.GetItem(e, new JinjaNode.Const(name.value), t.line);
                else throw error(name, "expected an attribute name after '.'");
            } else if (isOp("[")) {
                p++;
                e = parseSubscript(e, t.line);
            } else if (isOp("(")) {
                p++;
                e = parseCall(e, t.line);
            } else {
                return e;
            }
        }
    }

    private JinjaNode.Expr parseSubscript(JinjaNode.Expr target, int line) {
        JinjaNode.Expr[] parts = new JinjaNode.Expr[3];
        int part = 0;
        boolean slice = false;
        while (!isOp("]")) {
            if (acceptOp(":")) {
                slice = true;
                part++;
                if (part > 2) throw error(peek(), "too many ':' in a slice");
                continue;
            }
            if (parts[part] != null) throw error(peek(), "expected ']'");
            parts[part] = parseExpression();
        }
        expectOp("]");
        if (!slice) {
            if (parts[0] == null) throw error(peek(), "empty subscript");
            return new JinjaNode.GetItem(target, parts[0], line);
        }
        return new JinjaNode.Slice(target, parts[0], parts[1], parts[2], line);
    }

    private record Args(List<JinjaNode.Expr> positional, Map<String, JinjaNode.Expr> named) {}

    private Args parseArgs() {
        List<JinjaNode.Expr> positional = new ArrayList<>();
        Map<String, JinjaNode.Expr> named = new LinkedHashMap<>();
        boolean first = true;
        while (!isOp(")")) {
            if (!first) expectOp(",");
            first = false;
            if (isOp(")")) break;
            if (peek().kind == Kind.NAME && peek(1).kind == Kind.OP && peek(1).text.equals("=")) {
                String name = next().text;
                p++;
                named.put(name, parseExpression());
            } else {
                if (!named.isEmpty()) throw error(peek(), "positional argument after keyword argument");
                positional.add(parseExpression());
            }
        }
        expectOp(")");
        return new Args(positional, named);
    }

    private JinjaNode.Expr parseCall(JinjaNode.Expr target, int line) {
        Args a = parseArgs();
        return new JinjaNode.Call(target, a.positional, a.named, line);
    }

    /** Filters ('|name(args)') and tests ('is [not] name args') after an expression. */
    private JinjaNode.Expr parseFilterChain(JinjaNode.Expr e, boolean startsWithFilter) {
        boolean first = true;
        while (true) {
            Token t = peek();
            if (isOp("|") || (first && startsWithFilter && t.kind == Kind.NAME)) {
                if (isOp("|")) p++;
                String name = expectIdentifier();
                while (acceptOp(".")) name = name + "." + expectIdentifier();
                Args a = isOp("(") ? advanceAndParseArgs() : new Args(List.of(), Map.of());
                e = new JinjaNode.Filter(e, name, a.positional, a.named, t.line);
            } else if (isName("is")) {
                p++;
                boolean negated = acceptName("not");
                String name = expectIdentifier();
                List<JinjaNode.Expr> args = new ArrayList<>();
                if (isOp("(")) {
                    p++;
                    Args a = parseArgs();
                    args.addAll(a.positional);
                } else if (startsTestArgument(peek())) {
                    args.add(parsePostfix(parsePrimary()));
                }
                e = new JinjaNode.Test(e, name, args, negated, t.line);
            } else {
                return e;
            }
            first = false;
        }
    }

    private Args advanceAndParseArgs() {
        p++;
        return parseArgs();
    }

    /** Jinja2 takes a single argument without parentheses after a test name when one starts here. */
    private static boolean startsTestArgument(Token t) {
        return switch (t.kind) {
            case NAME -> !List.of("else", "or", "and", "if", "is", "in", "not").contains(t.text);
            case STRING, INT, FLOAT -> true;
            case OP -> t.text.equals("(") || t.text.equals("[") || t.text.equals("{") || t.text.equals("-");
            default -> false;
        };
    }
}
