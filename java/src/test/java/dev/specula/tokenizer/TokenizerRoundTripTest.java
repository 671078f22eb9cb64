package dev.specula.tokenizer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.List;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** decode(encode(x)) == x on trained vocabularies, for many kinds of text. */
class TokenizerRoundTripTest {

    @ParameterizedTest(name = "{0} vocab {1}")
    @CsvSource({"llama, 512", "llama, 4096", "gpt2, 512", "gpt2, 4096"})
    void decodesWhatItEncodes(String style, int size) {
        Tokenizer t = Tokenizer.fromGgufMetadata(VocabTrainer.ggufMetadata(style, size, 42));
        List<String> samples = TokenizerSamples.all();
        for (String text : samples) {
            if (style.equals("llama") && text.contains("▁")) {
                continue; // SentencePiece cannot tell a written '▁' from a space (nor can llama.cpp)
            }
            for (boolean addBos : new boolean[] {false, true}) {
                int[] ids = t.encode(text, addBos);
                assertEquals(text, t.decode(ids), () -> style + " " + size + " addBos=" + addBos + ": " + text);
                for (int id : ids) {
                    assertTrue(id >= 0 && id < t.vocabSize());
                }
                if (addBos && t.bos() >= 0) {
                    assertEquals(t.bos(), ids[0]);
                }
            }
            // The token bytes concatenate to the text's UTF-8 (after the space prefix, if any).
            ByteArrayOutputStream bytes = new ByteArrayOutputStream();
            for (int id : t.encode(text, false)) {
                bytes.writeBytes(t.tokenBytes(id));
            }
            String expected = t.stripsLeadingSpace() && !text.isEmpty() ? " " + text : text;
            assertEquals(expected, bytes.toString(StandardCharsets.UTF_8));
        }
    }

    @ParameterizedTest(name = "{0}")
    @CsvSource({"llama", "gpt2"})
    void compressesTheCorpus(String style) {
        String corpus = VocabTrainer.corpus();
        int small = Tokenizer.fromGgufMetadata(VocabTrainer.ggufMetadata(style, 512, 1)).encode(corpus, false).length;
        int large = Tokenizer.fromGgufMetadata(VocabTrainer.ggufMetadata(style, 4096, 1)).encode(corpus, false).length;
        int bytes = corpus.getBytes(StandardCharsets.UTF_8).length;
        assertTrue(small < bytes * 0.8, "512 tokens: " + small + " tokens for " + bytes + " bytes");
        assertTrue(large < small * 0.6, "4096 tokens: " + large + " vs " + small);
    }
}
