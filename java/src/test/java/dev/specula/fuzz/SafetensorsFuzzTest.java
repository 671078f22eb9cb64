package dev.specula.fuzz;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.specula.model.ModelFile;
import dev.specula.model.ModelFormatException;
import dev.specula.model.ModelWeights;
import dev.specula.model.safetensors.SafetensorsFile;
import dev.specula.model.safetensors.SafetensorsTensor;
import com.code_intelligence.jazzer.junit.FuzzTest;
import java.nio.file.Path;

/**
 * A safetensors file on arbitrary bytes (length field, JSON header, data): {@link SafetensorsFile#open} and its
 * accessors, then {@link ModelFile#open} of a checkpoint folder holding it beside a valid config.json (the weight
 * mapping). Contract: a clean result or a {@link ModelFormatException} naming the file or its folder.
 *
 * <p>Seeds: tiny checkpoints in F32, F16 and BF16 written by the tests' safetensors writer ({@link FuzzSeeds}).
 */
class SafetensorsFuzzTest {
    private static final Path DIR = FuzzSupport.scratchFolder("safetensors");
    private static final Path FILE = DIR.resolve("model.safetensors");

    static {
        try {
            FuzzSeeds.checkpoint().write(DIR, 1); // config.json; model.safetensors is each input
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    @FuzzTest
    void openFile(byte[] data) {
        FuzzSupport.write(FILE, data);
        try (SafetensorsFile f = SafetensorsFile.open(FILE)) {
            f.metadata();
            for (SafetensorsTensor t : f.tensors()) {
                assertEquals(t, f.tensor(t.name()));
                assertEquals(t.elementCount() * t.dtype().bytes(), t.data().byteSize());
                if (t.shape().length > 0 && t.elementCount() > 0) assertEquals(t.elementCount(), t.rows() * t.cols());
                FuzzSupport.touch(t.data());
            }
        } catch (ModelFormatException e) {
            FuzzSupport.checkNamesFile(e, FILE);
        }
        try (ModelFile m = ModelFile.open(DIR)) {
            m.config().describe();
            for (ModelWeights.Weight w : m.weights()) {
                assertTrue(w.rows() > 0 && w.cols() > 0, w::toString);
                FuzzSupport.touch(w.data());
            }
        } catch (ModelFormatException e) {
            FuzzSupport.checkNamesFile(e, DIR);
        }
    }
}
