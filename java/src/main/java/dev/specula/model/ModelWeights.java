package dev.specula.model;

import dev.specula.model.gguf.GgmlQuant;
import dev.specula.model.gguf.GgmlType;
import dev.specula.model.gguf.GgufFile;
import dev.specula.model.gguf.GgufTensor;
import dev.specula.model.safetensors.SafetensorsCheckpoint;
import dev.specula.model.safetensors.SafetensorsDtype;
import dev.specula.model.safetensors.SafetensorsTensor;
import dev.specula.nativeapi.Arch;
import dev.specula.nativeapi.DType;
import dev.specula.nativeapi.WeightRole;
import dev.specula.nativeapi.WeightShape;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Maps a model file's tensors to the native core's weight roles (spec_weight_role), checking each one's presence,
 * element type and shape against the config. The result is what spec_model_set_weight takes, one call per
 * {@link Weight}; the data segments point into the file's mapping, so the file must stay open while they are used.
 */
public final class ModelWeights {

    /**
     * One weight as spec_model_set_weight takes it: rows x cols is the row-major shape the core expects (vectors
     * have rows = 1); layer is 0 for the global roles.
     */
    public record Weight(WeightRole role, int layer, DType dtype, MemorySegment data, long rows, long cols, String tensorName) {
        public long nbytes() {
            return data.byteSize();
        }

        @Override
        public String toString() {
            return role.label() + (role.global() ? "" : "[" + layer + "]") + " <- " + tensorName + " " + dtype
                    + " [" + rows + " x " + cols + "]";
        }
    }

    private ModelWeights() {}

    /** Tensor names of one naming scheme: the global ones, then per-layer patterns with %d for the layer. */
    private record Names(String tokenEmbd, String outputNorm, String output, String attnNorm, String q, String k,
                         String v, String o, String qBias, String kBias, String vBias, String ffnNorm, String gate,
                         String up, String down, String qNorm, String kNorm, String attnPostNorm, String ffnPostNorm) {

        /** The tensor name of role in layer (ignored for the global roles). */
        String of(WeightRole role, int layer) {
            String pattern = switch (role) {
                case TOKEN_EMBD -> tokenEmbd;
                case OUTPUT_NORM -> outputNorm;
                case OUTPUT -> output;
                case ATTN_NORM -> attnNorm;
                case ATTN_Q -> q;
                case ATTN_K -> k;
                case ATTN_V -> v;
                case ATTN_OUT -> o;
                case ATTN_Q_BIAS -> qBias;
                case ATTN_K_BIAS -> kBias;
                case ATTN_V_BIAS -> vBias;
                case FFN_NORM -> ffnNorm;
                case FFN_GATE -> gate;
                case FFN_UP -> up;
                case FFN_DOWN -> down;
                case ATTN_Q_NORM -> qNorm;
                case ATTN_K_NORM -> kNorm;
                case ATTN_POST_NORM -> attnPostNorm;
                case FFN_POST_NORM -> ffnPostNorm;
            };
            return role.global() ? pattern : pattern.formatted(layer);
        }
    }

    public static final String GGUF_TOKEN_EMBD = "token_embd.weight";
    public static final String GGUF_OUTPUT = "output.weight";
    public static final String HF_TOKEN_EMBD = "model.embed_tokens.weight";
    public static final String HF_OUTPUT = "lm_head.weight";

    private static final Names GGUF = new Names(GGUF_TOKEN_EMBD, "output_norm.weight", GGUF_OUTPUT,
            "blk.%d.attn_norm.weight", "blk.%d.attn_q.weight", "blk.%d.attn_k.weight", "blk.%d.attn_v.weight",
            "blk.%d.attn_output.weight", "blk.%d.attn_q.bias", "blk.%d.attn_k.bias", "blk.%d.attn_v.bias",
            "blk.%d.ffn_norm.weight", "blk.%d.ffn_gate.weight", "blk.%d.ffn_up.weight", "blk.%d.ffn_down.weight",
            "blk.%d.attn_q_norm.weight", "blk.%d.attn_k_norm.weight", "blk.%d.post_attention_norm.weight",
            "blk.%d.post_ffw_norm.weight");

    private static final Names HF = new Names(HF_TOKEN_EMBD, "model.norm.weight", HF_OUTPUT,
            "model.layers.%d.input_layernorm.weight", "model.layers.%d.self_attn.q_proj.weight",
            "model.layers.%d.self_attn.k_proj.weight", "model.layers.%d.self_attn.v_proj.weight",
            "model.layers.%d.self_attn.o_proj.weight", "model.layers.%d.self_attn.q_proj.bias",
            "model.layers.%d.self_attn.k_proj.bias", "model.layers.%d.self_attn.v_proj.bias",
            "model.layers.%d.post_attention_layernorm.weight", "model.layers.%d.mlp.gate_proj.weight",
            "model.layers.%d.mlp.up_proj.weight", "model.layers.%d.mlp.down_proj.weight",
            "model.layers.%d.self_attn.q_norm.weight", "model.layers.%d.self_attn.k_norm.weight", null, null);

    /**
     * Gemma 3 in transformers: post_attention_layernorm is the attention block's output norm, and the FFN's input
     * norm is pre_feedforward_layernorm.
     */
    private static final Names HF_GEMMA3 = new Names(HF_TOKEN_EMBD, "model.norm.weight", HF_OUTPUT,
            "model.layers.%d.input_layernorm.weight", "model.layers.%d.self_attn.q_proj.weight",
            "model.layers.%d.self_attn.k_proj.weight", "model.layers.%d.self_attn.v_proj.weight",
            "model.layers.%d.self_attn.o_proj.weight", null, null, null,
            "model.layers.%d.pre_feedforward_layernorm.weight", "model.layers.%d.mlp.gate_proj.weight",
            "model.layers.%d.mlp.up_proj.weight", "model.layers.%d.mlp.down_proj.weight",
            "model.layers.%d.self_attn.q_norm.weight", "model.layers.%d.self_attn.k_norm.weight",
            "model.layers.%d.post_attention_layernorm.weight", "model.layers.%d.post_feedforward_layernorm.weight");

    /** What the mapping needs from a file format: find a tensor, and turn it into a Weight or say why not. */
    private interface Source {
        boolean has(String name);

        /** The weight for role, or a problem description appended to problems (then null). */
        Weight weight(String name, WeightRole role, int layer, WeightShape needed, List<String> problems);
    }

    // ---------------------------------------------------------------- GGUF

    /** The weights of a GGUF file (llama.cpp tensor names). A missing output.weight means tied embeddings. */
    public static List<Weight> fromGguf(GgufFile g, ModelConfig c) {
        Source source = new Source() {
            public boolean has(String name) {
                return g.hasTensor(name);
            }

            public Weight weight(String name, WeightRole role, int layer, WeightShape needed, List<String> problems) {
                long rows = needed.rows(), cols = needed.cols();
                GgufTensor t = g.tensor(name);
                long[] dims = withoutTrailingOnes(t.dims());
                boolean shapeOk = role.vector()
                        ? dims.length == 1 && dims[0] == cols
                        : dims.length == 2 && dims[0] == cols && dims[1] == rows;
                if (!shapeOk) {
                    String expected = role.vector() ? "[" + cols + "]" : "[" + cols + ", " + rows + "]";
                    problems.add("shape mismatch: tensor '" + name + "' has dims " + Arrays.toString(dims) + ", the config needs "
                            + expected + " (innermost first) for " + role.label());
                    return null;
                }
                DType dtype = switch (t.type()) {
                    case F32 -> DType.F32;
                    case F16 -> DType.F16;
                    case BF16 -> DType.BF16;
                    case Q8_0 -> DType.Q8_0;
                    case Q4_0 -> DType.Q4_0;
                    case Q4_1 -> DType.Q4_1;
                    case Q5_0 -> DType.Q5_0;
                    case Q5_1 -> DType.Q5_1;
                    case Q2_K -> DType.Q2_K;
                    case Q3_K -> DType.Q3_K;
                    case Q4_K -> DType.Q4_K;
                    case Q5_K -> DType.Q5_K;
                    case Q6_K -> DType.Q6_K;
                    default -> null;
                };
                if (dtype == null) {
                    problems.add("tensor '" + name + "' has type " + t.type() + ", which the engine does not support (supported: "
                            + GgmlQuant.SUPPORTED + "; re-quantize the model, e.g. llama-quantize ... Q4_K_M)");
                    return null;
                }
                if (role.vector() && t.type() != GgmlType.F32 && t.type() != GgmlType.F16 && t.type() != GgmlType.BF16) {
                    problems.add("tensor '" + name + "' is a vector of type " + t.type() + "; norms and biases must be F32, F16 or BF16");
                    return null;
                }
                return new Weight(role, layer, dtype, t.data(), rows, cols, name);
            }
        };
        return map(g.path(), c, GGUF, source);
    }

    /** Some older writers kept outer dimensions of size 1 ([n, 1] for a vector); they change nothing. */
    private static long[] withoutTrailingOnes(long[] dims) {
        int n = dims.length;
        while (n > 1 && dims[n - 1] == 1) n--;
        return Arrays.copyOf(dims, n);
    }

    // ---------------------------------------------------------------- Hugging Face safetensors

    /** The weights of a Hugging Face checkpoint (transformers tensor names). */
    public static List<Weight> fromHf(SafetensorsCheckpoint ckpt, ModelConfig c) {
        Source source = new Source() {
            public boolean has(String name) {
                return ckpt.hasTensor(name);
            }

            public Weight weight(String name, WeightRole role, int layer, WeightShape needed, List<String> problems) {
                long rows = needed.rows(), cols = needed.cols();
                SafetensorsTensor t = ckpt.tensor(name);
                long[] shape = t.shape();
                boolean shapeOk = role.vector()
                        ? shape.length == 1 && shape[0] == cols
                        : shape.length == 2 && shape[0] == rows && shape[1] == cols;
                if (!shapeOk) {
                    String expected = role.vector() ? "[" + cols + "]" : "[" + rows + ", " + cols + "]";
                    problems.add("shape mismatch: tensor '" + name + "' (in " + t.file().getFileName() + ") has shape "
                            + Arrays.toString(shape) + ", the config needs " + expected + " for " + role.label());
                    return null;
                }
                DType dtype;
                if (t.dtype() == SafetensorsDtype.F32) dtype = DType.F32;
                else if (t.dtype() == SafetensorsDtype.F16) dtype = DType.F16;
                else if (t.dtype() == SafetensorsDtype.BF16) dtype = DType.BF16;
                else {
                    problems.add("tensor '" + name + "' (in " + t.file().getFileName() + ") has dtype " + t.dtype()
                            + ", which the engine does not support (supported: F32, F16, BF16)");
                    return null;
                }
                return new Weight(role, layer, dtype, t.data(), rows, cols, name);
            }
        };
        Path where = ckpt.files().size() == 1 ? ckpt.files().getFirst().path() : ckpt.directory();
        if (c.arch() != Arch.GEMMA3) return map(where, c, HF, source);
        // transformers' Gemma RMSNorm multiplies by 1 + w; GGUF files (and the native core) hold 1 + w already
        List<Weight> weights = new ArrayList<>();
        for (Weight w : map(where, c, HF_GEMMA3, source)) weights.add(w.role().norm() ? onePlus(w) : w);
        return weights;
    }

    /** A norm weight w as an F32 vector of 1 + w, in memory that lives as long as the returned weight is reachable. */
    private static Weight onePlus(Weight w) {
        GgmlType type = switch (w.dtype()) {
            case F16 -> GgmlType.F16;
            case BF16 -> GgmlType.BF16;
            default -> GgmlType.F32; // vectors are F32, F16 or BF16 (checked when mapped)
        };
        float[] v = GgmlQuant.decode(type, w.data(), (int) w.cols());
        MemorySegment out = Arena.ofAuto().allocate((long) v.length * Float.BYTES, 64);
        for (int i = 0; i < v.length; i++) out.setAtIndex(ValueLayout.JAVA_FLOAT, i, 1f + v[i]);
        return new Weight(w.role(), w.layer(), DType.F32, out, w.rows(), w.cols(), w.tensorName() + " (+1)");
    }

    // ---------------------------------------------------------------- shared

    private static List<Weight> map(Path file, ModelConfig c, Names names, Source source) {
        List<Weight> weights = new ArrayList<>();
        List<String> missing = new ArrayList<>();
        List<String> problems = new ArrayList<>();

        for (WeightRole role : List.of(WeightRole.TOKEN_EMBD, WeightRole.OUTPUT_NORM, WeightRole.OUTPUT)) {
            String name = names.of(role == WeightRole.OUTPUT && c.tiedEmbeddings() ? WeightRole.TOKEN_EMBD : role, 0);
            add(weights, missing, problems, source, c, name, role, 0);
        }
        List<WeightRole> biases = List.of(WeightRole.ATTN_Q_BIAS, WeightRole.ATTN_K_BIAS, WeightRole.ATTN_V_BIAS);
        for (int layer = 0; layer < c.nLayer(); layer++) {
            for (WeightRole role : WeightRole.values()) {
                if (!role.global() && !role.bias() && c.arch().uses(role)) {
                    add(weights, missing, problems, source, c, names.of(role, layer), role, layer);
                }
            }
            // Biases: always for qwen2; for llama, used when a checkpoint has them, but only as a full set.
            if (!c.arch().allowsQkvBias()) continue;
            int present = 0;
            for (WeightRole role : biases) present += source.has(names.of(role, layer)) ? 1 : 0;
            if (c.requiresQkvBias() || present > 0) {
                for (WeightRole role : biases) add(weights, missing, problems, source, c, names.of(role, layer), role, layer);
            }
        }
        if (!missing.isEmpty()) {
            problems.addFirst("missing tensor" + (missing.size() > 1 ? "s " : " ") + list(missing, ", "));
        }
        if (!problems.isEmpty()) {
            throw new ModelFormatException(file, problems.size() == 1 ? problems.getFirst()
                    : problems.size() + " problems: " + list(problems, "; "));
        }
        return weights;
    }

    private static void add(List<Weight> weights, List<String> missing, List<String> problems, Source source,
                            ModelConfig c, String name, WeightRole role, int layer) {
        if (!source.has(name)) {
            missing.add("'" + name + "'");
            return;
        }
        Weight w = source.weight(name, role, layer, c.weightShape(role, layer), problems);
        if (w != null) weights.add(w);
    }

    private static String list(List<String> items, String separator) {
        int shown = Math.min(items.size(), 8);
        String s = String.join(separator, items.subList(0, shown));
        return items.size() > shown ? s + separator + "and " + (items.size() - shown) + " more" : s;
    }
}
