package dev.specula.tokenizer;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Splits text into words before byte-level BPE, as llama.cpp's {@code unicode_regex_split} does
 * for the pre-tokenizer named by {@code tokenizer.ggml.pre}.
 *
 * <p>Each pre-tokenizer is a list of regexes copied from llama.cpp's {@code llm_tokenizer_bpe};
 * each regex splits every piece left by the one before, and text between matches becomes a piece
 * of its own. Two regexes (GPT-2's and Llama 3's) run, as in llama.cpp, as hand-written splitters
 * ({@code unicode_regex_split_custom_gpt2/llama3}) rather than as regexes. The others run as Java
 * regexes over llama.cpp's "collapsed" text, in which every non-ASCII code point is replaced by
 * one stand-in character for its category ({@code \p{L}} letters, {@code \p{N}} numbers...)
 * and every non-ASCII whitespace by U+000B, so that Java's and std::regex's differing Unicode
 * support cannot change the result.
 */
final class PreTokenizer {

    static final String GPT2_REGEX =
            "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
    static final String LLAMA3_REGEX =
            "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    /** LLAMA3_REGEX as Llama 3's tokenizer.json spells it (the tokenizers library's regex dialect). */
    static final String LLAMA3_HF_REGEX =
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    static final String QWEN2_REGEX =
            "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

    private static final List<String> DEFAULT_REGEXES = List.of(
            "[\\p{P}\\$\\+<=>\\^~\\|]+", GPT2_REGEX, "\\p{N}+", "[0-9][0-9][0-9]");

    /** Pre-tokenizer kinds, by the names llama.cpp accepts for them. */
    private enum Kind {
        DEFAULT(DEFAULT_REGEXES, false, false),
        LLAMA3(List.of(LLAMA3_REGEX), true, true),
        DBRX(List.of(LLAMA3_REGEX), false, false),
        GPT2(List.of(GPT2_REGEX), false, false),
        QWEN2(List.of(QWEN2_REGEX), false, false),
        STARCODER(List.of("\\p{N}", GPT2_REGEX), false, false);

        final List<String> regexes;
        final boolean ignoreMerges;
        final boolean addBos;

        Kind(List<String> regexes, boolean ignoreMerges, boolean addBos) {
            this.regexes = regexes;
            this.ignoreMerges = ignoreMerges;
            this.addBos = addBos;
        }
    }

    private static final Map<String, Kind> KINDS = Map.ofEntries(
            Map.entry("", Kind.DEFAULT),
            Map.entry("default", Kind.DEFAULT),
            Map.entry("llama3", Kind.LLAMA3),
            Map.entry("llama-v3", Kind.LLAMA3),
            Map.entry("llama-bpe", Kind.LLAMA3),
            Map.entry("falcon3", Kind.LLAMA3),
            Map.entry("falcon-h1", Kind.LLAMA3),
            Map.entry("pixtral", Kind.LLAMA3),
            Map.entry("midm-2.0", Kind.LLAMA3),
            Map.entry("lfm2", Kind.LLAMA3),
            Map.entry("dbrx", Kind.DBRX),
            Map.entry("smaug-bpe", Kind.DBRX),
            Map.entry("gpt-2", Kind.GPT2),
            // llama.cpp spells it "gpt-2" and rejects "gpt2"; accepted here as an alias.
            Map.entry("gpt2", Kind.GPT2),
            Map.entry("phi-2", Kind.GPT2),
            Map.entry("mpt", Kind.GPT2),
            Map.entry("olmo", Kind.GPT2),
            Map.entry("jais", Kind.GPT2),
            Map.entry("exaone4", Kind.GPT2),
            Map.entry("qwen2", Kind.QWEN2),
            Map.entry("deepseek-r1-qwen", Kind.QWEN2),
            Map.entry("megrez", Kind.QWEN2),
            Map.entry("stablelm2", Kind.QWEN2),
            Map.entry("hunyuan", Kind.QWEN2),
            Map.entry("smollm", Kind.STARCODER),
            Map.entry("starcoder", Kind.STARCODER),
            Map.entry("refact", Kind.STARCODER),
            Map.entry("command-r", Kind.STARCODER),
            Map.entry("codeshell", Kind.STARCODER),
            Map.entry("exaone", Kind.STARCODER),
            Map.entry("minerva-7b", Kind.STARCODER));

    /** One step of the split: turns piece lengths (in code points) into finer piece lengths. */
    private interface Splitter {
        IntList split(int[] cps, IntList pieces);
    }

    private final String name;
    private final Kind kind;
    private final List<Splitter> splitters;

    private PreTokenizer(String name, Kind kind) {
        this.name = name;
        this.kind = kind;
        this.splitters = new ArrayList<>();
        for (String regex : kind.regexes) {
            splitters.add(splitterFor(regex));
        }
    }

    /**
     * The pre-tokenizer llama.cpp uses for {@code tokenizer.ggml.pre = name}; an empty name is
     * llama.cpp's "default".
     *
     * @throws IllegalArgumentException for a name this class does not know
     */
    static PreTokenizer forName(String name) {
        Kind kind = KINDS.get(name == null ? "" : name);
        if (kind == null) {
            throw new IllegalArgumentException("unknown pre-tokenizer type: '" + name
                    + "' (tokenizer.ggml.pre); supported: default, llama3/llama-bpe, gpt-2, qwen2, smollm"
                    + " and their aliases");
        }
        return new PreTokenizer(name, kind);
    }

    /** Whether llama.cpp adds BOS by default for this pre-tokenizer (the Llama 3 family). */
    static boolean addsBosByDefault(String name) {
        Kind kind = KINDS.get(name == null ? "" : name);
        return kind != null && kind.addBos;
    }

    String name() {
        return name;
    }

    /** Whether a whole word found in the vocabulary is taken as is, without merges (Llama 3). */
    boolean ignoreMerges() {
        return kind.ignoreMerges;
    }

    /**
     * The regex of the Split step of Hugging Face's pre-tokenizer for this kind, as Llama 3's tokenizer.json spells
     * it, or null where none is written here (only the Llama 3 family).
     */
    String huggingFaceSplitRegex() {
        return kind == Kind.LLAMA3 ? LLAMA3_HF_REGEX : null;
    }

    /** Splits the text into words. */
    List<String> split(String text) {
        int[] cps = text.codePoints().toArray();
        IntList pieces = new IntList();
        pieces.add(cps.length);
        for (Splitter splitter : splitters) {
            pieces = splitter.split(cps, pieces);
        }
        List<String> words = new ArrayList<>(pieces.size());
        int start = 0;
        for (int i = 0; i < pieces.size(); i++) {
            int length = pieces.get(i);
            words.add(new String(cps, start, length));
            start += length;
        }
        return words;
    }

    private static Splitter splitterFor(String regex) {
        if (regex.equals(GPT2_REGEX)) {
            return PreTokenizer::splitGpt2;
        }
        if (regex.equals(LLAMA3_REGEX)) {
            return PreTokenizer::splitLlama3;
        }
        return new RegexSplitter(regex);
    }

    // --- llama.cpp's hand-written splitters ---------------------------------------------------

    private static final int OUT_OF_RANGE = -1;

    /** A piece of the text being split, and the words found in it so far. */
    private static final class Cursor {
        final int[] cps;
        final int start;
        final int end;
        final IntList out;
        int previousEnd;

        Cursor(int[] cps, int start, int end, IntList out) {
            this.cps = cps;
            this.start = start;
            this.end = end;
            this.out = out;
            this.previousEnd = start;
        }

        int cpt(int pos) {
            return pos >= start && pos < end ? cps[pos] : OUT_OF_RANGE;
        }

        int flags(int pos) {
            return pos >= start && pos < end ? LlamaUnicode.flags(cps[pos]) : 0;
        }

        /** Ends a word at {@code end}; returns its length. */
        int addToken(int wordEnd) {
            int length = wordEnd - previousEnd;
            if (length > 0) {
                out.add(length);
            }
            previousEnd = wordEnd;
            return length;
        }
    }

    private static boolean isLetter(int flags) {
        return LlamaUnicode.isLetter(flags);
    }

    private static boolean isNumber(int flags) {
        return LlamaUnicode.isNumber(flags);
    }

    private static boolean isSpace(int flags) {
        return LlamaUnicode.isWhitespaceFlag(flags);
    }

    /** {@code 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+}. */
    private static IntList splitGpt2(int[] cps, IntList pieces) {
        IntList out = new IntList(pieces.size() * 4);
        int start = 0;
        for (int p = 0; p < pieces.size(); p++) {
            Cursor c = new Cursor(cps, start, start + pieces.get(p), out);
            start = c.end;
            for (int pos = c.start; pos < c.end; ) {
                int cpt = c.cpt(pos);
                int flags = c.flags(pos);

                // 's|'t|'re|'ve|'m|'ll|'d
                if (cpt == '\'' && pos + 1 < c.end) {
                    int next = c.cpt(pos + 1);
                    if (next == 's' || next == 't' || next == 'm' || next == 'd') {
                        pos += c.addToken(pos + 2);
                        continue;
                    }
                    if (pos + 2 < c.end) {
                        int nextNext = c.cpt(pos + 2);
                        if ((next == 'r' && nextNext == 'e') || (next == 'v' && nextNext == 'e')
                                || (next == 'l' && nextNext == 'l')) {
                            pos += c.addToken(pos + 3);
                            continue;
                        }
                    }
                }

                int flags2 = cpt == ' ' ? c.flags(pos + 1) : flags;
                // <space>?\p{L}+
                if (isLetter(flags2)) {
                    pos += cpt == ' ' ? 1 : 0;
                    while (isLetter(flags2)) {
                        flags2 = c.flags(++pos);
                    }
                    c.addToken(pos);
                    continue;
                }
                // <space>?\p{N}+
                if (isNumber(flags2)) {
                    pos += cpt == ' ' ? 1 : 0;
                    while (isNumber(flags2)) {
                        flags2 = c.flags(++pos);
                    }
                    c.addToken(pos);
                    continue;
                }
                // <space>?[^\s\p{L}\p{N}]+
                if (!(isSpace(flags2) || isLetter(flags2) || isNumber(flags2)) && flags2 != 0) {
                    pos += cpt == ' ' ? 1 : 0;
                    while (!(isSpace(flags2) || isLetter(flags2) || isNumber(flags2)) && flags2 != 0) {
                        flags2 = c.flags(++pos);
                    }
                    c.addToken(pos);
                    continue;
                }

                int spaces = 0;
                while (isSpace(c.flags(pos + spaces))) {
                    spaces++;
                }
                // \s+(?!\S)
                if (spaces > 1 && c.cpt(pos + spaces) != OUT_OF_RANGE) {
                    pos += spaces - 1;
                    c.addToken(pos);
                    continue;
                }
                // \s+
                if (spaces > 0) {
                    pos += spaces;
                    c.addToken(pos);
                    continue;
                }
                // no match
                c.addToken(++pos);
            }
        }
        return out;
    }

    /**
     * {@code (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+}.
     */
    private static IntList splitLlama3(int[] cps, IntList pieces) {
        IntList out = new IntList(pieces.size() * 4);
        int start = 0;
        for (int p = 0; p < pieces.size(); p++) {
            Cursor c = new Cursor(cps, start, start + pieces.get(p), out);
            start = c.end;
            for (int pos = c.start; pos < c.end; ) {
                int cpt = c.cpt(pos);
                int flags = c.flags(pos);

                // (?i:'s|'t|'re|'ve|'m|'ll|'d)
                if (cpt == '\'' && pos + 1 < c.end) {
                    int next = Character.toLowerCase(c.cpt(pos + 1));
                    if (next == 's' || next == 't' || next == 'm' || next == 'd') {
                        pos += c.addToken(pos + 2);
                        continue;
                    }
                    if (pos + 2 < c.end) {
                        int nextNext = Character.toLowerCase(c.cpt(pos + 2));
                        if ((next == 'r' && nextNext == 'e') || (next == 'v' && nextNext == 'e')
                                || (next == 'l' && nextNext == 'l')) {
                            pos += c.addToken(pos + 3);
                            continue;
                        }
                    }
                }

                // [^\r\n\p{L}\p{N}]?\p{L}+
                if (!(cpt == '\r' || cpt == '\n' || isNumber(flags))) {
                    if (isLetter(flags) || isLetter(c.flags(pos + 1))) {
                        pos++;
                        while (isLetter(c.flags(pos))) {
                            pos++;
                        }
                        c.addToken(pos);
                        continue;
                    }
                }

                // \p{N}{1,3}
                if (isNumber(flags)) {
                    int first = pos;
                    while (isNumber(c.flags(pos))) {
                        if (++pos - first >= 3) {
                            c.addToken(pos);
                            first = pos;
                        }
                    }
                    c.addToken(pos);
                    continue;
                }

                // <space>?[^\s\p{L}\p{N}]+[\r\n]*  (llama.cpp tests the first flags here, not flags2)
                int flags2 = cpt == ' ' ? c.flags(pos + 1) : flags;
                if (!(isSpace(flags2) || isLetter(flags2) || isNumber(flags2)) && flags != 0) {
                    pos += cpt == ' ' ? 1 : 0;
                    while (!(isSpace(flags2) || isLetter(flags2) || isNumber(flags2)) && flags2 != 0) {
                        flags2 = c.flags(++pos);
                    }
                    int cpt2 = c.cpt(pos);
                    while (cpt2 == '\r' || cpt2 == '\n') {
                        cpt2 = c.cpt(++pos);
                    }
                    c.addToken(pos);
                    continue;
                }

                int spaces = 0;
                int lastEndOfNewline = 0;
                while (isSpace(c.flags(pos + spaces))) {
                    int cpt2 = c.cpt(pos + spaces);
                    if (cpt2 == '\r' || cpt2 == '\n') {
                        lastEndOfNewline = pos + spaces + 1;
                    }
                    spaces++;
                }
                // \s*[\r\n]+
                if (lastEndOfNewline > 0) {
                    pos = lastEndOfNewline;
                    c.addToken(pos);
                    continue;
                }
                // \s+(?!\S)
                if (spaces > 1 && c.cpt(pos + spaces) != OUT_OF_RANGE) {
                    pos += spaces - 1;
                    c.addToken(pos);
                    continue;
                }
                // \s+
                if (spaces > 0) {
                    pos += spaces;
                    c.addToken(pos);
                    continue;
                }
                // no match
                c.addToken(++pos);
            }
        }
        return out;
    }

    // --- regexes over collapsed text -----------------------------------------------------------

    /** Stand-ins for non-ASCII code points in the collapsed text (llama.cpp's k_ucat_cpt). */
    private static final char COLLAPSED_OTHER = '\u00D0';
    private static final char COLLAPSED_NUMBER = '\u00D1';
    private static final char COLLAPSED_LETTER = '\u00D2';
    private static final char COLLAPSED_PUNCTUATION = '\u00D3';
    private static final char COLLAPSED_ACCENT_MARK = '\u00D4';
    private static final char COLLAPSED_SYMBOL = '\u00D5';
    private static final char COLLAPSED_WHITESPACE = '\u000B';

    /** Unicode categories a regex may use, with their stand-in and ASCII members (k_ucat_map). */
    private record Category(String property, char standIn, String asciiMembers) {}

    private static final List<Category> CATEGORIES = List.of(
            new Category("\\p{N}", COLLAPSED_NUMBER, "0-9"),
            new Category("\\p{L}", COLLAPSED_LETTER, "A-Za-z"),
            new Category("\\p{P}", COLLAPSED_PUNCTUATION, "!-#%-*,-/:-;?-@\\[-\\]_\\{\\}"),
            new Category("\\p{M}", COLLAPSED_ACCENT_MARK, ""),
            new Category("\\p{S}", COLLAPSED_SYMBOL, "\\$\\+<->\\^`\\|"),
            new Category("\\p{Lu}", COLLAPSED_LETTER, "A-Za-z"),
            new Category("\\p{Ll}", COLLAPSED_LETTER, "A-Za-z"),
            new Category("\\p{Lt}", COLLAPSED_LETTER, "A-Za-z"),
            new Category("\\p{Lm}", COLLAPSED_LETTER, "A-Za-z"),
            new Category("\\p{Lo}", COLLAPSED_LETTER, "A-Za-z"));

    /** A general regex, matched on the collapsed text when it uses Unicode categories. */
    private static final class RegexSplitter implements Splitter {
        private final Pattern pattern;
        private final boolean collapsed;

        RegexSplitter(String regex) {
            this.collapsed = CATEGORIES.stream().anyMatch(c -> regex.contains(c.property()));
            this.pattern = Pattern.compile(collapsed ? collapseRegex(regex) : regex);
        }

        @Override
        public IntList split(int[] cps, IntList pieces) {
            // One char per code point, so that offsets in the char sequence are code point offsets.
            char[] chars = new char[cps.length];
            for (int i = 0; i < cps.length; i++) {
                chars[i] = collapsed ? collapse(cps[i]) : plain(cps[i]);
            }
            String text = new String(chars);
            IntList out = new IntList(pieces.size() * 4);
            int start = 0;
            Matcher matcher = pattern.matcher(text);
            for (int p = 0; p < pieces.size(); p++) {
                int end = start + pieces.get(p);
                matcher.region(start, end);
                int previousEnd = start;
                while (matcher.find()) {
                    if (matcher.start() > previousEnd) {
                        out.add(matcher.start() - previousEnd);
                    }
                    if (matcher.end() > matcher.start()) {
                        out.add(matcher.end() - matcher.start());
                    }
                    previousEnd = matcher.end();
                }
                if (previousEnd < end) {
                    out.add(end - previousEnd);
                }
                start = end;
            }
            return out;
        }

        private static char collapse(int cp) {
            if (cp < 128) {
                return (char) cp;
            }
            int flags = LlamaUnicode.flags(cp);
            if ((flags & LlamaUnicode.WHITESPACE) != 0) {
                return COLLAPSED_WHITESPACE;
            }
            return switch (flags) {
                case LlamaUnicode.NUMBER -> COLLAPSED_NUMBER;
                case LlamaUnicode.LETTER -> COLLAPSED_LETTER;
                case LlamaUnicode.PUNCTUATION -> COLLAPSED_PUNCTUATION;
                case LlamaUnicode.ACCENT_MARK -> COLLAPSED_ACCENT_MARK;
                case LlamaUnicode.SYMBOL -> COLLAPSED_SYMBOL;
                default -> COLLAPSED_OTHER;
            };
        }

        /** Without categories llama.cpp uses std::wregex with non-ASCII whitespace as U+000B. */
        private static char plain(int cp) {
            if (cp > 0x7F && LlamaUnicode.isWhitespace(cp)) {
                return COLLAPSED_WHITESPACE;
            }
            return cp <= 0xFFFF ? (char) cp : '\uFFFF';
        }
    }

    /** llama.cpp's regex collapsing: each {@code \p{X}} becomes its stand-in plus ASCII members. */
    static String collapseRegex(String regex) {
        StringBuilder out = new StringBuilder();
        boolean inside = false;
        for (int i = 0; i < regex.length(); i++) {
            char ch = regex.charAt(i);
            if (ch == '[' && (i == 0 || regex.charAt(i - 1) != '\\')) {
                out.append('[');
                inside = true;
                continue;
            }
            if (inside && ch == ']' && regex.charAt(i - 1) != '\\') {
                out.append(']');
                inside = false;
                continue;
            }
            if (ch == '\\' && i + 3 < regex.length() && regex.charAt(i + 1) == 'p' && regex.charAt(i + 2) == '{') {
                int close = regex.indexOf('}', i + 3);
                if (close >= 0 && close <= i + 10) {
                    String property = regex.substring(i, close + 1);
                    Category category = CATEGORIES.stream()
                            .filter(c -> c.property().equals(property)).findFirst().orElse(null);
                    if (category != null) {
                        if (!inside) {
                            out.append('[');
                        }
                        out.append(category.standIn()).append(category.asciiMembers());
                        if (!inside) {
                            out.append(']');
                        }
                        i = close;
                        continue;
                    }
                }
            }
            out.append(ch);
        }
        return out.toString();
    }
}
