package dev.specula.tokenizer;

import dev.specula.model.TinyVocab;
import dev.specula.model.gguf.GgufWriter;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/** The tokenizer fuzz targets' seeds (see dev.specula.fuzz.FuzzSeeds), made with this package's test writers. */
public final class TokenizerFuzzSeeds {
    private static final List<String> TEXTS = List.of(
            "public static int max(int a, int b) {\n\treturn a > b ? a : b;\n}",
            " <s>hello</s> <|endoftext|> <unk> world",
            "é → 😀 \u0000 \uFFFD 日本語",
            "");

    private TokenizerFuzzSeeds() {}

    /** GGUF files holding tokenizer metadata, each with a text to encode under textKey. */
    public static void ggufVocabularies(Path dir, String textKey) throws IOException {
        Map<String, Map<String, Object>> vocabularies = Map.of(
                "spm-300", VocabTrainer.ggufMetadata("llama", 300, 7),
                "bpe-300", VocabTrainer.ggufMetadata("gpt2", 300, 7),
                "tiny", TinyVocab.metadata());
        for (Map.Entry<String, Map<String, Object>> v : vocabularies.entrySet()) {
            for (int i = 0; i < TEXTS.size(); i += 2) {
                Path file = dir.resolve("seed-" + v.getKey() + "-" + i + ".gguf");
                new GgufWriter().putAll(v.getValue()).putString(textKey, TEXTS.get(i) + TEXTS.get(i + 1)).write(file);
            }
        }
        // Refused when loaded (they once failed later, in decoding, or with a ClassCastException).
        Map<String, Object> badByte = new java.util.LinkedHashMap<>(TinyVocab.metadata());
        List<String> tokens = new java.util.ArrayList<>(TinyVocab.PIECES.size() + 259);
        @SuppressWarnings("unchecked")
        List<String> original = (List<String>) badByte.get("tokenizer.ggml.tokens");
        tokens.addAll(original);
        tokens.set(3 + 0x41, "<0xG1>");
        badByte.put("tokenizer.ggml.tokens", tokens);
        new GgufWriter().putAll(badByte).putString(textKey, "A").write(dir.resolve("seed-bad-byte-token.gguf"));
        Map<String, Object> nested = new java.util.LinkedHashMap<>(TinyVocab.metadata());
        nested.put("tokenizer.ggml.tokens", List.of(List.of("a"), List.of("b")));
        new GgufWriter().putAll(nested).write(dir.resolve("seed-tokens-not-strings.gguf"));
    }

    /** The texts the tokenizer tests round-trip, one file each, in UTF-8. */
    public static void texts(Path dir) throws IOException {
        List<String> samples = TokenizerSamples.edgeCases();
        for (int i = 0; i < samples.size(); i++) {
            Files.writeString(dir.resolve(String.format("seed-%03d", i)), samples.get(i), StandardCharsets.UTF_8);
        }
    }

    /** tokenizer.json files (Llama 3 layout) from trained byte-level vocabularies, then NUL, a text, NUL, a config. */
    public static void huggingFaceJson(Path dir) throws IOException {
        String json = HuggingFaceTokenizerWriter.tokenizerJson(VocabTrainer.ggufMetadata("gpt2", 300, 7));
        Files.writeString(dir.resolve("seed-bpe-300.json"), json, StandardCharsets.UTF_8);
        for (int i = 0; i < TEXTS.size(); i++) {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            out.writeBytes(json.getBytes(StandardCharsets.UTF_8));
            out.write(0);
            out.writeBytes(TEXTS.get(i).replace("\u0000", "").getBytes(StandardCharsets.UTF_8));
            if (i % 2 == 1) {
                out.write(0);
                out.writeBytes("{\"bos_token\": \"<|endoftext|>\", \"eos_token\": {\"content\": \"<|endoftext|>\"}}"
                        .getBytes(StandardCharsets.UTF_8));
            }
            Files.write(dir.resolve("seed-bpe-300-text-" + i), out.toByteArray());
        }
    }
}
