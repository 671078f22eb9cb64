package dev.specula.fuzz;

import static org.junit.jupiter.api.Assertions.assertTrue;

import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.specula.tokenizer.HuggingFaceTokenizer;
import dev.specula.tokenizer.StreamingDecoder;
import dev.specula.tokenizer.Tokenizer;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

/**
 * Tokenizer loading from a Hugging Face {@code tokenizer.json} on arbitrary bytes, through
 * {@link Tokenizer#fromHuggingFace} (the project's reader of the JSON plus DJL's native tokenizers library), then
 * an encode and decode. The input is {@code tokenizer.json}, then optionally a NUL byte and the text to encode,
 * then optionally another NUL and a {@code tokenizer_config.json}. Contract: the tokenizer loads, or the loader
 * refuses it with an {@link IllegalArgumentException} that says why (an {@link IOException} only for a file it
 * cannot read); a loaded tokenizer encodes the text to ids in its range and decodes them without an exception.
 *
 * <p>Seeds: byte-level BPE tokenizer.json files in Llama 3's layout made from trained vocabularies ({@link FuzzSeeds}).
 */
class HfTokenizerFuzzTest {
    private static final String SAMPLE = "def max(a, b):\n    return a if a > b else b  # é → 😀";
    private static final Path DIR = FuzzSupport.scratchFolder("hf-tokenizer");
    private static final Path FILE = DIR.resolve("tokenizer.json");
    private static final Path CONFIG = DIR.resolve("tokenizer_config.json");

    @FuzzTest
    void loadAndEncode(byte[] data) throws IOException {
        byte[][] parts = split(data);
        FuzzSupport.write(FILE, parts[0]);
        String text = parts.length > 1 ? new String(parts[1], StandardCharsets.UTF_8) : SAMPLE;
        if (parts.length > 2) {
            FuzzSupport.write(CONFIG, parts[2]);
        } else {
            Files.deleteIfExists(CONFIG);
        }
        Tokenizer t;
        try {
            t = Tokenizer.fromHuggingFace(FILE);
        } catch (IllegalArgumentException e) {
            FuzzSupport.checkHasMessage(e);
            return;
        }
        try {
            for (int[] ids : new int[][] {t.encode(text), t.encode(text, true, false)}) {
                for (int id : ids) assertTrue(id >= 0 && id < t.vocabSize(), () -> "id " + id + " of " + t.vocabSize());
                t.decode(ids);
                StreamingDecoder stream = new StreamingDecoder(t, true);
                for (int id : ids) stream.accept(id);
                stream.flush();
            }
        } finally {
            ((HuggingFaceTokenizer) t).close();
        }
    }

    /** Splits at the first two NUL bytes (JSON text never holds a raw NUL). */
    private static byte[][] split(byte[] data) {
        int first = indexOf(data, 0);
        if (first < 0) return new byte[][] {data};
        int second = indexOf(data, first + 1);
        if (second < 0) return new byte[][] {Arrays.copyOf(data, first), Arrays.copyOfRange(data, first + 1, data.length)};
        return new byte[][] {Arrays.copyOf(data, first), Arrays.copyOfRange(data, first + 1, second),
                Arrays.copyOfRange(data, second + 1, data.length)};
    }

    private static int indexOf(byte[] data, int from) {
        for (int i = from; i < data.length; i++) if (data[i] == 0) return i;
        return -1;
    }
}
