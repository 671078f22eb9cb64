package dev.specula.tokenizer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import dev.specula.model.gguf.GgufWriter;
import dev.specula.oracle.LlamaCppOracle;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Compares the Java tokenizers with llama.cpp itself, run through node-llama-cpp by
 * {@code tools/oracle/llama-oracle.mjs} (through {@link LlamaCppOracle}), on vocabularies from {@link VocabTrainer} written as
 * metadata-only GGUF files (llama.cpp loads them with {@code vocab_only}).
 *
 * <p>Skipped when {@code node} is not on the PATH or node-llama-cpp is not installed in
 * {@code $SPECULA_ORACLE_DIR} (default {@code ~/.cache/specula/oracle}).
 */
class TokenizerOracleTest {

    private static final Gson GSON = new GsonBuilder().disableHtmlEscaping().create();
    private static final Set<String> PRE_WITHOUT_CLEAN_SPACES = Set.of("qwen2", "smollm");

    private static LlamaCppOracle oracle;
    private static List<String> samples;

    @TempDir
    Path tmp;

    @BeforeAll
    static void findOracle() {
        var found = LlamaCppOracle.find();
        assumeTrue(found.isPresent(), () -> "llama.cpp oracle unavailable (" + LlamaCppOracle.whyMissing() + "); skipping");
        oracle = found.get();
        samples = TokenizerSamples.all();
    }

    /**
     * Vocabularies to compare: style, size, seed and a variant: a pre-tokenizer name for gpt2,
     * {@code "no-space-prefix"} (add_space_prefix false), or {@code "extra-specials"} (user-defined
     * and control chat tokens appended to the vocabulary).
     */
    static Stream<Arguments> vocabularies() {
        return Stream.of(
                Arguments.of("llama", 512, 1L, "default"),
                Arguments.of("llama", 4096, 7L, "default"),
                Arguments.of("llama", 1024, 5L, "no-space-prefix"),
                Arguments.of("llama", 1024, 5L, "extra-specials"),
                Arguments.of("gpt2", 512, 1L, "llama-bpe"),
                Arguments.of("gpt2", 4096, 7L, "llama-bpe"),
                Arguments.of("gpt2", 1024, 5L, "extra-specials"),
                Arguments.of("gpt2", 2048, 3L, "gpt-2"),
                Arguments.of("gpt2", 2048, 3L, "qwen2"),
                Arguments.of("gpt2", 2048, 3L, "smollm"),
                Arguments.of("gpt2", 2048, 3L, "default"));
    }

    static Map<String, Object> variant(String style, int size, long seed, String variant) {
        Map<String, Object> md = new LinkedHashMap<>(VocabTrainer.ggufMetadata(style, size, seed));
        switch (variant) {
            case "no-space-prefix" -> md.put("tokenizer.ggml.add_space_prefix", false);
            case "extra-specials" -> {
                @SuppressWarnings("unchecked")
                List<String> tokens = new ArrayList<>((List<String>) md.get("tokenizer.ggml.tokens"));
                int[] types = (int[]) md.get("tokenizer.ggml.token_type");
                List<String> extra = List.of("<|im_start|>", "[INST]", "[/INST]", "<|eot_id|>", "<|im_end|>");
                int[] extraTypes = {4, 4, 4, 3, 3};
                tokens.addAll(extra);
                int[] allTypes = Arrays.copyOf(types, types.length + extra.size());
                System.arraycopy(extraTypes, 0, allTypes, types.length, extraTypes.length);
                md.put("tokenizer.ggml.tokens", tokens);
                md.put("tokenizer.ggml.token_type", allTypes);
                if (md.get("tokenizer.ggml.scores") instanceof float[] scores) {
                    md.put("tokenizer.ggml.scores", Arrays.copyOf(scores, scores.length + extra.size()));
                }
            }
            case "default" -> { }
            default -> md.put("tokenizer.ggml.pre", variant);
        }
        return md;
    }

    /**
     * A tiny Llama architecture's hyperparameters plus the given tokenizer metadata: a GGUF without tensors, enough
     * for llama.cpp to load the vocabulary with vocab_only.
     */
    static Map<String, Object> llamaVocabOnly(Map<String, Object> tokenizerMetadata) {
        Map<String, Object> md = new LinkedHashMap<>();
        md.put("general.architecture", "llama");
        md.put("general.name", "specula-tokenizer-test");
        md.put("llama.context_length", 256);
        md.put("llama.embedding_length", 64);
        md.put("llama.block_count", 1);
        md.put("llama.feed_forward_length", 128);
        md.put("llama.attention.head_count", 4);
        md.put("llama.attention.head_count_kv", 4);
        md.put("llama.attention.layer_norm_rms_epsilon", 1e-5f);
        md.put("llama.rope.dimension_count", 16);
        md.put("llama.vocab_size", ((List<?>) tokenizerMetadata.get("tokenizer.ggml.tokens")).size());
        md.putAll(tokenizerMetadata);
        return md;
    }

    @ParameterizedTest(name = "{0} vocab {1} seed {2} {3}")
    @MethodSource("vocabularies")
    void tokenizesLikeLlamaCpp(String style, int size, long seed, String variant) throws Exception {
        Map<String, Object> md = variant(style, size, seed, variant);
        Tokenizer tokenizer = Tokenizer.fromGgufMetadata(md);
        Path gguf = tmp.resolve("vocab.gguf");
        new GgufWriter().putAll(llamaVocabOnly(md)).write(gguf);
        LlamaCppOracle.Tokenization theirs = oracle.tokenize(gguf, samples, true);
        assertEquals(samples.size(), theirs.tokens().size());

        String preName = (String) md.getOrDefault("tokenizer.ggml.pre", "");
        boolean cleanSpaces = style.equals("gpt2") && !PRE_WITHOUT_CLEAN_SPACES.contains(preName);
        List<String> mismatches = new ArrayList<>();
        int tokenMismatches = 0;
        int specialMismatches = 0;
        int textMismatches = 0;
        for (int i = 0; i < samples.size(); i++) {
            String text = samples.get(i);
            int[] expected = theirs.tokens().get(i);
            int[] actual = tokenizer.encode(text, false);
            if (!Arrays.equals(expected, actual)) {
                tokenMismatches++;
                mismatches.add(describe(tokenizer, text, expected, actual));
            }
            int[] expectedSpecial = theirs.specialTokens().get(i);
            int[] actualSpecial = tokenizer.encode(text, false, true);
            if (!Arrays.equals(expectedSpecial, actualSpecial)) {
                specialMismatches++;
                mismatches.add("(parse_special) " + describe(tokenizer, text, expectedSpecial, actualSpecial));
            }
            // llama.cpp's detokenize of its own ids; cleaned like llama.cpp for BPE vocabularies.
            byte[] decoded = tokenizer.decodeBytes(expected);
            String ours = new String(cleanSpaces ? cleanSpaces(decoded) : decoded, StandardCharsets.UTF_8);
            if (!ours.equals(theirs.texts().get(i))) {
                textMismatches++;
                mismatches.add("detokenize differs for " + GSON.toJson(text) + ": llama.cpp "
                        + GSON.toJson(theirs.texts().get(i)) + ", Java " + GSON.toJson(ours));
            }
        }
        System.out.printf("oracle %s/%d/%s: %d strings, %d token mismatches, %d parse_special mismatches,"
                + " %d detokenize mismatches%n", style, size, variant, samples.size(), tokenMismatches,
                specialMismatches, textMismatches);
        assertTrue(mismatches.isEmpty(), mismatches.size() + " mismatches with llama.cpp:\n"
                + String.join("\n", mismatches.subList(0, Math.min(20, mismatches.size()))));
    }

    private static String describe(Tokenizer tokenizer, String text, int[] expected, int[] actual) {
        return "text " + GSON.toJson(text) + "\n  llama.cpp " + pieces(tokenizer, expected)
                + "\n  Java      " + pieces(tokenizer, actual);
    }

    private static String pieces(Tokenizer tokenizer, int[] ids) {
        StringBuilder sb = new StringBuilder();
        for (int id : ids) {
            sb.append(id).append(':').append(GSON.toJson(tokenizer.tokenText(id))).append(' ');
        }
        return sb.toString();
    }

    /** llama.cpp's clean_spaces passes of llama_detokenize, on bytes. */
    static byte[] cleanSpaces(byte[] text) {
        // first pass: " ?", " !", " .", " ,"
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        byte[] t = text.clone();
        int total = t.length;
        int n = total > 0 ? 1 : 0;
        for (int i = 1; i < total; i++) {
            byte x = t[i];
            if (t[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) {
                n--;
            }
            t[n++] = x;
        }
        // second pass: strip a single apostrophe between spaces
        total = n;
        n = total > 0 ? 1 : 0;
        for (int i = 1; i < total; i++) {
            byte x = t[i];
            if (x == '\'' && i + 1 < total && t[i - 1] == ' ' && t[i + 1] == ' ') {
                n--;
                t[++i] = 0;
            }
            t[n++] = x;
        }
        // third pass: " 's", " 'm", " 're", " 've"
        total = n;
        n = total > 0 ? 1 : 0;
        for (int i = 1; i < total; i++) {
            byte x = t[i];
            if (t[i - 1] == ' ' && x == '\'' && i + 1 < total) {
                byte x1 = t[i + 1];
                if (x1 == 's' || x1 == 'm') {
                    n--;
                } else if (i + 2 < total) {
                    byte x2 = t[i + 2];
                    if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) {
                        n--;
                    }
                }
            }
            t[n++] = x;
        }
        out.write(t, 0, n);
        return out.toByteArray();
    }
}
