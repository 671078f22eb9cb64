package dev.specula.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link HuggingFaceTokenizerWriter} on a llama-style (SentencePiece BPE, byte fallback) GGUF vocabulary: the
 * tokenizer.json it writes, run by the Rust tokenizers library, encodes as the GGUF tokenizer (the Java port of
 * llama.cpp) does, token for token, with the same BOS and special tokens.
 */
class TokenizerHuggingFaceSentencePieceTest {
    @TempDir
    static Path dir;

    private static HuggingFaceTokenizer hf;
    private static Tokenizer gguf;

    @BeforeAll
    static void load() throws Exception {
        Map<String, Object> md = VocabTrainer.ggufMetadata("llama", 2048, 11);
        gguf = Tokenizer.fromGgufMetadata(md);
        HuggingFaceTokenizerWriter.write(md, dir);
        hf = (HuggingFaceTokenizer) Tokenizer.fromHuggingFace(dir.resolve(HuggingFaceTokenizerWriter.TOKENIZER_JSON));
    }

    @AfterAll
    static void close() {
        if (hf != null) hf.close();
    }

    @Test
    void readsTheVocabularyAndSpecialTokens() {
        assertEquals(gguf.vocabSize(), hf.vocabSize());
        assertEquals(gguf.bos(), hf.bos());
        assertEquals(gguf.eos(), hf.eos());
        assertEquals(gguf.addBos(), hf.addBos());
        assertEquals(gguf.stopTokens(), hf.stopTokens());
        for (int id = 0; id < gguf.vocabSize(); id++) {
            assertArrayEquals(gguf.tokenBytes(id), hf.tokenBytes(id), "token " + id);
            // <unk> is a special added token in Hugging Face's Llama files, an unknown-typed one in GGUF
            if (id != 0) assertEquals(gguf.isControl(id), hf.isControl(id), "token " + id);
        }
    }

    @Test
    void encodesLikeTheGgufTokenizer() {
        List<String> mismatches = new ArrayList<>();
        List<String> samples = TokenizerSamples.all();
        for (String text : samples) {
            if (text.isEmpty()) continue; // Hugging Face's Prepend leaves an empty text empty, llama.cpp encodes nothing too
            for (boolean bos : new boolean[] {false, true}) {
                int[] expected = gguf.encode(text, bos, true);
                int[] actual = hf.encode(text, bos);
                if (!Arrays.equals(expected, actual)) {
                    mismatches.add((bos ? "[bos] " : "") + text.replace("\n", "\\n") + "\n  gguf " + Arrays.toString(expected)
                            + "\n  hf   " + Arrays.toString(actual));
                }
            }
        }
        System.out.printf("Hugging Face tokenizers vs GGUF SentencePiece: %d strings, %d mismatches%n", samples.size(), mismatches.size());
        assertTrue(mismatches.isEmpty(), mismatches.size() + " mismatches:\n" + String.join("\n", mismatches.subList(0, Math.min(10, mismatches.size()))));
    }

    @Test
    void decodesWhatItEncodes() {
        for (String text : List.of("Hello world, the keeper's log", "  two spaces and\ttabs\n", "café 日本語 🐈")) {
            int[] ids = hf.encode(text, true);
            assertEquals(gguf.decode(ids), hf.decode(ids));
            assertEquals(text, hf.decodeWithLibrary(ids));
        }
    }
}
