package dev.specula.tokenizer;

import static dev.specula.tokenizer.TestVocabs.texts;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.Test;

class TokenizerBytePairTest {

    private static List<String> split(String pre, String text) {
        return PreTokenizer.forName(pre).split(text);
    }

    @Test
    void gpt2PreTokenizerSplits() {
        assertEquals(List.of("Hello", " world", "'s", " 123", " foo", "!!", " ", " bar", "\n"),
                split("gpt-2", "Hello world's 123 foo!!  bar\n"));
        // GPT-2's contractions are case-sensitive; whitespace before a word leaves one space to it.
        assertEquals(List.of("I", "'m", " here", "'", "LL", " \t", " x", "   "),
                split("gpt-2", "I'm here'LL \t x   "));
        assertEquals(List.of("café", " 日本語", " 😀🎉", " 42", "abc"), split("gpt-2", "café 日本語 😀🎉 42abc"));
    }

    @Test
    void llama3PreTokenizerSplits() {
        assertEquals(List.of("Hello", " world", "'s", " ", "123", "45", " foo", "!!", " ", " bar", "\n\n", "x"),
                split("llama-bpe", "Hello world's 12345 foo!!  bar\n\nx"));
        // Case-insensitive contractions, punctuation keeps its newlines, a non-letter leads a word.
        assertEquals(List.of("I", "'M", " fine", ".\n", "$x", " (", "a", ")", "\t", "\tb"),
                split("llama3", "I'M fine.\n$x (a)\t\tb"));
        assertEquals(List.of("1", "2", "3", "4"), split("qwen2", "1234"));
    }

    @Test
    void otherPreTokenizersSplit() {
        assertEquals(List.of("x", " ", "1", "2", "3", " y"), split("smollm", "x 123 y"));
        assertEquals(List.of("Hello", " world", "'", "s", " ", "123", "45", "!!"),
                split("default", "Hello world's 12345!!"));
        assertEquals(List.of("Hello", " world", "'s", " ", "1", "2", " foo"), split("qwen2", "Hello world's 12 foo"));
    }

    @Test
    void unknownPreTokenizerIsAClearError() {
        Map<String, Object> md = TestVocabs.bytePair("tekken-ish", List.of(), List.of(), List.of());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Tokenizer.fromGgufMetadata(md));
        assertTrue(e.getMessage().contains("'tekken-ish'"), e.getMessage());
        assertTrue(e.getMessage().contains("tokenizer.ggml.pre"), e.getMessage());
    }

    @Test
    void mergesByRank() {
        Tokenizer bcFirst = Tokenizer.fromGgufMetadata(TestVocabs.bytePair("gpt-2", List.of("b c", "a b"), List.of(), List.of()));
        assertEquals(List.of("a", "bc"), texts(bcFirst, bcFirst.encode("abc", false)));
        Tokenizer abFirst = Tokenizer.fromGgufMetadata(TestVocabs.bytePair("gpt-2", List.of("a b", "b c"), List.of(), List.of()));
        assertEquals(List.of("ab", "c"), texts(abFirst, abFirst.encode("abc", false)));

        Tokenizer lower = Tokenizer.fromGgufMetadata(TestVocabs.bytePair("gpt-2",
                List.of("l o", "lo w", "e r", "low er", "Ġ low"), List.of(), List.of()));
        assertEquals(List.of("lower", "Ġlow", "Ġ", "lo", "l"), texts(lower, lower.encode("lower low lol", false)));
        assertEquals("lower low lol", lower.decode(lower.encode("lower low lol", false)));
    }

    @Test
    void llama3TakesWholeWordsFromTheVocabulary() {
        // "abc" is a token that the merges never build; Llama 3 (ignore_merges) uses it anyway.
        List<String> merges = List.of("b c", "a b");
        Map<String, Object> llama3 = TestVocabs.bytePair("llama-bpe", merges, List.of("abc"), List.of(1));
        Tokenizer t = Tokenizer.fromGgufMetadata(llama3);
        assertEquals(List.of("abc"), texts(t, t.encode("abc", false)));
        Map<String, Object> gpt2 = TestVocabs.bytePair("gpt-2", merges, List.of("abc"), List.of(1));
        Tokenizer g = Tokenizer.fromGgufMetadata(gpt2);
        assertEquals(List.of("a", "bc"), texts(g, g.encode("abc", false)));
    }

    @Test
    void encodesAnyBytesAndDecodesThemBack() {
        Tokenizer t = Tokenizer.fromGgufMetadata(TestVocabs.bytePair("llama3", List.of("Ġ w"), List.of(), List.of()));
        String text = "héllo wörld 😀\t\n日本";
        int[] ids = t.encode(text, false);
        assertEquals(text.getBytes(StandardCharsets.UTF_8).length - 1, ids.length); // one merge: " w"
        assertEquals(text, t.decode(ids));
        assertArrayEquals(new byte[] {(byte) 0xF0}, t.tokenBytes(0xF0));
        assertArrayEquals(" w".getBytes(StandardCharsets.UTF_8), t.tokenBytes(256));
        assertEquals("Ġw", t.tokenText(256));
    }

    @Test
    void llamaBpeAddsBosByDefaultUnlessTheModelSaysOtherwise() {
        Map<String, Object> md = TestVocabs.bytePair("llama-bpe", List.of(), List.of("<|begin_of_text|>"), List.of(3));
        md.put("tokenizer.ggml.bos_token_id", 256);
        Tokenizer t = Tokenizer.fromGgufMetadata(md);
        assertTrue(t.addBos());
        assertEquals(256, t.encode("a")[0]);
        md.put("tokenizer.ggml.add_bos_token", false);
        assertFalse(Tokenizer.fromGgufMetadata(md).addBos());
        Map<String, Object> gpt2 = TestVocabs.bytePair("gpt-2", List.of(), List.of(), List.of());
        assertFalse(Tokenizer.fromGgufMetadata(gpt2).addBos());
        // llama.cpp's BPE default BOS/EOS id is 11 when the metadata names none.
        assertEquals(11, Tokenizer.fromGgufMetadata(gpt2).eos());
    }

    @Test
    void findsStopTokens() {
        Map<String, Object> md = TestVocabs.bytePair("llama-bpe", List.of(),
                List.of("<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|start|>"),
                List.of(3, 3, 3, 3, 1, 3));
        md.put("tokenizer.ggml.bos_token_id", 256);
        md.put("tokenizer.ggml.eos_token_id", 257);
        Tokenizer t = Tokenizer.fromGgufMetadata(md);
        assertEquals(257, t.eos());
        assertEquals(java.util.Set.of(257, 258, 259, 260), t.stopTokens());
        // A stop token that was not typed control becomes control, as in llama.cpp.
        assertTrue(t.isControl(260));
        assertFalse(t.stopTokens().contains(261));
        assertFalse(t.stopTokens().contains(256));

        md.put("tokenizer.ggml.eot_token_id", 65); // an explicit EOT id joins the set
        assertTrue(Tokenizer.fromGgufMetadata(md).stopTokens().contains(65));
    }

    @Test
    void stopTokensOfASentencePieceVocabulary() {
        Map<String, Object> md = TestVocabs.sentencePiece(List.of("a", "<|im_end|>"), new float[] {-1, 0}, true, true);
        Tokenizer t = Tokenizer.fromGgufMetadata(md);
        assertEquals(java.util.Set.of(2, 260), t.stopTokens());
        assertTrue(t.isControl(260));
    }
}
