package dev.specula.fuzz;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.specula.model.ModelConfig;
import dev.specula.model.ModelFile;
import dev.specula.model.ModelFormatException;
import dev.specula.model.ModelWeights;
import dev.specula.model.gguf.GgmlQuant;
import dev.specula.model.gguf.GgufFile;
import dev.specula.model.gguf.GgufTensor;
import java.nio.file.Path;
import java.util.function.Consumer;

/**
 * The GGUF reader on arbitrary bytes: {@link GgufFile#open} and every metadata and tensor accessor, then
 * {@link ModelFile#open} (config and weight mapping). Contract: a clean result or a {@link ModelFormatException}
 * naming the file; never another exception, never an allocation sized by a lying count.
 *
 * <p>Seeds ({@code GgufFuzzTestInputs/}): small models written by {@code TestModelMaker} and {@code GgufWriter}
 * (see {@link FuzzSeeds}), plus the inputs past runs found.
 */
class GgufFuzzTest {
    private static final Path DIR = FuzzSupport.scratchFolder("gguf");
    private static final Path FILE = DIR.resolve("model.gguf");
    /** Tensors decoded to floats in full, at most (a real model's would take the input's time). */
    private static final long DECODE_LIMIT = 1 << 16;

    @FuzzTest
    void openModel(byte[] data) {
        FuzzSupport.write(FILE, data);
        try (GgufFile g = GgufFile.open(FILE)) {
            readEverything(g);
        } catch (ModelFormatException e) {
            FuzzSupport.checkNamesFile(e, FILE);
        }
        try (ModelFile m = ModelFile.open(FILE)) {
            ModelConfig c = m.config();
            c.describe();
            for (ModelWeights.Weight w : m.weights()) {
                assertTrue(w.nbytes() >= 0 && w.rows() > 0 && w.cols() > 0, w::toString);
                FuzzSupport.touch(w.data());
            }
        } catch (ModelFormatException e) {
            FuzzSupport.checkNamesFile(e, FILE);
        }
    }

    private static void readEverything(GgufFile g) {
        g.version();
        if (!g.tensors().isEmpty()) assertTrue(g.dataOffset() <= g.fileSize());
        for (String key : g.metadata().keySet()) {
            g.valueType(key);
            g.arrayElementType(key);
            g.find(key);
            // Each typed accessor either answers or says the key has another type.
            quietly(key, g::findString);
            quietly(key, g::findInt);
            quietly(key, g::findLong);
            quietly(key, g::findFloat);
            quietly(key, g::findDouble);
            quietly(key, g::findBoolean);
            quietly(key, g::getStringList);
            quietly(key, g::getIntArray);
            quietly(key, g::getLongArray);
            quietly(key, g::getFloatArray);
            quietly(key, g::getDoubleArray);
            quietly(key, g::getBooleanArray);
        }
        quietly("no such key", g::getString);
        for (GgufTensor t : g.tensors()) {
            assertEquals(t, g.tensor(t.name()));
            long[] shape = t.shape();
            assertEquals(t.nDims(), shape.length);
            assertEquals(t.elementCount(), t.rows() * t.cols());
            assertEquals(t.type().bytesFor(t.elementCount()), t.byteSize());
            FuzzSupport.touch(t.data());
            if (GgmlQuant.supports(t.type()) && t.elementCount() <= DECODE_LIMIT) {
                assertEquals(t.elementCount(), GgmlQuant.decode(t).length);
            }
        }
    }

    private static void quietly(String key, Consumer<String> accessor) {
        try {
            accessor.accept(key);
        } catch (ModelFormatException e) {
            FuzzSupport.checkNamesFile(e, FILE);
        }
    }
}
