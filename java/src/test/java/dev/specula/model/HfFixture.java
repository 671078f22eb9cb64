package dev.specula.model;

import com.google.gson.JsonObject;
import dev.specula.model.safetensors.StWriter;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/** A tiny Hugging Face checkpoint (config.json plus safetensors) for tests. */
public final class HfFixture {
    public String modelType = "llama";
    public int hidden = 16, heads = 4, kvHeads = 2, ff = 32, layers = 2, vocab = 40, context = 128;
    public boolean tied = false;
    public String dtype = "F32";
    /** Tensor names to leave out. */
    public List<String> omit = new ArrayList<>();
    /** Tensor names whose shape to replace. */
    public Map<String, long[]> reshape = new LinkedHashMap<>();

    public JsonObject config() {
        JsonObject c = new JsonObject();
        c.addProperty("model_type", modelType);
        c.addProperty("hidden_size", hidden);
        c.addProperty("intermediate_size", ff);
        c.addProperty("num_hidden_layers", layers);
        c.addProperty("num_attention_heads", heads);
        c.addProperty("num_key_value_heads", kvHeads);
        c.addProperty("rms_norm_eps", 1e-5);
        c.addProperty("rope_theta", 500000.0);
        c.addProperty("max_position_embeddings", context);
        c.addProperty("vocab_size", vocab);
        c.addProperty("tie_word_embeddings", tied);
        return c;
    }

    /** Every tensor name with its [rows, cols] or [n] shape, in file order. */
    public Map<String, long[]> shapes() {
        int headDim = hidden / heads;
        Map<String, long[]> s = new LinkedHashMap<>();
        s.put("model.embed_tokens.weight", new long[] {vocab, hidden});
        s.put("model.norm.weight", new long[] {hidden});
        if (!tied) s.put("lm_head.weight", new long[] {vocab, hidden});
        for (int l = 0; l < layers; l++) {
            String p = "model.layers." + l + ".";
            s.put(p + "input_layernorm.weight", new long[] {hidden});
            s.put(p + "self_attn.q_proj.weight", new long[] {heads * headDim, hidden});
            s.put(p + "self_attn.k_proj.weight", new long[] {kvHeads * headDim, hidden});
            s.put(p + "self_attn.v_proj.weight", new long[] {kvHeads * headDim, hidden});
            if (modelType.equals("qwen2")) {
                s.put(p + "self_attn.q_proj.bias", new long[] {heads * headDim});
                s.put(p + "self_attn.k_proj.bias", new long[] {kvHeads * headDim});
                s.put(p + "self_attn.v_proj.bias", new long[] {kvHeads * headDim});
            }
            s.put(p + "self_attn.o_proj.weight", new long[] {hidden, heads * headDim});
            s.put(p + "post_attention_layernorm.weight", new long[] {hidden});
            s.put(p + "mlp.gate_proj.weight", new long[] {ff, hidden});
            s.put(p + "mlp.up_proj.weight", new long[] {ff, hidden});
            s.put(p + "mlp.down_proj.weight", new long[] {hidden, ff});
        }
        s.put("model.rotary_emb.inv_freq", new long[] {headDim / 2}); // extra tensors are ignored
        for (String name : omit) s.remove(name);
        s.putAll(reshape);
        return s;
    }

    /** Writes config.json and the tensors, in one model.safetensors or split over shards with an index. */
    public Path write(Path dir, int shards) throws IOException {
        Files.createDirectories(dir);
        Files.writeString(dir.resolve("config.json"), config().toString());
        SplittableRandom random = new SplittableRandom(3);
        List<StWriter> writers = new ArrayList<>();
        for (int i = 0; i < shards; i++) writers.add(new StWriter());
        JsonObject weightMap = new JsonObject();
        int i = 0;
        for (Map.Entry<String, long[]> e : shapes().entrySet()) {
            long n = 1;
            for (long d : e.getValue()) n *= d;
            float[] values = new float[(int) n];
            for (int j = 0; j < n; j++) values[j] = (float) (random.nextDouble() - 0.5);
            int shard = i++ % shards;
            writers.get(shard).add(e.getKey(), dtype, e.getValue(), values);
            weightMap.addProperty(e.getKey(), shardName(shard, shards));
        }
        if (shards == 1) {
            writers.getFirst().write(dir.resolve("model.safetensors"));
        } else {
            for (int s = 0; s < shards; s++) writers.get(s).write(dir.resolve(shardName(s, shards)));
            JsonObject index = new JsonObject();
            index.add("metadata", new JsonObject());
            index.add("weight_map", weightMap);
            Files.writeString(dir.resolve("model.safetensors.index.json"), index.toString());
        }
        return dir;
    }

    public static String shardName(int shard, int shards) {
        return String.format("model-%05d-of-%05d.safetensors", shard + 1, shards);
    }
}
