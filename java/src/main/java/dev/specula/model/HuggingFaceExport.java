package dev.specula.model;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import dev.specula.model.gguf.GgmlQuant;
import dev.specula.model.gguf.GgmlType;
import dev.specula.model.gguf.GgufFile;
import dev.specula.model.gguf.GgufTensor;
import dev.specula.nativeapi.Arch;
import dev.specula.tokenizer.HuggingFaceTokenizerWriter;
import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Writes a GGUF model as a Hugging Face folder (config.json, model.safetensors with transformers' names, and the
 * tokenizer as tokenizer.json and tokenizer_config.json), so that the same model can be loaded both ways
 * ({@code make-test-model --hf-out}). llama, qwen2, qwen3 and gemma3. Hugging Face layouts rotate halves: qwen and
 * gemma GGUF q/k rows are already in that order, while llama.cpp's converter interleaves llama's, so they are put
 * back (the inverse of its permute) here. F32, F16 and BF16 tensors keep their type; quantized ones are written
 * dequantized, as F32. Gemma's norms are stored as w = stored - 1 (transformers adds the 1, llama.cpp's converter
 * has already added it).
 */
public final class HuggingFaceExport {
    private HuggingFaceExport() {}

    /** The architectures this writes. */
    public static final List<Arch> ARCHS = List.of(Arch.LLAMA, Arch.QWEN2, Arch.QWEN3, Arch.GEMMA3);

    /** Writes gguf's model and tokenizer into dir (created if missing); returns the safetensors file. */
    public static Path write(Path gguf, Path dir) {
        try (GgufFile g = GgufFile.open(gguf)) {
            ModelConfig c = ModelConfig.fromGguf(g);
            if (!ARCHS.contains(c.arch())) {
                throw new UnsupportedOperationException("a Hugging Face folder is written for llama, qwen2, qwen3 and gemma3 only, not "
                        + c.arch().name().toLowerCase(java.util.Locale.ROOT));
            }
            if (c.arch() == Arch.LLAMA && c.ropeDims() != c.headDim())
                throw new UnsupportedOperationException("a llama model with partial RoPE (" + c.ropeDims() + " of " + c.headDim()
                        + " dimensions) is not written as a Hugging Face folder");
            if (c.ropeScaling() != dev.specula.nativeapi.RopeScaling.NONE)
                throw new UnsupportedOperationException("a model with RoPE scaling is not written as a Hugging Face folder");
            HuggingFaceTokenizerWriter.tokenizerJson(g.metadata()); // an unsupported tokenizer is refused before anything is written
            Files.createDirectories(dir);
            Files.writeString(dir.resolve("config.json"), config(c).toString());
            Path st = dir.resolve("model.safetensors");
            writeSafetensors(g, c, st);
            HuggingFaceTokenizerWriter.write(g.metadata(), dir);
            return st;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** transformers' config.json for c. */
    static JsonObject config(ModelConfig c) {
        boolean gemma = c.arch() == Arch.GEMMA3;
        JsonObject json = new JsonObject();
        json.addProperty("model_type", switch (c.arch()) {
            case GEMMA3 -> "gemma3_text";
            case QWEN3 -> "qwen3";
            case LLAMA -> "llama";
            default -> "qwen2";
        });
        json.addProperty("hidden_size", c.nEmbd());
        json.addProperty("intermediate_size", c.nFf());
        json.addProperty("num_hidden_layers", c.nLayer());
        json.addProperty("num_attention_heads", c.nHead());
        json.addProperty("num_key_value_heads", c.nHeadKv());
        json.addProperty("head_dim", c.headDim());
        json.addProperty("rms_norm_eps", c.rmsEps());
        json.addProperty("rope_theta", c.ropeTheta());
        json.addProperty("max_position_embeddings", c.nCtxTrain());
        json.addProperty("vocab_size", c.nVocab());
        json.addProperty("tie_word_embeddings", c.tiedEmbeddings());
        if (gemma) {
            json.addProperty("sliding_window", c.slidingWindow());
            JsonArray types = new JsonArray();
            for (int l = 0; l < c.nLayer(); l++) types.add((l + 1) % 6 == 0 ? "full_attention" : "sliding_attention");
            json.add("layer_types", types);
            json.addProperty("rope_local_base_freq", 10000.0);
            json.addProperty("query_pre_attn_scalar", c.headDim());
            json.add("final_logit_softcapping", null);
        } else if (c.arch() == Arch.LLAMA) {
            if (c.slidingWindow() > 0) json.addProperty("sliding_window", c.slidingWindow()); // as Mistral declares it
            json.addProperty("attention_bias", false);
        } else {
            json.addProperty("sliding_window", 4096); // carried by Qwen configs, off without use_sliding_window
            json.addProperty("use_sliding_window", false);
        }
        return json;
    }

    /** One tensor to write: raw, the GGUF bytes (rows in rowOrder when not null); else decoded to F32. */
    private record Out(String name, String dtype, long[] shape, GgufTensor from, long bytes, boolean raw, int[] rowOrder) {}

    /** The tensors streamed one at a time: the header (sizes are known up front), then each tensor's bytes. */
    private static void writeSafetensors(GgufFile g, ModelConfig c, Path file) throws IOException {
        boolean gemma = c.arch() == Arch.GEMMA3;
        List<Out> outs = new ArrayList<>();
        for (GgufTensor t : g.tensors()) {
            GgmlType type = t.type();
            boolean kept = type == GgmlType.F32 || type == GgmlType.F16 || type == GgmlType.BF16;
            boolean gemmaNorm = gemma && t.name().endsWith("norm.weight");
            boolean raw = kept && !gemmaNorm; // the GGUF bytes as they are
            String dtype = raw ? type.name() : "F32";
            long bytes = t.elementCount() * (dtype.equals("F32") ? 4 : 2);
            int[] rowOrder = null;
            if (c.arch() == Arch.LLAMA && t.name().endsWith(".attn_q.weight")) rowOrder = halvesFromInterleaved(c.nHead(), c.headDim());
            if (c.arch() == Arch.LLAMA && t.name().endsWith(".attn_k.weight")) rowOrder = halvesFromInterleaved(c.nHeadKv(), c.headDim());
            if (rowOrder != null && (t.shape().length != 2 || t.shape()[0] != rowOrder.length))
                throw new IllegalArgumentException("tensor " + t.name() + " has shape " + java.util.Arrays.toString(t.shape())
                        + ", not " + rowOrder.length + " rows");
            outs.add(new Out(hfName(t.name(), gemma), dtype, t.shape(), t, bytes, raw, rowOrder));
        }
        JsonObject header = new JsonObject();
        JsonObject meta = new JsonObject();
        meta.addProperty("format", "pt");
        header.add("__metadata__", meta);
        long offset = 0;
        for (Out o : outs) {
            JsonObject t = new JsonObject();
            t.addProperty("dtype", o.dtype());
            JsonArray shape = new JsonArray();
            for (long d : o.shape()) shape.add(d);
            t.add("shape", shape);
            JsonArray offsets = new JsonArray();
            offsets.add(offset);
            offset += o.bytes();
            offsets.add(offset);
            t.add("data_offsets", offsets);
            header.add(o.name(), t);
        }
        byte[] json = header.toString().getBytes(StandardCharsets.UTF_8);
        int padded = (json.length + 7) / 8 * 8;
        try (OutputStream out = new BufferedOutputStream(Files.newOutputStream(file), 1 << 20)) {
            out.write(ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(padded).array());
            out.write(json);
            for (int i = json.length; i < padded; i++) out.write(' ');
            for (Out o : outs) {
                byte[] bytes;
                if (o.raw()) {
                    bytes = o.from().data().asSlice(0, o.bytes()).toArray(ValueLayout.JAVA_BYTE);
                } else {
                    float[] v = GgmlQuant.decode(o.from());
                    if (gemma && o.from().name().endsWith("norm.weight")) {
                        for (int i = 0; i < v.length; i++) v[i] -= 1f;
                    }
                    ByteBuffer b = ByteBuffer.allocate(v.length * 4).order(ByteOrder.LITTLE_ENDIAN);
                    b.asFloatBuffer().put(v);
                    bytes = b.array();
                }
                out.write(o.rowOrder() == null ? bytes : reorderRows(bytes, o.rowOrder()));
            }
        }
    }

    /**
     * The inverse of llama.cpp's convert_hf_to_gguf permute for q and k: Hugging Face row (head h, half i, j) is
     * GGUF row (h, j, i), which interleaved RoPE rotates as the pair (2j, 2j + 1) and rotate-half RoPE as (j, j + d/2).
     * Returns, for each Hugging Face row, the GGUF row it comes from.
     */
    static int[] halvesFromInterleaved(int heads, int headDim) {
        int half = headDim / 2;
        int[] from = new int[heads * headDim];
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < half; j++) from[h * headDim + i * half + j] = h * headDim + 2 * j + i;
        return from;
    }

    private static byte[] reorderRows(byte[] rows, int[] from) {
        int rowBytes = rows.length / from.length;
        byte[] out = new byte[rows.length];
        for (int r = 0; r < from.length; r++) System.arraycopy(rows, from[r] * rowBytes, out, r * rowBytes, rowBytes);
        return out;
    }

    /** transformers' name of a GGUF tensor. */
    static String hfName(String gguf, boolean gemma) {
        if (gguf.equals("token_embd.weight")) return "model.embed_tokens.weight";
        if (gguf.equals("output_norm.weight")) return "model.norm.weight";
        if (gguf.equals("output.weight")) return "lm_head.weight";
        String[] parts = gguf.split("\\.", 3); // blk, layer, rest
        if (parts.length < 3 || !parts[0].equals("blk")) throw new IllegalArgumentException("no Hugging Face name for tensor '" + gguf + "'");
        String p = "model.layers." + parts[1] + ".";
        return p + switch (parts[2]) {
            case "attn_norm.weight" -> "input_layernorm.weight";
            case "attn_q.weight" -> "self_attn.q_proj.weight";
            case "attn_k.weight" -> "self_attn.k_proj.weight";
            case "attn_v.weight" -> "self_attn.v_proj.weight";
            case "attn_q.bias" -> "self_attn.q_proj.bias";
            case "attn_k.bias" -> "self_attn.k_proj.bias";
            case "attn_v.bias" -> "self_attn.v_proj.bias";
            case "attn_output.weight" -> "self_attn.o_proj.weight";
            case "attn_q_norm.weight" -> "self_attn.q_norm.weight";
            case "attn_k_norm.weight" -> "self_attn.k_norm.weight";
            case "post_attention_norm.weight" -> "post_attention_layernorm.weight";
            case "ffn_norm.weight" -> gemma ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight";
            case "post_ffw_norm.weight" -> "post_feedforward_layernorm.weight";
            case "ffn_gate.weight" -> "mlp.gate_proj.weight";
            case "ffn_up.weight" -> "mlp.up_proj.weight";
            case "ffn_down.weight" -> "mlp.down_proj.weight";
            default -> throw new IllegalArgumentException("no Hugging Face name for tensor '" + gguf + "'");
        };
    }
}
