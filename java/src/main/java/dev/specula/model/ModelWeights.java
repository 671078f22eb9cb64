package dev.specula.model;

import dev.specula.ffi.SpeculaFfi;
import dev.specula.model.gguf.GgmlQuant;
import dev.specula.model.gguf.GgmlType;
import dev.specula.model.gguf.GgufFile;
import dev.specula.model.gguf.GgufTensor;
import dev.specula.model.safetensors.SafetensorsCheckpoint;
import dev.specula.model.safetensors.SafetensorsDtype;
import dev.specula.model.safetensors.SafetensorsTensor;
import java.lang.foreign.MemorySegment;
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
     * One weight as spec_model_set_weight takes it: role and dtype are SPEC_W_* and SPEC_DTYPE_* values; rows x cols
     * is the row-major shape the core expects (vectors have rows = 1); layer is 0 for the global roles.
     */
    public record Weight(int role, int layer, int dtype, MemorySegment data, long rows, long cols, String tensorName) {
        public long nbytes() {
            return data.byteSize();
        }

        @Override
        public String toString() {
            return roleName(role) + (isGlobal(role) ? "" : "[" + layer + "]") + " <- " + tensorName + " "
                    + dtypeName(dtype) + " [" + rows + " x " + cols + "]";
        }
    }

    private ModelWeights() {}

    /** Role names as the core's messages spell them, indexed by SPEC_W_* value. */
    private static final String[] ROLE_NAMES = {"token_embd", "output_norm", "output", "attn_norm", "attn_q",
            "attn_k", "attn_v", "attn_out", "attn_q_bias", "attn_k_bias", "attn_v_bias", "ffn_norm", "ffn_gate",
            "ffn_up", "ffn_down"};

    public static String roleName(int role) {
        return role >= 0 && role < ROLE_NAMES.length ? ROLE_NAMES[role] : "role " + role;
    }

    static boolean isGlobal(int role) {
        return role == SpeculaFfi.SPEC_W_TOKEN_EMBD() || role == SpeculaFfi.SPEC_W_OUTPUT_NORM() || role == SpeculaFfi.SPEC_W_OUTPUT();
    }

    static String dtypeName(int dtype) {
        return switch (dtype) {
            case 0 -> "F32";
            case 1 -> "F16";
            case 2 -> "BF16";
            case 3 -> "Q8_0";
            case 4 -> "Q4_0";
            case 5 -> "Q4_1";
            case 6 -> "Q5_0";
            case 7 -> "Q5_1";
            case 8 -> "Q2_K";
            case 9 -> "Q3_K";
            case 10 -> "Q4_K";
            case 11 -> "Q5_K";
            case 12 -> "Q6_K";
            default -> "dtype " + dtype;
        };
    }

    /** The [rows, cols] a role must have under a config; the same rule as the core's expected_shape. */
    public static long[] expectedShape(ModelConfig c, int role) {
        long q = c.qDim(), kv = c.kvDim();
        if (role == SpeculaFfi.SPEC_W_TOKEN_EMBD() || role == SpeculaFfi.SPEC_W_OUTPUT()) return new long[] {c.nVocab(), c.nEmbd()};
        if (role == SpeculaFfi.SPEC_W_OUTPUT_NORM() || role == SpeculaFfi.SPEC_W_ATTN_NORM() || role == SpeculaFfi.SPEC_W_FFN_NORM()) {
            return new long[] {1, c.nEmbd()};
        }
        if (role == SpeculaFfi.SPEC_W_ATTN_Q()) return new long[] {q, c.nEmbd()};
        if (role == SpeculaFfi.SPEC_W_ATTN_K() || role == SpeculaFfi.SPEC_W_ATTN_V()) return new long[] {kv, c.nEmbd()};
        if (role == SpeculaFfi.SPEC_W_ATTN_OUT()) return new long[] {c.nEmbd(), q};
        if (role == SpeculaFfi.SPEC_W_ATTN_Q_BIAS()) return new long[] {1, q};
        if (role == SpeculaFfi.SPEC_W_ATTN_K_BIAS() || role == SpeculaFfi.SPEC_W_ATTN_V_BIAS()) return new long[] {1, kv};
        if (role == SpeculaFfi.SPEC_W_FFN_GATE() || role == SpeculaFfi.SPEC_W_FFN_UP()) return new long[] {c.nFf(), c.nEmbd()};
        if (role == SpeculaFfi.SPEC_W_FFN_DOWN()) return new long[] {c.nEmbd(), c.nFf()};
        throw new IllegalArgumentException("unknown weight role " + role);
    }

    private static boolean isVector(int role) {
        return role == SpeculaFfi.SPEC_W_OUTPUT_NORM() || role == SpeculaFfi.SPEC_W_ATTN_NORM() || role == SpeculaFfi.SPEC_W_FFN_NORM()
                || isBias(role);
    }

    private static boolean isBias(int role) {
        return role == SpeculaFfi.SPEC_W_ATTN_Q_BIAS() || role == SpeculaFfi.SPEC_W_ATTN_K_BIAS() || role == SpeculaFfi.SPEC_W_ATTN_V_BIAS();
    }

    /** Tensor names of one naming scheme: the global ones, then per-layer patterns with %d for the layer. */
    private record Names(String tokenEmbd, String outputNorm, String output, String attnNorm, String q, String k,
                         String v, String o, String qBias, String kBias, String vBias, String ffnNorm, String gate,
                         String up, String down) {

        String global(int role) {
            if (role == SpeculaFfi.SPEC_W_TOKEN_EMBD()) return tokenEmbd;
            if (role == SpeculaFfi.SPEC_W_OUTPUT_NORM()) return outputNorm;
            return output;
        }

        String layer(int role, int layer) {
            String pattern;
            if (role == SpeculaFfi.SPEC_W_ATTN_NORM()) pattern = attnNorm;
            else if (role == SpeculaFfi.SPEC_W_ATTN_Q()) pattern = q;
            else if (role == SpeculaFfi.SPEC_W_ATTN_K()) pattern = k;
            else if (role == SpeculaFfi.SPEC_W_ATTN_V()) pattern = v;
            else if (role == SpeculaFfi.SPEC_W_ATTN_OUT()) pattern = o;
            else if (role == SpeculaFfi.SPEC_W_ATTN_Q_BIAS()) pattern = qBias;
            else if (role == SpeculaFfi.SPEC_W_ATTN_K_BIAS()) pattern = kBias;
            else if (role == SpeculaFfi.SPEC_W_ATTN_V_BIAS()) pattern = vBias;
            else if (role == SpeculaFfi.SPEC_W_FFN_NORM()) pattern = ffnNorm;
            else if (role == SpeculaFfi.SPEC_W_FFN_GATE()) pattern = gate;
            else if (role == SpeculaFfi.SPEC_W_FFN_UP()) pattern = up;
            else pattern = down;
            return pattern.formatted(layer);
        }
    }

    public static final String GGUF_TOKEN_EMBD = "token_embd.weight";
    public static final String GGUF_OUTPUT = "output.weight";
    public static final String HF_TOKEN_EMBD = "model.embed_tokens.weight";
    public static final String HF_OUTPUT = "lm_head.weight";

    private static final Names GGUF = new Names(GGUF_TOKEN_EMBD, "output_norm.weight", GGUF_OUTPUT,
            "blk.%d.attn_norm.weight", "blk.%d.attn_q.weight", "blk.%d.attn_k.weight", "blk.%d.attn_v.weight",
            "blk.%d.attn_output.weight", "blk.%d.attn_q.bias", "blk.%d.attn_k.bias", "blk.%d.attn_v.bias",
            "blk.%d.ffn_norm.weight", "blk.%d.ffn_gate.weight", "blk.%d.ffn_up.weight", "blk.%d.ffn_down.weight");

    private static final Names HF = new Names(HF_TOKEN_EMBD, "model.norm.weight", HF_OUTPUT,
            "model.layers.%d.input_layernorm.weight", "model.layers.%d.self_attn.q_proj.weight",
            "model.layers.%d.self_attn.k_proj.weight", "model.layers.%d.self_attn.v_proj.weight",
            "model.layers.%d.self_attn.o_proj.weight", "model.layers.%d.self_attn.q_proj.bias",
            "model.layers.%d.self_attn.k_proj.bias", "model.layers.%d.self_attn.v_proj.bias",
            "model.layers.%d.post_attention_layernorm.weight", "model.layers.%d.mlp.gate_proj.weight",
            "model.layers.%d.mlp.up_proj.weight", "model.layers.%d.mlp.down_proj.weight");

    /** What the mapping needs from a file format: find a tensor, and turn it into a Weight or say why not. */
    private interface Source {
        boolean has(String name);

        /** The weight for role, or a problem description appended to problems (then null). */
        Weight weight(String name, int role, int layer, long rows, long cols, List<String> problems);
    }

    // ---------------------------------------------------------------- GGUF

    /** The weights of a GGUF file (llama.cpp tensor names). A missing output.weight means tied embeddings. */
    public static List<Weight> fromGguf(GgufFile g, ModelConfig c) {
        Source source = new Source() {
            public boolean has(String name) {
                return g.hasTensor(name);
            }

            public Weight weight(String name, int role, int layer, long rows, long cols, List<String> problems) {
                GgufTensor t = g.tensor(name);
                long[] dims = withoutTrailingOnes(t.dims());
                boolean shapeOk = isVector(role)
                        ? dims.length == 1 && dims[0] == cols
                        : dims.length == 2 && dims[0] == cols && dims[1] == rows;
                if (!shapeOk) {
                    String expected = isVector(role) ? "[" + cols + "]" : "[" + cols + ", " + rows + "]";
                    problems.add("shape mismatch: tensor '" + name + "' has dims " + Arrays.toString(dims) + ", the config needs "
                            + expected + " (innermost first) for " + roleName(role));
                    return null;
                }
                int dtype = switch (t.type()) {
                    case F32 -> SpeculaFfi.SPEC_DTYPE_F32();
                    case F16 -> SpeculaFfi.SPEC_DTYPE_F16();
                    case BF16 -> SpeculaFfi.SPEC_DTYPE_BF16();
                    case Q8_0 -> SpeculaFfi.SPEC_DTYPE_Q8_0();
                    case Q4_0 -> SpeculaFfi.SPEC_DTYPE_Q4_0();
                    case Q4_1 -> SpeculaFfi.SPEC_DTYPE_Q4_1();
                    case Q5_0 -> SpeculaFfi.SPEC_DTYPE_Q5_0();
                    case Q5_1 -> SpeculaFfi.SPEC_DTYPE_Q5_1();
                    case Q2_K -> SpeculaFfi.SPEC_DTYPE_Q2_K();
                    case Q3_K -> SpeculaFfi.SPEC_DTYPE_Q3_K();
                    case Q4_K -> SpeculaFfi.SPEC_DTYPE_Q4_K();
                    case Q5_K -> SpeculaFfi.SPEC_DTYPE_Q5_K();
                    case Q6_K -> SpeculaFfi.SPEC_DTYPE_Q6_K();
                    default -> -1;
                };
                if (dtype < 0) {
                    problems.add("tensor '" + name + "' has type " + t.type() + ", which the engine does not support (supported: "
                            + GgmlQuant.SUPPORTED + "; re-quantize the model, e.g. llama-quantize ... Q4_K_M)");
                    return null;
                }
                if (isVector(role) && t.type() != GgmlType.F32 && t.type() != GgmlType.F16 && t.type() != GgmlType.BF16) {
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

            public Weight weight(String name, int role, int layer, long rows, long cols, List<String> problems) {
                SafetensorsTensor t = ckpt.tensor(name);
                long[] shape = t.shape();
                boolean shapeOk = isVector(role)
                        ? shape.length == 1 && shape[0] == cols
                        : shape.length == 2 && shape[0] == rows && shape[1] == cols;
                if (!shapeOk) {
                    String expected = isVector(role) ? "[" + cols + "]" : "[" + rows + ", " + cols + "]";
                    problems.add("shape mismatch: tensor '" + name + "' (in " + t.file().getFileName() + ") has shape "
                            + Arrays.toString(shape) + ", the config needs " + expected + " for " + roleName(role));
                    return null;
                }
                int dtype;
                if (t.dtype() == SafetensorsDtype.F32) dtype = SpeculaFfi.SPEC_DTYPE_F32();
                else if (t.dtype() == SafetensorsDtype.F16) dtype = SpeculaFfi.SPEC_DTYPE_F16();
                else if (t.dtype() == SafetensorsDtype.BF16) dtype = SpeculaFfi.SPEC_DTYPE_BF16();
                else {
                    problems.add("tensor '" + name + "' (in " + t.file().getFileName() + ") has dtype " + t.dtype()
                            + ", which the engine does not support (supported: F32, F16, BF16)");
                    return null;
                }
                return new Weight(role, layer, dtype, t.data(), rows, cols, name);
            }
        };
        Path where = ckpt.files().size() == 1 ? ckpt.files().getFirst().path() : ckpt.directory();
        return map(where, c, HF, source);
    }

    // ---------------------------------------------------------------- shared

    private static List<Weight> map(Path file, ModelConfig c, Names names, Source source) {
        List<Weight> weights = new ArrayList<>();
        List<String> missing = new ArrayList<>();
        List<String> problems = new ArrayList<>();

        int[] globals = {SpeculaFfi.SPEC_W_TOKEN_EMBD(), SpeculaFfi.SPEC_W_OUTPUT_NORM(), SpeculaFfi.SPEC_W_OUTPUT()};
        for (int role : globals) {
            String name = names.global(role);
            if (role == SpeculaFfi.SPEC_W_OUTPUT() && c.tiedEmbeddings()) name = names.global(SpeculaFfi.SPEC_W_TOKEN_EMBD());
            add(weights, missing, problems, source, c, name, role, 0);
        }
        int[] required = {SpeculaFfi.SPEC_W_ATTN_NORM(), SpeculaFfi.SPEC_W_ATTN_Q(), SpeculaFfi.SPEC_W_ATTN_K(),
                SpeculaFfi.SPEC_W_ATTN_V(), SpeculaFfi.SPEC_W_ATTN_OUT(), SpeculaFfi.SPEC_W_FFN_NORM(),
                SpeculaFfi.SPEC_W_FFN_GATE(), SpeculaFfi.SPEC_W_FFN_UP(), SpeculaFfi.SPEC_W_FFN_DOWN()};
        int[] biases = {SpeculaFfi.SPEC_W_ATTN_Q_BIAS(), SpeculaFfi.SPEC_W_ATTN_K_BIAS(), SpeculaFfi.SPEC_W_ATTN_V_BIAS()};
        for (int layer = 0; layer < c.nLayer(); layer++) {
            for (int role : required) add(weights, missing, problems, source, c, names.layer(role, layer), role, layer);
            // Biases: always for qwen2; for llama, used when a checkpoint has them, but only as a full set.
            int present = 0;
            for (int role : biases) present += source.has(names.layer(role, layer)) ? 1 : 0;
            if (c.requiresQkvBias() || present > 0) {
                for (int role : biases) add(weights, missing, problems, source, c, names.layer(role, layer), role, layer);
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
                            ModelConfig c, String name, int role, int layer) {
        if (!source.has(name)) {
            missing.add("'" + name + "'");
            return;
        }
        long[] shape = expectedShape(c, role);
        Weight w = source.weight(name, role, layer, shape[0], shape[1], problems);
        if (w != null) weights.add(w);
    }

    private static String list(List<String> items, String separator) {
        int shown = Math.min(items.size(), 8);
        String s = String.join(separator, items.subList(0, shown));
        return items.size() > shown ? s + separator + "and " + (items.size() - shown) + " more" : s;
    }
}
