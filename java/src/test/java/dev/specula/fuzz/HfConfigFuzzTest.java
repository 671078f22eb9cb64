package dev.specula.fuzz;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.code_intelligence.jazzer.junit.FuzzTest;
import com.google.gson.JsonObject;
import dev.specula.model.ModelConfig;
import dev.specula.model.ModelFormatException;
import dev.specula.model.safetensors.SafetensorsCheckpoint;
import java.nio.file.Path;

/**
 * A Hugging Face {@code config.json} on arbitrary bytes: {@link SafetensorsCheckpoint#readJson} then
 * {@link ModelConfig#fromHf}. Contract: a config that passes {@link ModelConfig#check} (the native core's limits)
 * or a {@link ModelFormatException} naming the file.
 *
 * <p>Seeds: the test fixture's llama and qwen2 configs, with linear and Llama 3 RoPE scaling and partial rotary
 * factors ({@link FuzzSeeds}).
 */
class HfConfigFuzzTest {
    private static final Path DIR = FuzzSupport.scratchFolder("config");
    private static final Path FILE = DIR.resolve(SafetensorsCheckpoint.CONFIG);

    @FuzzTest
    void parseConfig(byte[] data) {
        FuzzSupport.write(FILE, data);
        try {
            JsonObject json = SafetensorsCheckpoint.readJson(FILE);
            ModelConfig c = ModelConfig.fromHf(FILE, json);
            assertEquals(c, c.check(FILE));
            c.describe();
        } catch (ModelFormatException e) {
            FuzzSupport.checkNamesFile(e, FILE);
        }
    }
}
