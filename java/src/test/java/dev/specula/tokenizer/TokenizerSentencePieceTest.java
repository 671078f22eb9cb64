package dev.specula.tokenizer;

import static dev.specula.tokenizer.TestVocabs.texts;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.Test;

class TokenizerSentencePieceTest {

    private static Tokenizer spm(List<String> pieces, float[] scores, boolean withBytes, boolean spacePrefix) {
        return Tokenizer.fromGgufMetadata(TestVocabs.sentencePiece(pieces, scores, withBytes, spacePrefix));
    }

    @Test
    void mergesTheHighestScoringPairFirst() {
        // "abcd": bc (-0.5) beats ab (-1) and cd (-3); then bcd (-0.2) beats abc (-2).
        // Greedy longest match would give [abc, d]; BPE by rank of ab first would give [ab, cd].
        Tokenizer t = spm(List.of("a", "b", "c", "d", "ab", "bc", "cd", "abc", "bcd"),
                new float[] {-10, -10, -10, -10, -1, -0.5f, -3, -2, -0.2f}, true, false);
        assertEquals(List.of("a", "bcd"), texts(t, t.encode("abcd", false)));
    }

    @Test
    void equalScoresMergeTheLeftmostPairFirst() {
        Tokenizer t = spm(List.of("x", "y", "z", "xy", "yz"), new float[] {-10, -10, -10, -1, -1}, true, false);
        assertEquals(List.of("xy", "z"), texts(t, t.encode("xyz", false)));
        assertEquals(List.of("xy", "xy", "z"), texts(t, t.encode("xyxyz", false)));
    }

    @Test
    void mergesAcrossRepeatedSymbols() {
        // Merging continues with the new symbols: a+a -> aa, then aa+aa -> aaaa.
        Tokenizer t = spm(List.of("a", "aa", "aaaa"), new float[] {-10, -1, -2}, true, false);
        assertEquals(List.of("aaaa", "aa", "a"), texts(t, t.encode("aaaaaaa", false)));
    }

    @Test
    void addsTheSpacePrefixAndEscapesSpaces() {
        Tokenizer t = spm(List.of("▁", "h", "i", "▁h", "▁hi"), new float[] {-10, -10, -10, -2, -1}, true, true);
        assertEquals(List.of("▁hi", "▁hi"), texts(t, t.encode("hi hi", false)));
        assertEquals(List.of("<s>", "▁hi"), texts(t, t.encode("hi", true)));
        assertEquals("hi hi", t.decode(t.encode("hi hi", false)));
        assertEquals("hi hi", t.decode(t.encode("hi hi", true)));
        assertEquals(" hi", t.decode(t.encode(" hi", true)));
        assertTrue(t.stripsLeadingSpace());

        Tokenizer noPrefix = spm(List.of("▁", "h", "i", "▁h", "▁hi"), new float[] {-10, -10, -10, -2, -1}, true, false);
        assertEquals(List.of("h", "i", "▁hi"), texts(noPrefix, noPrefix.encode("hi hi", false)));
        assertEquals("hi hi", noPrefix.decode(noPrefix.encode("hi hi", false)));
        assertFalse(noPrefix.stripsLeadingSpace());
    }

    @Test
    void fallsBackToByteTokens() {
        Tokenizer t = spm(List.of("c", "a", "f", "ca", "caf"), new float[] {-10, -10, -10, -1, -2}, true, false);
        int[] ids = t.encode("café😀", false);
        assertEquals(List.of("caf", "<0xC3>", "<0xA9>", "<0xF0>", "<0x9F>", "<0x98>", "<0x80>"), texts(t, ids));
        assertEquals("café😀", t.decode(ids));
        assertArrayEquals(new byte[] {(byte) 0xC3}, t.tokenBytes(ids[1]));
    }

    @Test
    void usesTheUnknownTokenWithoutByteTokens() {
        Tokenizer t = spm(List.of("a", "b"), new float[] {-1, -1}, false, false);
        assertEquals(List.of("a", "<unk>", "<unk>", "b"), texts(t, t.encode("aéb", false)));
        assertEquals("ab", t.decode(t.encode("aéb", false)));
    }

    @Test
    void controlTokensInTheTextArePlainTextUnlessAsked() {
        Tokenizer t = spm(List.of("▁", "<", ">", "s", "/", "x"), new float[] {-1, -1, -1, -1, -1, -1}, true, true);
        int[] plain = t.encode("<s>x", false);
        assertEquals(List.of("▁", "<", "s", ">", "x"), texts(t, plain));
        int[] special = t.encode("<s>x", false, true);
        // After a special token the next text gets the space prefix again (llama.cpp behaviour).
        assertEquals(List.of("<s>", "▁", "x"), texts(t, special));
        assertArrayEquals(new byte[0], t.tokenBytes(1));
        assertArrayEquals("<s>".getBytes(StandardCharsets.UTF_8), t.tokenBytes(1, true));
        assertTrue(t.isControl(1));
        assertFalse(t.isControl(259));
    }

    @Test
    void userDefinedTokensAreAlwaysMatchedWhole() {
        Map<String, Object> md = TestVocabs.sentencePiece(List.of("▁", "a", "[INST]"), new float[] {-1, -1, 0}, true, true);
        int[] types = ((int[]) md.get("tokenizer.ggml.token_type")).clone();
        types[types.length - 1] = GgufVocabulary.TYPE_USER_DEFINED;
        md.put("tokenizer.ggml.token_type", types);
        Tokenizer t = Tokenizer.fromGgufMetadata(md);
        assertEquals(List.of("▁", "a", "[INST]", "▁", "a"), texts(t, t.encode("a[INST]a", false)));
        assertEquals("a[INST] a", t.decode(t.encode("a[INST]a", false)));
    }

    @Test
    void followsTheModelFlagsByDefault() {
        Map<String, Object> md = TestVocabs.sentencePiece(List.of("▁", "a"), new float[] {-1, -1}, true, true);
        Tokenizer t = Tokenizer.fromGgufMetadata(md);
        assertTrue(t.addBos());
        assertEquals(List.of("<s>", "▁", "a"), texts(t, t.encode("a")));
        md.put("tokenizer.ggml.add_bos_token", false);
        md.put("tokenizer.ggml.add_eos_token", true);
        t = Tokenizer.fromGgufMetadata(md);
        assertFalse(t.addBos());
        assertEquals(List.of("▁", "a", "</s>"), texts(t, t.encode("a")));
        assertEquals(List.of("<s>", "▁", "a"), texts(t, t.encode("a", true)));
        assertEquals(0, t.encode("", false).length);
        assertArrayEquals(new int[] {1}, t.encode("", true));
    }

    @Test
    void readsSpecialIdsAndRejectsBadVocabularies() {
        Map<String, Object> md = TestVocabs.sentencePiece(List.of("a", "b"), new float[] {-1, -1}, false, true);
        md.put("tokenizer.ggml.bos_token_id", 3);
        md.put("tokenizer.ggml.eos_token_id", 999); // out of range: keeps the default
        Tokenizer t = Tokenizer.fromGgufMetadata(md);
        assertEquals(3, t.bos());
        assertEquals(2, t.eos());
        assertEquals(5, t.vocabSize());
        assertInstanceOf(SentencePieceTokenizer.class, t);

        List<String> duplicate = new ArrayList<>(List.of("a", "a"));
        Map<String, Object> bad = TestVocabs.sentencePiece(duplicate, new float[] {-1, -1}, false, true);
        assertThrows(IllegalArgumentException.class, () -> Tokenizer.fromGgufMetadata(bad));
        Map<String, Object> unknown = TestVocabs.sentencePiece(List.of("a"), new float[] {-1}, false, true);
        unknown.put("tokenizer.ggml.model", "t5");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Tokenizer.fromGgufMetadata(unknown));
        assertTrue(e.getMessage().contains("t5"));
        assertThrows(IllegalArgumentException.class, () -> t.tokenText(5));
    }
}
