package dev.specula.model;

import com.google.gson.JsonObject;
import dev.specula.model.safetensors.StWriter;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Writes a seeded random-weight EAGLE-1 draft layer in the published layout (config.json and model.safetensors: fc,
 * then layers.0 without an input norm) for a target of the given shape, for loader and engine tests. Every tensor can be
 * replaced or left out, to write broken files; {@link #shapes} lists what a correct file holds.
 */
public final class EagleFixture {
    public final StWriter tensors = new StWriter();
    public final JsonObject config = new JsonObject();
    /** Every tensor written, with its shape. */
    public final Map<String, long[]> shapes = new LinkedHashMap<>();
    private final SplittableRandom rng;
    private final String dtype;

    private EagleFixture(long seed, String dtype) {
        this.rng = new SplittableRandom(seed);
        this.dtype = dtype;
    }

    public EagleFixture put(String name, long... shape) {
        return put(name, 0, shape);
    }

    /** A random norm weight of n around 1. */
    public EagleFixture putNorm(String name, long n) {
        return put(name, 1.0, new long[] {n});
    }

    /** A random tensor around center. */
    public EagleFixture put(String name, double center, long[] shape) {
        long n = 1;
        for (long d : shape) n *= d;
        double amp = shape.length == 1 ? 0.3 : Math.sqrt(3.0 / shape[shape.length - 1]);
        float[] v = new float[(int) n];
        for (int i = 0; i < v.length; i++) v[i] = (float) (center + (rng.nextDouble() * 2 - 1) * amp);
        tensors.add(name, dtype, shape, v);
        shapes.put(name, shape);
        return this;
    }

    /** A random layer of one decoder layer over a target of e and v, with heads of headDim and an fc bias. */
    public static EagleFixture random(int e, int v, int nHead, int nHeadKv, int headDim, int ffn, String dtype, long seed) {
        EagleFixture f = new EagleFixture(seed, dtype);
        f.config.addProperty("model_type", "llama");
        f.config.add("architectures", new com.google.gson.JsonArray());
        f.config.getAsJsonArray("architectures").add("LlamaForCausalLM");
        f.config.addProperty("hidden_size", e);
        f.config.addProperty("intermediate_size", ffn);
        f.config.addProperty("num_attention_heads", nHead);
        f.config.addProperty("num_key_value_heads", nHeadKv);
        f.config.addProperty("head_dim", headDim);
        f.config.addProperty("num_hidden_layers", 1);
        f.config.addProperty("vocab_size", v);
        f.config.addProperty("rms_norm_eps", 1e-5);
        f.config.addProperty("rope_theta", 10000.0);
        f.config.addProperty("max_position_embeddings", 2048);
        f.config.addProperty("bias", true);
        f.put("fc.weight", e, 2L * e);
        f.put("fc.bias", e);
        f.layer(0, e, nHead, nHeadKv, headDim, ffn);
        return f;
    }

    /** Layer l's tensors; layers after 0 have an input norm. */
    public EagleFixture layer(int l, int e, int nHead, int nHeadKv, int headDim, int ffn) {
        String p = "layers." + l + ".";
        if (l > 0) putNorm(p + "input_layernorm.weight", e);
        put(p + "self_attn.q_proj.weight", (long) nHead * headDim, e);
        put(p + "self_attn.k_proj.weight", (long) nHeadKv * headDim, e);
        put(p + "self_attn.v_proj.weight", (long) nHeadKv * headDim, e);
        put(p + "self_attn.o_proj.weight", e, (long) nHead * headDim);
        putNorm(p + "post_attention_layernorm.weight", e);
        put(p + "mlp.gate_proj.weight", ffn, e);
        put(p + "mlp.up_proj.weight", ffn, e);
        put(p + "mlp.down_proj.weight", e, ffn);
        return this;
    }

    /** A random layer for the model file at model, with its heads and an intermediate size of 2 n_embd. */
    public static EagleFixture forModel(Path model, String dtype, long seed) {
        try (ModelFile file = ModelFile.open(model)) {
            var c = file.config();
            return random(c.nEmbd(), c.nVocab(), c.nHead(), c.nHeadKv(), c.headDim(), 2 * c.nEmbd(), dtype, seed);
        }
    }

    /** Writes config.json and model.safetensors into dir; returns dir. */
    public Path write(Path dir) {
        try {
            Files.createDirectories(dir);
            Files.writeString(dir.resolve("config.json"), config.toString());
            Files.write(dir.resolve(EagleLayerFile.FILE_NAME), tensors.bytes());
            return dir;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
