package dev.specula.model;

import dev.specula.internal.SplitMix64;
import dev.specula.model.LlamaFileType.Role;
import dev.specula.model.gguf.GgmlType;
import dev.specula.model.gguf.GgufWriter;
import dev.specula.nativeapi.Arch;
import dev.specula.nativeapi.RopeScaling;
import dev.specula.nativeapi.RopeStyle;
import dev.specula.nativeapi.WeightRole;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Writes GGUF models with seeded random weights, of any size, for tests and benchmarks: llama, qwen2, qwen3 or gemma3
 * architecture, matrices all of one type (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K to Q6_K) or typed as
 * llama.cpp's quantizer types a file of a {@link LlamaFileType} such as Q4_K_M (norms and biases stay F32, as llama.cpp keeps them),
 * tied or untied output, and the tokenizer metadata a caller supplies. The same settings and seed always give
 * the same bytes. Files carry the metadata types llama.cpp insists on, so llama.cpp can load them too.
 *
 * <p>Weights are roughly normal (a sum of four uniforms, which needs no transcendental functions and so is
 * bit-reproducible on every JVM). Matrices have standard deviation 1/sqrt(fan-in), which is about 0.02 at real
 * model widths and keeps activations near unit scale at tiny ones; the attention and FFN output projections are
 * further divided by sqrt(2 * layers) so the residual stream does not grow with depth; norm weights are 1 ±
 * ~0.02; biases have deviation 0.1, enough for a missing bias to change the output.
 */
public final class TestModelMaker {
    private String arch = "llama";
    private int dim = 64;
    private int layers = 2;
    private int heads = 4;
    private int kvHeads = 2;
    private int ff = 192;
    private int vocab = -1;
    private int context = 256;
    private LlamaFileType fileType = LlamaFileType.F32;
    private boolean pure = true;
    private boolean tied = false;
    private long seed = 42;
    private float ropeTheta = 10000f;
    private Map<String, Object> tokenizer = Map.of();
    private int headDim = 0;
    private int slidingWindow = 0;

    /** The architectures it writes. */
    public static final List<String> ARCHS = List.of("llama", "qwen2", "qwen3", "gemma3");

    /** What write produced. */
    /** type is the base type of the matrices; label names the file type (with "pure" when every matrix has it). */
    public record Summary(Path file, ModelConfig config, GgmlType type, String label, long parameters, long bytes) {
        public String describe() {
            return String.format(Locale.ROOT, "%s: %s %s, %,d parameters, %,d bytes", file, label, config.describe(), parameters, bytes);
        }
    }

    /** One of {@link #ARCHS}. */
    public TestModelMaker arch(String arch) {
        this.arch = arch;
        return this;
    }

    public TestModelMaker dim(int dim) {
        this.dim = dim;
        return this;
    }

    public TestModelMaker layers(int layers) {
        this.layers = layers;
        return this;
    }

    public TestModelMaker heads(int heads) {
        this.heads = heads;
        return this;
    }

    public TestModelMaker kvHeads(int kvHeads) {
        this.kvHeads = kvHeads;
        return this;
    }

    /**
     * The head size (attention.key_length and value_length); 0 (the default) means dim / heads. qwen3 and gemma3
     * may set any even size; llama and qwen2 files need dim / heads.
     */
    public TestModelMaker headDim(int headDim) {
        this.headDim = headDim;
        return this;
    }

    /**
     * attention.sliding_window; 0 (the default) writes none, except for gemma3, which needs one (default 512). On
     * gemma3 every sixth layer stays global.
     */
    public TestModelMaker slidingWindow(int slidingWindow) {
        this.slidingWindow = slidingWindow;
        return this;
    }

    public TestModelMaker ff(int ff) {
        this.ff = ff;
        return this;
    }

    /** The vocabulary size; by default the tokenizer's token count. */
    public TestModelMaker vocab(int vocab) {
        this.vocab = vocab;
        return this;
    }

    public TestModelMaker context(int context) {
        this.context = context;
        return this;
    }

    /**
     * Every matrix of one type (a pure file): F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 or a k-quant (Q2_K to
     * Q6_K). dim and ff must then be multiples of the type's block.
     */
    public TestModelMaker type(GgmlType type) {
        this.fileType = LlamaFileType.pureOf(type);
        this.pure = true;
        return this;
    }

    /**
     * A file of llama.cpp's file type: matrices get the types llama.cpp's quantizer gives them (see
     * {@link LlamaFileType}), or all the base type when pure, with llama.cpp's fallbacks for rows that do not fit.
     */
    public TestModelMaker fileType(LlamaFileType fileType, boolean pure) {
        this.fileType = fileType;
        this.pure = pure;
        return this;
    }

    public TestModelMaker tied(boolean tied) {
        this.tied = tied;
        return this;
    }

    public TestModelMaker seed(long seed) {
        this.seed = seed;
        return this;
    }

    public TestModelMaker ropeTheta(float ropeTheta) {
        this.ropeTheta = ropeTheta;
        return this;
    }

    /** tokenizer.ggml.* metadata entries, written as given (token ids as u32, as llama.cpp reads them). */
    public TestModelMaker tokenizer(Map<String, Object> tokenizer) {
        this.tokenizer = new LinkedHashMap<>(tokenizer);
        return this;
    }

    /** The config the file will describe; throws IllegalArgumentException for inconsistent settings. */
    public ModelConfig config() {
        if (!ARCHS.contains(arch)) throw new IllegalArgumentException("arch '" + arch + "' is not one of " + String.join(", ", ARCHS));
        positive("dim", dim);
        positive("layers", layers);
        positive("heads", heads);
        positive("kv-heads", kvHeads);
        positive("ff", ff);
        positive("context", context);
        boolean ownHeadDim = arch.equals("qwen3") || arch.equals("gemma3");
        if (headDim < 0) throw new IllegalArgumentException("head-dim must be positive, got " + headDim);
        if (headDim > 0 && !ownHeadDim && headDim * heads != dim) {
            throw new IllegalArgumentException(arch + " needs head-dim = dim / heads; qwen3 and gemma3 may choose it freely");
        }
        if (headDim == 0 && dim % heads != 0) throw new IllegalArgumentException("dim " + dim + " is not a multiple of heads " + heads);
        if (heads % kvHeads != 0) throw new IllegalArgumentException("heads " + heads + " is not a multiple of kv-heads " + kvHeads);
        if (slidingWindow < 0) throw new IllegalArgumentException("sliding-window must be positive, got " + slidingWindow);
        int headDim = this.headDim > 0 ? this.headDim : dim / heads;
        if (headDim % 2 != 0) throw new IllegalArgumentException("head size " + headDim + " is odd; RoPE needs it even");
        int block = fileType.base().blockSize();
        if (pure && (dim % block != 0 || ff % block != 0)) {
            throw new IllegalArgumentException(fileType.base() + " needs dim and ff to be multiples of " + block + " (got " + dim + ", " + ff + ")");
        }
        int nVocab = vocabSize();
        positive("vocab", nVocab);
        boolean llama = arch.equals("llama");
        Arch a = switch (arch) {
            case "llama" -> Arch.LLAMA;
            case "qwen2" -> Arch.QWEN2;
            case "qwen3" -> Arch.QWEN3;
            default -> Arch.GEMMA3;
        };
        ModelConfig.LayerAttention attention = a == Arch.GEMMA3
                ? new ModelConfig.LayerAttention(slidingWindow > 0 ? slidingWindow : 512, ModelConfig.LayerAttention.GEMMA3_SWA_PATTERN,
                        ModelConfig.LayerAttention.GEMMA3_ROPE_THETA_LOCAL, 0f)
                : ModelConfig.LayerAttention.window(slidingWindow);
        return new ModelConfig(a, nVocab, dim, layers, heads, kvHeads,
                headDim, ff, context, llama ? 1e-5f : 1e-6f, ropeTheta,
                llama ? RopeStyle.NORM : RopeStyle.NEOX, headDim,
                RopeScaling.NONE, 0, 0, 0, 0, tied, attention);
    }

    private int vocabSize() {
        Object tokens = tokenizer.get("tokenizer.ggml.tokens");
        if (tokens == null) {
            if (vocab <= 0) throw new IllegalArgumentException("give a vocab size or tokenizer metadata with tokenizer.ggml.tokens");
            return vocab;
        }
        if (!(tokens instanceof List<?> list)) throw new IllegalArgumentException("tokenizer.ggml.tokens is not a list");
        if (vocab > 0 && vocab != list.size()) {
            throw new IllegalArgumentException("vocab " + vocab + " differs from the tokenizer's " + list.size() + " tokens");
        }
        return list.size();
    }

    private static void positive(String what, int v) {
        if (v <= 0) throw new IllegalArgumentException(what + " must be positive, got " + v);
    }

    /** Writes the model to out and returns what it wrote. */
    public Summary write(Path out) {
        ModelConfig c = config();
        GgufWriter w = new GgufWriter();
        w.putString("general.architecture", arch);
        w.putString("general.name", "specula-test-" + arch);
        w.putUInt32("general.file_type", fileType.id());
        if (fileType.quantized()) w.putUInt32("general.quantization_version", 2); // GGML_QNT_VERSION
        String p = arch + ".";
        w.putUInt32(p + "vocab_size", c.nVocab());
        w.putUInt32(p + "context_length", c.nCtxTrain());
        w.putUInt32(p + "embedding_length", c.nEmbd());
        w.putUInt32(p + "block_count", c.nLayer());
        w.putUInt32(p + "feed_forward_length", c.nFf());
        w.putUInt32(p + "attention.head_count", c.nHead());
        w.putUInt32(p + "attention.head_count_kv", c.nHeadKv());
        w.putFloat32(p + "attention.layer_norm_rms_epsilon", c.rmsEps());
        w.putFloat32(p + "rope.freq_base", c.ropeTheta());
        w.putUInt32(p + "rope.dimension_count", c.ropeDims());
        if (c.headDim() * c.nHead() != c.nEmbd() || c.arch() == Arch.QWEN3 || c.arch() == Arch.GEMMA3) {
            w.putUInt32(p + "attention.key_length", c.headDim());
            w.putUInt32(p + "attention.value_length", c.headDim());
        }
        if (c.slidingWindow() > 0) w.putUInt32(p + "attention.sliding_window", c.slidingWindow());
        w.putAll(tokenizer);

        long[] params = {0};
        int e = c.nEmbd(), q = c.qDim(), kv = c.kvDim(), f = c.nFf(), v = c.nVocab();
        double residualScale = 1 / Math.sqrt(2.0 * c.nLayer());
        matrix(w, params, "token_embd.weight", e, v, 1 / Math.sqrt(e), Role.TOKEN_EMBD, 0, c);
        vector(w, params, "output_norm.weight", e, 1f, 0.02f);
        if (!c.tiedEmbeddings()) matrix(w, params, "output.weight", e, v, 1 / Math.sqrt(e), Role.OUTPUT, 0, c);
        for (int l = 0; l < c.nLayer(); l++) {
            String b = "blk." + l + ".";
            vector(w, params, b + "attn_norm.weight", e, 1f, 0.02f);
            matrix(w, params, b + "attn_q.weight", e, q, 1 / Math.sqrt(e), Role.ATTN_Q, l, c);
            matrix(w, params, b + "attn_k.weight", e, kv, 1 / Math.sqrt(e), Role.ATTN_K, l, c);
            matrix(w, params, b + "attn_v.weight", e, kv, 1 / Math.sqrt(e), Role.ATTN_V, l, c);
            if (c.arch() == Arch.QWEN2) {
                vector(w, params, b + "attn_q.bias", q, 0f, 0.1f);
                vector(w, params, b + "attn_k.bias", kv, 0f, 0.1f);
                vector(w, params, b + "attn_v.bias", kv, 0f, 0.1f);
            }
            if (c.arch().uses(WeightRole.ATTN_Q_NORM)) {
                // q/k norms: gemma's are stored as llama.cpp's converter writes them, 1 + w
                vector(w, params, b + "attn_q_norm.weight", c.headDim(), 1f, 0.1f);
                vector(w, params, b + "attn_k_norm.weight", c.headDim(), 1f, 0.1f);
            }
            matrix(w, params, b + "attn_output.weight", q, e, residualScale / Math.sqrt(q), Role.ATTN_OUTPUT, l, c);
            if (c.arch().uses(WeightRole.ATTN_POST_NORM)) vector(w, params, b + "post_attention_norm.weight", e, 1f, 0.1f);
            vector(w, params, b + "ffn_norm.weight", e, 1f, 0.02f);
            matrix(w, params, b + "ffn_gate.weight", e, f, 1 / Math.sqrt(e), Role.FFN_GATE, l, c);
            matrix(w, params, b + "ffn_up.weight", e, f, 1 / Math.sqrt(e), Role.FFN_UP, l, c);
            matrix(w, params, b + "ffn_down.weight", f, e, residualScale / Math.sqrt(f), Role.FFN_DOWN, l, c);
            if (c.arch().uses(WeightRole.FFN_POST_NORM)) vector(w, params, b + "post_ffw_norm.weight", e, 1f, 0.1f);
        }
        w.write(out);
        long bytes;
        try {
            bytes = Files.size(out);
        } catch (java.io.IOException ex) {
            throw new java.io.UncheckedIOException(ex);
        }
        String label = pure ? fileType.base().name() : fileType.name();
        return new Summary(out, c, fileType.base(), label, params[0], bytes);
    }

    /** A [rows][cols] matrix, GGUF dims {cols, rows}, in the type the file type gives its role. */
    private void matrix(GgufWriter w, long[] params, String name, int cols, int rows, double std, Role role, int layer, ModelConfig c) {
        GgmlType t = fileType.typeOf(role, layer, c.nLayer(), cols, c.tiedEmbeddings(), c.nHead() / c.nHeadKv(), pure);
        w.addTensor(name, t, new long[] {cols, rows}, new NormalSource(seed, name, 0f, (float) std));
        params[0] += (long) cols * rows;
    }

    private void vector(GgufWriter w, long[] params, String name, int n, float mean, float std) {
        w.addTensor(name, GgmlType.F32, new long[] {n}, new NormalSource(seed, name, mean, std));
        params[0] += n;
    }

    /**
     * Approximately normal values from a generator seeded by the model seed and the tensor's name, so each
     * tensor's values do not depend on which other tensors exist. The writer asks for chunks in order.
     */
    static final class NormalSource implements GgufWriter.FloatSource {
        // Sum of four uniform 16-bit integers: mean 4 * 65535 / 2, variance 4 * (65536^2 - 1) / 12.
        private static final double MEAN = 4 * 65535 / 2.0;
        private static final double SD = Math.sqrt(4 * (65536.0 * 65536.0 - 1) / 12);
        private final SplittableRandom random;
        private final float mean;
        private final double scale;
        private long next;

        NormalSource(long seed, String name, float mean, float std) {
            this.random = new SplittableRandom(seed * SplitMix64.GOLDEN_GAMMA + name.hashCode());
            this.mean = mean;
            this.scale = std / SD;
        }

        @Override
        public void fill(long start, float[] chunk) {
            if (start != next) throw new IllegalStateException("chunks must come in order: expected " + next + ", got " + start);
            for (int i = 0; i < chunk.length; i++) {
                long r = random.nextLong();
                long sum = (r & 0xffff) + ((r >>> 16) & 0xffff) + ((r >>> 32) & 0xffff) + (r >>> 48);
                chunk[i] = mean + (float) ((sum - MEAN) * scale);
            }
            next += chunk.length;
        }
    }
}
