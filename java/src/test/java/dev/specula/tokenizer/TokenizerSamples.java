package dev.specula.tokenizer;

import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;

/** Varied strings for round-trip and oracle tests. */
final class TokenizerSamples {

    private TokenizerSamples() {}

    /** Hand-picked edge cases. */
    static List<String> edgeCases() {
        return List.of(
                "Hello world",
                "Hello, World!",
                " leading space",
                "  two leading spaces",
                "trailing space ",
                "trailing spaces   ",
                " ",
                "  ",
                "   ",
                "\n",
                "\n\n\n",
                "\t",
                "a\tb\t\tc",
                "line one\nline two\r\nline three\rline four",
                "    indented\n        more\n\tand tabbed",
                "x  y   z    w     v",
                "   \n   \n",
                "a \n b",
                "trailing newline\n",
                " \t \n\r\n \u000B\f",
                "nbsp\u00A0here and\u00A0\u00A0twice",
                "ideographic\u3000space　and thin\u2009space\u2003em",
                "zero\u200Bwidth\u200Cjoiner\u200D",
                "soft\u00ADhyphen",
                "line\u2028separator\u2029paragraph\u0085next line",
                "1", "12", "123", "1234", "12345", "123456", "1234567", "12345678901234567890",
                "3.14159 and 2.71828, -273.15 °C, 6.022e23, 0xFF, 1,234,567.89",
                "2024-05-17T12:30:45.123Z",
                "Phone: +44 (0)20 7946 0000",
                "٠١٢٣٤٥٦٧٨٩ ١٢٣",
                "①②③ Ⅻ ½ ¾ ²³",
                "I'm sure it's fine, isn't it? We'll see; they've gone, you'd know, we're here.",
                "I'M LOUD, IT'S ME, WE'LL SEE, THEY'VE, YOU'D, WE'RE",
                "rock 'n' roll, 'quoted', ''double'', '",
                "don't 's 't 're 've 'm 'll 'd",
                "café naïve coöperate résumé piñata façade jalapeño",
                "e\u0301 a\u0300 o\u0308 combining marks",
                "Ångström Øresund Ærø smörgåsbord crème brûlée São Paulo Dvořák Łódź",
                "Ξέρεις, η θάλασσα είναι ήρεμη σήμερα.",
                "Летом мы часто ездили на дачу.",
                "مرحبا بالعالم",
                "שלום עולם",
                "नमस्ते दुनिया",
                "สวัสดีชาวโลก",
                "今天早上下了一点雨，港口的船都没有出海。",
                "東京の朝は早い。ひらがな、カタカナ、漢字。",
                "서울의 봄은 짧지만 아름답다.",
                "鑫龘靐齉 rare CJK",
                "𠀀𠀁 CJK extension B",
                "Emoji: 😀😃😄😁 🐈 ☕ 🎉🚀",
                "ZWJ family 👨‍👩‍👧‍👦 and skin tone 👍🏽 and flag 🇯🇵🇬🇧",
                "heart ❤️ with variation selector, keycap 1️⃣, #️⃣",
                "☃ ★ ☆ ✓ ✗ ♪ ♫ ∞ √ ∑ ∫ π Ω µ € £ ¥ ₹ ₩",
                "𝐀𝐁𝐂 𝑥𝑦𝑧 math letters",
                "unassigned \u0378\u0379 and private \uE000\uF8FF",
                "control \u0001\u0002\u001F\u007F chars",
                "<s> not special </s> <unk> <|endoftext|> <|eot_id|>",
                "<s>", "</s>hello", "hi<|endoftext|>", "<|endoftext|><|endoftext|>",
                "[INST] Hello there [/INST] Hi!",
                "[INST][INST]x[/INST]",
                "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|eot_id|>",
                " <|im_start|> spaced <|im_end|> ",
                "<0x41> looks like a byte token",
                "▁ the space mark itself ▁▁",
                "Ġ and Ċ look like byte-level characters",
                "public static void main(String[] args) {\n    System.out.println(\"hi\");\n}",
                "for (int i = 0; i < n; i++) { sum += a[i] * b[i]; }",
                "def f(x):\n    return x ** 2  # square\n",
                "#include <stdio.h>\nint main(void) { return 0; }",
                "{\"key\": [1, 2.5, true, null], \"nested\": {\"a\": \"b\"}}",
                "SELECT * FROM t WHERE a >= 1 AND b <> 'x';",
                "https://example.com/path?query=1&lang=en#frag",
                "C:\\Users\\Public\\file.txt",
                "a+b=c; x!=y; p&&q || r; ~z ^ w | v $5 @home",
                "!!! ??? ... --- *** ### ((( ))) [[[ ]]] {{{ }}}",
                "«quoted» “smart” ‘single’ — dash – en … ellipsis",
                "ALLCAPS lowercase MixedCase camelCase snake_case kebab-case",
                "a", "ab", "abc", "Z", ".", "!", "'", "\"", "-", "_",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "the the the the the the the the the the",
                "x".repeat(300),
                " ".repeat(100) + "after many spaces",
                "\n".repeat(20) + "after many newlines");
    }

    /** The lines of the built-in corpus, and some of its paragraphs. */
    static List<String> corpusPieces() {
        Set<String> pieces = new LinkedHashSet<>();
        String corpus = VocabTrainer.corpus();
        for (String line : corpus.split("\n")) {
            if (!line.isEmpty()) {
                pieces.add(line);
            }
        }
        String[] paragraphs = corpus.split("\n\n");
        for (int i = 0; i < paragraphs.length; i += 3) {
            pieces.add(paragraphs[i]);
        }
        return new ArrayList<>(pieces);
    }

    private static final String[] FRAGMENTS = {
        "the", "The", "light", "house", "keeper", "ing", "tion", "er", "s", "'s", "'t", "'LL", "'re",
        "0", "7", "42", "2024", "3.5", "123456", "1,000",
        " ", "  ", "   ", "    ", "\t", "\n", "\r\n", "\n\n", " \n", "\u00A0", "\u3000", "\u2009",
        ".", ",", "!", "?", ";", ":", "(", ")", "{", "}", "[", "]", "<", ">", "=", "==", "->", "+=",
        "\"", "'", "`", "/", "\\", "#", "@", "$", "%", "^", "&", "*", "-", "_", "|", "~",
        "é", "ü", "ñ", "ø", "ß", "Å", "ç", "e\u0301", "α", "Ω", "Ж", "я", "ע", "ب", "क", "ก",
        "日", "本", "語", "港", "鑫", "の", "カ", "한", "국",
        "😀", "🐈", "☕", "🎉", "👍🏽", "👨‍👩‍👧", "🇯🇵", "❤️", "☃", "★", "€", "∑", "𝐀", "𠀀",
        "\u0378", "\uE000", "\u0001", "\u007F", "\u200B", "\u00AD", "▁", "Ġ",
        "<s>", "</s>", "<|endoftext|>", "<0x0A>"
    };

    /** Random mixtures of the fragments above (deterministic for a seed). */
    static List<String> random(long seed, int count) {
        Random random = new Random(seed);
        List<String> out = new ArrayList<>(count);
        for (int i = 0; i < count; i++) {
            StringBuilder sb = new StringBuilder();
            int n = 1 + random.nextInt(25);
            for (int j = 0; j < n; j++) {
                sb.append(FRAGMENTS[random.nextInt(FRAGMENTS.length)]);
            }
            out.add(sb.toString());
        }
        return out;
    }

    /** Everything: edge cases, corpus pieces and random mixtures. */
    static List<String> all() {
        List<String> all = new ArrayList<>(edgeCases());
        all.addAll(corpusPieces());
        all.addAll(random(12345, 300));
        return all;
    }
}
