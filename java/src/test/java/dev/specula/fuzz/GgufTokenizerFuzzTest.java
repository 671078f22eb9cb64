package dev.specula.fuzz;

import static org.junit.jupiter.api.Assertions.assertTrue;

import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.specula.model.ModelFormatException;
import dev.specula.model.gguf.GgufFile;
import dev.specula.tokenizer.StreamingDecoder;
import dev.specula.tokenizer.Tokenizer;
import java.nio.file.Path;

/**
 * Tokenizer loading from GGUF metadata on arbitrary bytes: {@link GgufFile#open}, then
 * {@link Tokenizer#fromGgufMetadata}, then encoding the text the file carries under {@value #TEXT_KEY} (or a fixed
 * sample) and decoding the ids, whole and as a stream. Contract: the file is read or refused with a
 * {@link ModelFormatException}; the vocabulary is accepted or refused with an {@link IllegalArgumentException}
 * that says why; a tokenizer that was accepted encodes any text to ids in its range and decodes them again without
 * an exception.
 *
 * <p>Seeds: GGUF files of trained SentencePiece and byte-level BPE vocabularies and the tests' tiny one, each with a
 * text ({@link FuzzSeeds}).
 */
class GgufTokenizerFuzzTest {
    static final String TEXT_KEY = "fuzz.text";
    private static final String SAMPLE = "public static int max(int a, int b) {\n\treturn a > b ? a : b; // é → 😀\n}";
    private static final Path DIR = FuzzSupport.scratchFolder("gguf-tokenizer");
    private static final Path FILE = DIR.resolve("vocab.gguf");

    @FuzzTest
    void loadAndEncode(byte[] data) {
        FuzzSupport.write(FILE, data);
        try (GgufFile g = GgufFile.open(FILE)) {
            Tokenizer t;
            try {
                t = Tokenizer.fromGgufMetadata(g.metadata());
            } catch (IllegalArgumentException e) {
                FuzzSupport.checkHasMessage(e);
                return;
            }
            String text = g.metadata().get(TEXT_KEY) instanceof String s ? s : SAMPLE;
            for (boolean parseSpecial : new boolean[] {false, true}) {
                int[] ids = t.encode(text, true, parseSpecial);
                for (int id : ids) assertTrue(id >= 0 && id < t.vocabSize(), () -> "id " + id + " of " + t.vocabSize());
                t.decode(ids);
                StreamingDecoder stream = new StreamingDecoder(t);
                for (int id : ids) stream.accept(id);
                stream.flush();
            }
            t.encode(text);
            for (int id : t.stopTokens()) t.tokenBytes(id, true);
        } catch (ModelFormatException e) {
            FuzzSupport.checkNamesFile(e, FILE);
        }
    }
}
