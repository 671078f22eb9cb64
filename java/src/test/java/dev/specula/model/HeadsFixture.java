package dev.specula.model;

import com.google.gson.JsonObject;
import dev.specula.model.safetensors.StWriter;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;

/**
 * Writes seeded random-weight draft heads in the published layouts (Medusa's medusa_lm_head.safetensors, Hydra's
 * reference release as safetensors), each with its config.json, for loader and engine tests. Every tensor can be
 * replaced or left out, to write broken files.
 */
public final class HeadsFixture {
    public final StWriter tensors = new StWriter();
    public final JsonObject config = new JsonObject();
    private final SplittableRandom rng;
    private final String fileName;

    private HeadsFixture(long seed, String fileName) {
        this.rng = new SplittableRandom(seed);
        this.fileName = fileName;
    }

    /** Random values of amplitude amp. */
    public float[] random(long count, double amp) {
        float[] v = new float[(int) count];
        for (int i = 0; i < v.length; i++) v[i] = (float) ((rng.nextDouble() * 2 - 1) * amp);
        return v;
    }

    public HeadsFixture put(String name, String dtype, long... shape) {
        long n = 1;
        for (long d : shape) n *= d;
        tensors.add(name, dtype, shape, random(n, shape.length == 1 ? 0.3 : Math.sqrt(3.0 / shape[shape.length - 1])));
        return this;
    }

    /** Medusa heads: {i}.{j}.linear.weight [E][E] and .bias [E], then {i}.{L}.weight [V][E] when withProjection. */
    public static HeadsFixture medusa(int nHeads, int nLayers, int e, int v, boolean withProjection, String dtype, long seed) {
        HeadsFixture f = new HeadsFixture(seed, "medusa_lm_head.safetensors");
        f.config.addProperty("medusa_num_heads", nHeads);
        f.config.addProperty("medusa_num_layers", nLayers);
        for (int h = 0; h < nHeads; h++) {
            for (int b = 0; b < nLayers; b++) {
                f.put(h + "." + b + ".linear.weight", dtype, e, e);
                f.put(h + "." + b + ".linear.bias", dtype, e);
            }
            if (withProjection) f.put(h + "." + nLayers + ".weight", dtype, v, e);
        }
        return f;
    }

    /**
     * Hydra heads (hydra_head_arch "mlp", grounded): hydra_mlp.{i}.0.linear / res_connection over [(i + 2) E], later
     * blocks' linear over [E], hydra_lm_head.{i}.weight [V][E] when withProjection and .bias [V].
     */
    public static HeadsFixture hydra(int nHeads, int nLayers, int e, int v, boolean withProjection, String dtype, long seed) {
        HeadsFixture f = new HeadsFixture(seed, "hydra_lm_head.safetensors");
        f.config.addProperty("hydra_num_heads", nHeads);
        f.config.addProperty("hydra_num_layers", nLayers);
        f.config.addProperty("hydra_head_arch", "mlp");
        f.config.addProperty("grounded_heads", true);
        f.config.addProperty("hidden_state_offset", 0);
        for (int h = 0; h < nHeads; h++) {
            for (int b = 0; b < nLayers; b++) {
                long in = b == 0 ? (long) e * (h + 2) : e;
                String p = "hydra_mlp." + h + "." + b + ".";
                f.put(p + "linear.weight", dtype, e, in);
                f.put(p + "linear.bias", dtype, e);
                if (b == 0) {
                    f.put(p + "res_connection.weight", dtype, e, in);
                    f.put(p + "res_connection.bias", dtype, e);
                }
            }
            if (withProjection) f.put("hydra_lm_head." + h + ".weight", dtype, v, e);
            f.put("hydra_lm_head." + h + ".bias", dtype, v);
        }
        return f;
    }

    /**
     * Random Medusa and Hydra heads (3 heads, 1 block, on the target's LM head) for a target of e and v, in dir/medusa
     * and dir/hydra: one folder that serves both drafters. Returns dir.
     */
    public static Path writeBoth(Path dir, int e, int v) {
        medusa(3, 1, e, v, false, "F16", 51).write(dir.resolve("medusa"));
        hydra(3, 1, e, v, false, "F16", 52).write(dir.resolve("hydra"));
        return dir;
    }

    /**
     * As {@link #writeBoth(Path, int, int)}, sized for the model file at model, with a random EAGLE layer for it in
     * dir/eagle too: one folder that serves every heads drafter.
     */
    public static Path writeBoth(Path dir, Path model) {
        if (Files.isDirectory(dir)) return dir; // written before (and maybe mapped by an engine): not rewritten
        try (ModelFile file = ModelFile.open(model)) {
            writeBoth(dir, file.config().nEmbd(), file.config().nVocab());
        }
        EagleFixture.forModel(model, "F16", 53).write(dir.resolve(EagleLayerFile.FOLDER));
        return dir;
    }

    /** Writes config.json and the weights file into dir; returns dir. */
    public Path write(Path dir) {
        try {
            Files.createDirectories(dir);
            Files.writeString(dir.resolve("config.json"), config.toString());
            Files.write(dir.resolve(fileName), tensors.bytes());
            return dir;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
