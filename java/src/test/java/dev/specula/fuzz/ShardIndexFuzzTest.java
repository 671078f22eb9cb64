package dev.specula.fuzz;

import static org.junit.jupiter.api.Assertions.assertTrue;

import com.code_intelligence.jazzer.junit.FuzzTest;
import dev.specula.model.ModelFile;
import dev.specula.model.ModelFormatException;
import dev.specula.model.ModelWeights;
import dev.specula.model.safetensors.SafetensorsCheckpoint;
import java.nio.file.Path;

/**
 * A sharded checkpoint's {@code model.safetensors.index.json} on arbitrary bytes, in a folder holding a valid
 * config.json and two valid shards: {@link SafetensorsCheckpoint#open} and {@link ModelFile#open}. Contract: a
 * clean result or a {@link ModelFormatException} naming a file of the folder (never a path outside it: a shard
 * name must not reach other folders).
 *
 * <p>Seeds: the index the two shards need, plus indexes with missing, foreign and odd shard names ({@link FuzzSeeds}).
 */
class ShardIndexFuzzTest {
    private static final Path DIR = FuzzSupport.scratchFolder("shards");
    private static final Path INDEX = DIR.resolve(SafetensorsCheckpoint.INDEX);

    static {
        try {
            FuzzSeeds.checkpoint().write(DIR, 2); // config.json and two shards; the index is each input
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    @FuzzTest
    void openShardIndex(byte[] data) {
        FuzzSupport.write(INDEX, data);
        try (SafetensorsCheckpoint c = SafetensorsCheckpoint.open(DIR)) {
            for (String name : c.tensorNames()) FuzzSupport.touch(c.tensor(name).data());
        } catch (ModelFormatException e) {
            FuzzSupport.checkNamesFile(e, DIR);
        }
        try (ModelFile m = ModelFile.open(INDEX)) {
            for (ModelWeights.Weight w : m.weights()) {
                assertTrue(w.rows() > 0 && w.cols() > 0, w::toString);
                FuzzSupport.touch(w.data());
            }
        } catch (ModelFormatException e) {
            FuzzSupport.checkNamesFile(e, DIR);
        }
    }
}
