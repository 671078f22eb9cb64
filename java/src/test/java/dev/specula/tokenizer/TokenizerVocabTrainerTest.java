package dev.specula.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class TokenizerVocabTrainerTest {

    @Test
    void corpusIsVaried() {
        String corpus = VocabTrainer.corpus();
        int bytes = corpus.getBytes(java.nio.charset.StandardCharsets.UTF_8).length;
        assertTrue(bytes >= 20_000 && bytes <= 60_000, bytes + " bytes");
        for (String expected : List.of("public final class", "#include", "def ", "\"name\":", "    ", "\t",
                "é", "ü", "今天", "ひらがな", "서울", "😂", "Летом", "1024")) {
            assertTrue(corpus.contains(expected), expected);
        }
    }

    @ParameterizedTest(name = "{0} vocab {1}")
    @CsvSource({"llama, 512", "llama, 1000", "llama, 4096", "gpt2, 512", "gpt2, 1000", "gpt2, 4096"})
    void buildsExactlySizedDeterministicVocabularies(String style, int size) {
        Map<String, Object> a = VocabTrainer.ggufMetadata(style, size, 42);
        Map<String, Object> b = VocabTrainer.ggufMetadata(style, size, 42);
        assertEquals(a.keySet(), b.keySet());
        assertEquals(a.get("tokenizer.ggml.tokens"), b.get("tokenizer.ggml.tokens"));
        assertEquals(a.get("tokenizer.ggml.merges"), b.get("tokenizer.ggml.merges"));
        assertArrayEquals((int[]) a.get("tokenizer.ggml.token_type"), (int[]) b.get("tokenizer.ggml.token_type"));

        List<?> tokens = assertInstanceOf(List.class, a.get("tokenizer.ggml.tokens"));
        assertEquals(size, tokens.size());
        assertEquals(size, new HashSet<>(tokens).size(), "tokens are unique");
        int[] types = assertInstanceOf(int[].class, a.get("tokenizer.ggml.token_type"));
        assertEquals(size, types.length);
        assertEquals(style, a.get("tokenizer.ggml.model"));
        assertInstanceOf(Integer.class, a.get("tokenizer.ggml.bos_token_id"));
        assertInstanceOf(Integer.class, a.get("tokenizer.ggml.eos_token_id"));
        assertInstanceOf(Boolean.class, a.get("tokenizer.ggml.add_bos_token"));
        for (String key : a.keySet()) {
            assertTrue(key.startsWith("tokenizer.ggml."), key);
        }
        Tokenizer t = Tokenizer.fromGgufMetadata(a);
        assertEquals(size, t.vocabSize());
        assertTrue(t.stopTokens().contains(t.eos()));
    }

    @Test
    void llamaStyleLayout() {
        Map<String, Object> md = VocabTrainer.ggufMetadata("llama", 1024, 1);
        @SuppressWarnings("unchecked")
        List<String> tokens = (List<String>) md.get("tokenizer.ggml.tokens");
        int[] types = (int[]) md.get("tokenizer.ggml.token_type");
        float[] scores = assertInstanceOf(float[].class, md.get("tokenizer.ggml.scores"));
        assertEquals(List.of("<unk>", "<s>", "</s>", "<0x00>"), tokens.subList(0, 4));
        assertEquals("<0xFF>", tokens.get(258));
        assertArrayEquals(new int[] {2, 3, 3, 6}, java.util.Arrays.copyOf(types, 4));
        assertEquals(6, types[258]);
        assertEquals(1, types[259]);
        assertTrue(tokens.contains("▁"));
        assertTrue(tokens.contains("▁the"), "learned merges");
        assertEquals(0, md.get("tokenizer.ggml.unknown_token_id"));
        assertEquals(1, md.get("tokenizer.ggml.bos_token_id"));
        assertEquals(2, md.get("tokenizer.ggml.eos_token_id"));
        assertEquals(true, md.get("tokenizer.ggml.add_space_prefix"));
        // Learned pieces are scored by rank: 0, -1, -2, ...
        int firstMerge = tokens.size() - 1;
        while (tokens.get(firstMerge - 1).codePointCount(0, tokens.get(firstMerge - 1).length()) > 1) {
            firstMerge--;
        }
        assertEquals(0f, scores[firstMerge]);
        assertEquals(-1f, scores[firstMerge + 1]);
        assertEquals(Set.of(2), Tokenizer.fromGgufMetadata(md).stopTokens());
    }

    @Test
    void gpt2StyleLayout() {
        Map<String, Object> md = VocabTrainer.ggufMetadata("gpt2", 1024, 1);
        @SuppressWarnings("unchecked")
        List<String> tokens = (List<String>) md.get("tokenizer.ggml.tokens");
        @SuppressWarnings("unchecked")
        List<String> merges = (List<String>) md.get("tokenizer.ggml.merges");
        assertEquals("!", tokens.get('!'));
        assertEquals("Ġ", tokens.get(' '));
        assertEquals("Ċ", tokens.get('\n'));
        assertEquals("<|endoftext|>", tokens.get(1023));
        assertEquals(1023, md.get("tokenizer.ggml.bos_token_id"));
        assertEquals(1023, md.get("tokenizer.ggml.eos_token_id"));
        assertEquals("llama-bpe", md.get("tokenizer.ggml.pre"));
        assertEquals(3, ((int[]) md.get("tokenizer.ggml.token_type"))[1023]);
        assertTrue(merges.size() >= 1024 - 257);
        for (String merge : merges) {
            String[] parts = merge.split(" ");
            assertEquals(2, parts.length, merge);
            assertTrue(tokens.contains(parts[0] + parts[1]), merge);
        }
        assertTrue(tokens.contains("Ġthe"));
        Tokenizer t = Tokenizer.fromGgufMetadata(md);
        assertTrue(t.isControl(1023));
        assertEquals(Set.of(1023), t.stopTokens());
    }

    @Test
    void seedsChangeTiesOnly() {
        @SuppressWarnings("unchecked")
        List<String> a = (List<String>) VocabTrainer.ggufMetadata("gpt2", 4096, 1).get("tokenizer.ggml.tokens");
        @SuppressWarnings("unchecked")
        List<String> b = (List<String>) VocabTrainer.ggufMetadata("gpt2", 4096, 2).get("tokenizer.ggml.tokens");
        assertNotEquals(a, b);
        Set<String> shared = new HashSet<>(a);
        shared.retainAll(b);
        // Late merges are mostly ties between pairs seen once or twice, so seeds matter there.
        assertTrue(shared.size() > 0.5 * a.size(), "only " + shared.size() + " tokens in common");
    }

    @Test
    @Timeout(value = 120, unit = TimeUnit.SECONDS) // a guard against a runaway (quadratic) trainer, not a speed claim
    void trainsFullSizeVocabulariesWithoutRunningAway() {
        for (String style : List.of("llama", "gpt2")) assertFalse(VocabTrainer.ggufMetadata(style, 4096, 9).isEmpty(), style);
    }

    @Test
    void rejectsBadArguments() {
        assertThrows(IllegalArgumentException.class, () -> VocabTrainer.ggufMetadata("t5", 1000, 0));
        assertThrows(IllegalArgumentException.class, () -> VocabTrainer.ggufMetadata("llama", 200, 0));
        assertThrows(IllegalArgumentException.class, () -> VocabTrainer.ggufMetadata("gpt2", 256, 0));
        assertFalse(VocabTrainer.ggufMetadata("gpt2", 257, 0).isEmpty());
    }
}
