package dev.specula.model;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import dev.specula.model.gguf.GgmlQuant;
import dev.specula.model.gguf.GgmlType;
import dev.specula.model.gguf.GgufFile;
import dev.specula.model.gguf.GgufTensor;
import dev.specula.model.safetensors.SafetensorsCheckpoint;
import dev.specula.nativeapi.Arch;
import dev.specula.nativeapi.ModelShape;
import dev.specula.nativeapi.RopeScaling;
import dev.specula.nativeapi.RopeStyle;
import java.math.BigDecimal;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Optional;

/**
 * The shape of a transformer as the native core's spec_model_config describes it, plus whether the LM head shares
 * the token embedding. Read it from a GGUF file's metadata ({@link #fromGguf}) or a Hugging Face config.json
 * ({@link #fromHf}); both check it the way spec_model_create will, so a bad file is reported with its name.
 */
public record ModelConfig(
        Arch arch,
        int nVocab,
        int nEmbd,
        int nLayer,
        int nHead,
        int nHeadKv,
        int headDim,
        int nFf,
        int nCtxTrain,
        float rmsEps,
        float ropeTheta,
        RopeStyle ropeStyle,
        int ropeDims,
        RopeScaling ropeScaling,
        float ropeFactor,
        float ropeLowFreqFactor,
        float ropeHighFreqFactor,
        int ropeOrigCtx,
        boolean tiedEmbeddings,
        LayerAttention layerAttention) implements ModelShape {

    /**
     * Sliding-window attention and the per-layer attention settings of ABI 0.8 (spec_model_config's last four
     * fields): {@link #NONE} is full attention in every layer with one RoPE.
     *
     * @param slidingWindow 0 = none; else a token at position p sees, in a local layer, keys at positions > p - window
     * @param swaPattern which layers are local: 0 = all; n = all but those with (layer + 1) % n == 0
     * @param ropeThetaLocal the local layers' RoPE base, unscaled; 0 = the global RoPE
     * @param attnScale the softmax scale of q.k; 0 = 1 / sqrt(head_dim)
     */
    public record LayerAttention(int slidingWindow, int swaPattern, float ropeThetaLocal, float attnScale) {
        public static final LayerAttention NONE = new LayerAttention(0, 0, 0f, 0f);

        /** Gemma 3: every sixth layer global; local layers rotate with base 10000, as llama.cpp and transformers do. */
        public static final int GEMMA3_SWA_PATTERN = 6;
        public static final float GEMMA3_ROPE_THETA_LOCAL = 10000f;

        /** A window over every layer with the global RoPE (Mistral, or a llama / qwen file that declares one). */
        public static LayerAttention window(int slidingWindow) {
            return new LayerAttention(slidingWindow, 0, 0f, 0f);
        }
    }

    /** A config without a sliding window or per-layer attention settings. */
    public ModelConfig(Arch arch, int nVocab, int nEmbd, int nLayer, int nHead, int nHeadKv, int headDim, int nFf, int nCtxTrain,
                       float rmsEps, float ropeTheta, RopeStyle ropeStyle, int ropeDims, RopeScaling ropeScaling, float ropeFactor,
                       float ropeLowFreqFactor, float ropeHighFreqFactor, int ropeOrigCtx, boolean tiedEmbeddings) {
        this(arch, nVocab, nEmbd, nLayer, nHead, nHeadKv, headDim, nFf, nCtxTrain, rmsEps, ropeTheta, ropeStyle, ropeDims,
                ropeScaling, ropeFactor, ropeLowFreqFactor, ropeHighFreqFactor, ropeOrigCtx, tiedEmbeddings, LayerAttention.NONE);
    }

    public ModelConfig {
        if (layerAttention == null) layerAttention = LayerAttention.NONE;
    }

    /** This config with other per-layer attention settings. */
    public ModelConfig withLayerAttention(LayerAttention a) {
        return new ModelConfig(arch, nVocab, nEmbd, nLayer, nHead, nHeadKv, headDim, nFf, nCtxTrain, rmsEps, ropeTheta, ropeStyle,
                ropeDims, ropeScaling, ropeFactor, ropeLowFreqFactor, ropeHighFreqFactor, ropeOrigCtx, tiedEmbeddings, a);
    }

    @Override
    public int slidingWindow() {
        return layerAttention.slidingWindow();
    }

    @Override
    public int swaPattern() {
        return layerAttention.swaPattern();
    }

    @Override
    public float ropeThetaLocal() {
        return layerAttention.ropeThetaLocal();
    }

    @Override
    public float attnScale() {
        return layerAttention.attnScale();
    }

    /** The GGUF tensor llama.cpp's converter writes for Llama 3.1+ RoPE scaling: one divisor per rotated pair. */
    public static final String ROPE_FREQS_TENSOR = "rope_freqs.weight";

    /** Output rows of the q projection. */
    public int qDim() {
        return nHead * headDim;
    }

    /** Output rows of the k and v projections. */
    public int kvDim() {
        return nHeadKv * headDim;
    }

    /** Whether the architecture has q/k/v biases (qwen2 does; llama may, optionally). */
    public boolean requiresQkvBias() {
        return arch.requiresQkvBias();
    }

    /** Rotated dimensions per head (ropeDims, which 0 would mean all of headDim). */
    public int effectiveRopeDims() {
        return ropeDims == 0 ? headDim : ropeDims;
    }

    public String describe() {
        String scaling = switch (ropeScaling) {
            case NONE -> "";
            case LINEAR -> String.format(Locale.ROOT, ", rope scaling linear x%s", ropeFactor);
            case LLAMA3 -> String.format(Locale.ROOT, ", rope scaling llama3 x%s (low %s, high %s, orig ctx %d)",
                    ropeFactor, ropeLowFreqFactor, ropeHighFreqFactor, ropeOrigCtx);
        };
        LayerAttention a = layerAttention;
        String window = a.slidingWindow() <= 0 ? ""
                : String.format(Locale.ROOT, ", sliding window %d%s%s", a.slidingWindow(),
                        a.swaPattern() > 0 ? " (every " + a.swaPattern() + "th layer global)" : " (every layer)",
                        a.ropeThetaLocal() > 0 ? ", local rope theta " + a.ropeThetaLocal() : "");
        String scale = a.attnScale() > 0 ? String.format(Locale.ROOT, ", attention scale %s", a.attnScale()) : "";
        return String.format(Locale.ROOT,
                "%s: vocab %d, embd %d, layers %d, heads %d/%d kv, head_dim %d, ff %d, ctx %d, rms_eps %s, rope %s theta %s dims %d%s%s%s%s",
                arch.name().toLowerCase(Locale.ROOT), nVocab, nEmbd, nLayer, nHead, nHeadKv, headDim, nFf, nCtxTrain,
                rmsEps, ropeStyle, ropeTheta, effectiveRopeDims(), scaling, window, scale, tiedEmbeddings ? ", tied embeddings" : "");
    }

    /**
     * Throws ModelFormatException naming file when the config is one spec_model_create would refuse (the same
     * limits as native/core's validate_config).
     */
    public ModelConfig check(Path file) {
        range(file, "n_vocab", nVocab, 1 << 22);
        range(file, "n_embd", nEmbd, 1 << 16);
        range(file, "n_layer", nLayer, 1024);
        range(file, "n_head", nHead, 1024);
        range(file, "n_head_kv", nHeadKv, 1024);
        range(file, "head_dim", headDim, 1024);
        range(file, "n_ff", nFf, 1 << 18);
        range(file, "n_ctx_train", nCtxTrain, 1 << 24);
        if (nHead % nHeadKv != 0) fail(file, "n_head " + nHead + " is not a multiple of n_head_kv " + nHeadKv);
        if (headDim % 2 != 0) fail(file, "head_dim " + headDim + " is odd");
        if (ropeDims < 0 || ropeDims > headDim || ropeDims % 2 != 0) {
            fail(file, "rope dimension count " + ropeDims + " must be even and at most head_dim " + headDim);
        }
        if (!(rmsEps > 0 && rmsEps < 1)) fail(file, "rms norm epsilon " + rmsEps + " is out of range (0, 1)");
        if (!(ropeTheta > 0) || Float.isInfinite(ropeTheta)) fail(file, "rope theta " + ropeTheta + " must be positive");
        if (ropeScaling != RopeScaling.NONE && !(ropeFactor > 0)) fail(file, "rope scaling factor " + ropeFactor + " must be positive");
        if (ropeScaling == RopeScaling.LLAMA3
                && (ropeOrigCtx <= 0 || !(ropeLowFreqFactor > 0) || !(ropeHighFreqFactor > ropeLowFreqFactor))) {
            fail(file, "llama3 rope scaling needs original context > 0 and 0 < low_freq_factor < high_freq_factor (got "
                    + ropeOrigCtx + ", " + ropeLowFreqFactor + ", " + ropeHighFreqFactor + ")");
        }
        LayerAttention a = layerAttention;
        if (a.slidingWindow() < 0) fail(file, "sliding window " + a.slidingWindow() + " is negative");
        if (a.swaPattern() < 0) fail(file, "sliding window pattern " + a.swaPattern() + " is negative");
        if (!(a.ropeThetaLocal() >= 0) || Float.isInfinite(a.ropeThetaLocal())) fail(file, "local rope theta " + a.ropeThetaLocal() + " must be positive");
        if (!(a.attnScale() >= 0) || Float.isInfinite(a.attnScale())) fail(file, "attention scale " + a.attnScale() + " must be positive");
        if (arch == Arch.GEMMA3 && a.slidingWindow() <= 0) fail(file, "gemma3 needs a sliding window (attention.sliding_window)");
        return this;
    }

    private static void range(Path file, String name, int v, int max) {
        if (v <= 0 || v > max) fail(file, name + " = " + v + " is out of range (1.." + max + ")");
    }

    private static void fail(Path file, String problem) {
        throw new ModelFormatException(file, problem);
    }

    // ---------------------------------------------------------------- GGUF

    /**
     * Reads the config from GGUF metadata (general.architecture llama, mistral or qwen2) and tensor directory:
     * the vocabulary size falls back to token_embd's rows, tied embeddings mean output.weight is absent, and a
     * rope_freqs.weight tensor is turned back into Llama 3 scaling parameters.
     */
    public static ModelConfig fromGguf(GgufFile g) {
        Path file = g.path();
        String archName = g.getString("general.architecture");
        Arch arch = switch (archName) {
            case "llama", "mistral" -> Arch.LLAMA;
            case "qwen2" -> Arch.QWEN2;
            case "qwen3" -> Arch.QWEN3;
            case "gemma3" -> Arch.GEMMA3;
            default -> throw new ModelFormatException(file, "unsupported architecture '" + archName
                    + "' (supported: llama, mistral, qwen2, qwen3, gemma3)");
        };
        String p = archName + ".";
        int nEmbd = g.getInt(p + "embedding_length");
        int nLayer = g.getInt(p + "block_count");
        int nHead = perLayer(g, p + "attention.head_count");
        int nHeadKv = g.contains(p + "attention.head_count_kv") ? perLayer(g, p + "attention.head_count_kv") : nHead;
        int nFf = perLayer(g, p + "feed_forward_length");
        int nCtx = g.getInt(p + "context_length");
        float rmsEps = g.getFloat(p + "attention.layer_norm_rms_epsilon");
        float theta = g.findFloat(p + "rope.freq_base").orElse(10000f);
        if (nHead <= 0) fail(file, "attention.head_count " + nHead + " must be positive");
        if (!g.contains(p + "attention.key_length") && nEmbd % nHead != 0) {
            fail(file, "embedding_length " + nEmbd + " is not a multiple of head_count " + nHead + " and attention.key_length is absent");
        }
        int headDim = g.findInt(p + "attention.key_length").orElse(nEmbd / nHead);
        int valueLength = g.findInt(p + "attention.value_length").orElse(headDim);
        if (valueLength != headDim) {
            fail(file, "attention.value_length " + valueLength + " differs from key_length " + headDim + ", which the engine does not support");
        }
        int ropeDims = g.findInt(p + "rope.dimension_count").orElse(headDim);

        int nVocab;
        if (g.contains(p + "vocab_size")) {
            nVocab = g.getInt(p + "vocab_size");
        } else if (g.hasTensor("token_embd.weight") && g.tensor("token_embd.weight").nDims() == 2) {
            nVocab = Math.toIntExact(g.tensor("token_embd.weight").dim(1));
        } else if (g.contains("tokenizer.ggml.tokens")) {
            nVocab = g.getStringList("tokenizer.ggml.tokens").size();
        } else {
            throw new ModelFormatException(file, "cannot tell the vocabulary size: no " + p + "vocab_size, token_embd.weight or tokenizer.ggml.tokens");
        }
        RopeStyle style = arch == Arch.LLAMA ? RopeStyle.NORM : RopeStyle.NEOX;
        boolean tied = !g.hasTensor("output.weight");

        RopeScaling scaling = RopeScaling.NONE;
        float factor = 0, low = 0, high = 0;
        int orig = 0;
        String type = g.findString(p + "rope.scaling.type").orElse("none");
        Optional<Float> metaFactor = g.findFloat(p + "rope.scaling.factor").or(() -> g.findFloat(p + "rope.scale_linear"));
        if (g.hasTensor(ROPE_FREQS_TENSOR)) {
            if (!type.equals("none") && !type.equals("llama3")) {
                fail(file, "has both " + ROPE_FREQS_TENSOR + " and rope.scaling.type '" + type + "'; the engine supports only one scaling");
            }
            Llama3 l3 = llama3FromFactors(g, p, theta, ropeDims == 0 ? headDim : ropeDims);
            if (l3 != null) {
                scaling = RopeScaling.LLAMA3;
                factor = l3.factor;
                low = l3.low;
                high = l3.high;
                orig = l3.orig;
            }
        } else {
            switch (type) {
                case "none" -> {
                    if (metaFactor.isPresent() && metaFactor.get() != 1f && g.contains(p + "rope.scale_linear")) {
                        scaling = RopeScaling.LINEAR;
                        factor = metaFactor.get();
                    }
                }
                case "linear" -> {
                    scaling = RopeScaling.LINEAR;
                    factor = metaFactor.orElseThrow(() -> new ModelFormatException(file,
                            "rope.scaling.type is linear but " + p + "rope.scaling.factor is missing"));
                }
                default -> fail(file, "unsupported rope scaling '" + type + "' (supported: none, linear, and llama3 through "
                        + ROPE_FREQS_TENSOR + ")");
            }
        }
        java.util.OptionalInt window = g.findInt(p + "attention.sliding_window");
        LayerAttention attention;
        if (arch == Arch.GEMMA3) {
            // As llama.cpp runs gemma3: the window is required, every sixth layer is global, local layers rotate
            // with base 10000 unscaled, and q.k is scaled by 1/sqrt(head_dim) except on the 27B (62 layers),
            // which uses 1/sqrt(n_embd / n_head) (Gemma's query_pre_attn_scalar).
            int w = window.orElseThrow(() -> new ModelFormatException(file, "gemma3 needs " + p + "attention.sliding_window"));
            float scale = nLayer == 62 ? (float) (1 / Math.sqrt(nEmbd / nHead)) : 0f;
            attention = new LayerAttention(w, LayerAttention.GEMMA3_SWA_PATTERN, LayerAttention.GEMMA3_ROPE_THETA_LOCAL, scale);
        } else {
            attention = window.isPresent() ? LayerAttention.window(window.getAsInt()) : LayerAttention.NONE;
        }
        return new ModelConfig(arch, nVocab, nEmbd, nLayer, nHead, nHeadKv, headDim, nFf, nCtx, rmsEps, theta, style,
                ropeDims, scaling, factor, low, high, orig, tied, attention).check(file);
    }

    /** A hyperparameter llama.cpp allows per layer: either one number or an array whose entries must agree here. */
    private static int perLayer(GgufFile g, String key) {
        Object v = g.get(key);
        if (v instanceof int[] a) {
            if (a.length == 0) fail(g.path(), "metadata key '" + key + "' is an empty array");
            for (int x : a) {
                if (x != a[0]) fail(g.path(), "metadata key '" + key + "' differs between layers, which the engine does not support");
            }
            return a[0];
        }
        return g.getInt(key);
    }

    private record Llama3(float factor, float low, float high, int orig) {}

    /**
     * Llama 3 scaling reaches GGUF as rope_freqs.weight, the per-pair frequency divisors the converter computed,
     * but the ABI takes the four parameters they came from. They are solved for from the divisors (taking the
     * original context from metadata, or 8192, since only the ratios matter) and accepted only when recomputing
     * every divisor from them reproduces the tensor; anything else cannot be expressed and is refused.
     */
    private static Llama3 llama3FromFactors(GgufFile g, String p, float theta, int dims) {
        Path file = g.path();
        GgufTensor t = g.tensor(ROPE_FREQS_TENSOR);
        if (t.nDims() != 1 || t.elementCount() != dims / 2) {
            fail(file, ROPE_FREQS_TENSOR + " has dims " + java.util.Arrays.toString(t.dims()) + ", expected [" + dims / 2 + "]");
        }
        if (t.type() != GgmlType.F32 && t.type() != GgmlType.F16 && t.type() != GgmlType.BF16) {
            fail(file, ROPE_FREQS_TENSOR + " has type " + t.type() + ", expected F32");
        }
        float[] f = GgmlQuant.decode(t);
        float factor = 1;
        boolean allOnes = true;
        for (float x : f) {
            if (!(x > 0) || Float.isInfinite(x)) fail(file, ROPE_FREQS_TENSOR + " holds a non-positive factor " + x);
            factor = Math.max(factor, x);
            allOnes &= Math.abs(x - 1) < 1e-6;
        }
        if (allOnes) return null;
        int orig = g.findInt(p + "rope.scaling.original_context_length").orElse(8192);
        float low = g.findFloat(p + "rope.scaling.low_freq_factor").orElse(1f);
        float high = g.findFloat(p + "rope.scaling.high_freq_factor").orElse(4f);

        // In the smooth band, 1/f = (1 - s)/factor + s with s = orig/wavelen * a' + b', a line in 1/wavelen:
        // two points of it give low and high for the chosen orig.
        int first = -1, last = -1;
        for (int i = 0; i < f.length; i++) {
            if (f[i] > 1 + 1e-4 && f[i] < factor * (1 - 1e-4)) {
                if (first < 0) first = i;
                last = i;
            }
        }
        if (first >= 0 && last > first) {
            double s1 = smooth(f[first], factor), s2 = smooth(f[last], factor);
            double r1 = orig / wavelen(theta, dims, first), r2 = orig / wavelen(theta, dims, last);
            double slope = (s2 - s1) / (r2 - r1); // = 1 / (high - low)
            if (slope > 0) {
                double lowD = r1 - s1 / slope;
                low = (float) lowD;
                high = (float) (lowD + 1 / slope);
            }
        }
        float[] expected = llama3Factors(theta, dims, factor, low, high, orig);
        for (int i = 0; i < f.length; i++) {
            if (!(Math.abs(expected[i] - f[i]) <= 1e-3 * f[i])) { // NaN parameters fail too
                throw new ModelFormatException(file, ROPE_FREQS_TENSOR + " holds per-dimension RoPE frequency factors that are "
                        + "not Llama 3 scaling (pair " + i + ": " + f[i] + ", Llama 3 with factor " + factor + ", low " + low
                        + ", high " + high + ", original context " + orig + " gives " + expected[i]
                        + "); the engine's ABI cannot take arbitrary factors [UNSUPPORTED]");
            }
        }
        return new Llama3(factor, low, high, orig);
    }

    private static double smooth(float f, float factor) {
        return (1.0 / f - 1.0 / factor) / (1.0 - 1.0 / factor);
    }

    private static double wavelen(float theta, int dims, int pair) {
        double freq = 1.0 / Math.pow(theta, (2.0 * pair) / dims);
        return 2 * Math.PI / freq;
    }

    /**
     * The frequency divisor of each rotated pair under Llama 3 scaling, as Meta's reference code and llama.cpp's
     * converter compute it: 1 for short wavelengths, factor for long ones, a smooth blend between.
     */
    public static float[] llama3Factors(float theta, int dims, float factor, float low, float high, int orig) {
        float[] out = new float[dims / 2];
        double lowWavelen = orig / (double) low, highWavelen = orig / (double) high;
        for (int i = 0; i < out.length; i++) {
            double w = wavelen(theta, dims, i);
            if (w < highWavelen) {
                out[i] = 1;
            } else if (w > lowWavelen) {
                out[i] = factor;
            } else {
                double s = (orig / w - low) / (high - low);
                out[i] = (float) (1 / ((1 - s) / factor + s));
            }
        }
        return out;
    }

    // ---------------------------------------------------------------- Hugging Face

    /** Reads the config of a Hugging Face checkpoint from its config.json. */
    public static ModelConfig fromHf(SafetensorsCheckpoint checkpoint) {
        return fromHf(checkpoint.configPath(), checkpoint.config());
    }

    /**
     * Reads a Hugging Face config.json (model_type llama, mistral or qwen2). RoPE is NEOX: Hugging Face layouts
     * rotate halves, and their weights need no permutation.
     */
    public static ModelConfig fromHf(Path file, JsonObject json) {
        String modelType = string(file, json, "model_type");
        Arch arch = switch (modelType) {
            case "llama", "mistral" -> Arch.LLAMA;
            case "qwen2" -> Arch.QWEN2;
            case "qwen3" -> Arch.QWEN3;
            case "gemma3_text", "gemma3" -> Arch.GEMMA3;
            default -> throw new ModelFormatException(file, "unsupported model_type '" + modelType
                    + "' (supported: llama, mistral, qwen2, qwen3, gemma3_text)");
        };
        if (arch == Arch.GEMMA3 && present(json, "text_config")) {
            fail(file, "a multimodal gemma3 checkpoint (text_config); the engine reads text-only Gemma3ForCausalLM checkpoints (model_type gemma3_text)");
        }
        int nEmbd = integer(file, json, "hidden_size");
        int nHead = integer(file, json, "num_attention_heads");
        int nHeadKv = optInteger(file, json, "num_key_value_heads").orElse(nHead);
        if (nHead <= 0) fail(file, "num_attention_heads " + nHead + " must be positive");
        if (!present(json, "head_dim") && nEmbd % nHead != 0) {
            fail(file, "hidden_size " + nEmbd + " is not a multiple of num_attention_heads " + nHead + " and head_dim is absent");
        }
        int headDim = optInteger(file, json, "head_dim").orElse(arch == Arch.GEMMA3 ? 256 : nEmbd / nHead);
        JsonObject ropeParams = present(json, "rope_parameters") ? object(file, json, "rope_parameters") : null;
        JsonObject scalingJson = present(json, "rope_scaling") ? object(file, json, "rope_scaling") : ropeParams;
        float theta = optFloat(file, json, "rope_theta")
                .or(() -> ropeParams == null ? Optional.empty() : optFloat(file, ropeParams, "rope_theta"))
                .orElse(10000f);
        int ropeDims = headDim;
        if (present(json, "partial_rotary_factor")) {
            ropeDims = (int) (headDim * optFloat(file, json, "partial_rotary_factor").orElseThrow());
        }

        RopeScaling scaling = RopeScaling.NONE;
        float factor = 0, low = 0, high = 0;
        int orig = 0;
        if (scalingJson != null) {
            String type = present(scalingJson, "rope_type") ? string(file, scalingJson, "rope_type")
                    : present(scalingJson, "type") ? string(file, scalingJson, "type") : "default";
            switch (type) {
                case "default" -> {}
                case "linear" -> {
                    scaling = RopeScaling.LINEAR;
                    factor = floatValue(file, scalingJson, "factor");
                }
                case "llama3" -> {
                    scaling = RopeScaling.LLAMA3;
                    factor = floatValue(file, scalingJson, "factor");
                    low = optFloat(file, scalingJson, "low_freq_factor").orElse(1f);
                    high = optFloat(file, scalingJson, "high_freq_factor").orElse(4f);
                    orig = optInteger(file, scalingJson, "original_max_position_embeddings").orElse(8192);
                }
                default -> fail(file, "unsupported rope scaling '" + type + "' (supported: default, linear, llama3)");
            }
        }
        // transformers ties gemma3's embeddings unless told otherwise; the others untie by default
        boolean tied = present(json, "tie_word_embeddings") ? bool(file, json, "tie_word_embeddings") : arch == Arch.GEMMA3;
        float rmsEps = arch == Arch.GEMMA3 ? optFloat(file, json, "rms_norm_eps").orElse(1e-6f) : floatValue(file, json, "rms_norm_eps");
        int nLayer = integer(file, json, "num_hidden_layers");
        LayerAttention attention = hfLayerAttention(file, json, arch, nLayer, headDim);
        return new ModelConfig(arch, integer(file, json, "vocab_size"), nEmbd, nLayer,
                nHead, nHeadKv, headDim, integer(file, json, "intermediate_size"),
                integer(file, json, "max_position_embeddings"), rmsEps, theta, RopeStyle.NEOX, ropeDims,
                scaling, factor, low, high, orig, tied, attention).check(file);
    }

    /**
     * The sliding window of a Hugging Face config. Mistral (and llama) configs declare it as sliding_window (null
     * or absent: none). Qwen configs carry a sliding_window that only counts with use_sliding_window, and then
     * only above max_window_layers, which the engine does not run: refused. Gemma 3: the window, the pattern
     * (sliding_window_pattern, or layer_types), rope_local_base_freq and query_pre_attn_scalar; its soft-capping
     * options must be off.
     */
    private static LayerAttention hfLayerAttention(Path file, JsonObject json, Arch arch, int nLayer, int headDim) {
        Optional<Integer> window = optInteger(file, json, "sliding_window");
        switch (arch) {
            case LLAMA -> {
                return window.filter(w -> w > 0).map(LayerAttention::window).orElse(LayerAttention.NONE);
            }
            case QWEN2, QWEN3 -> {
                if (present(json, "use_sliding_window") && bool(file, json, "use_sliding_window")) {
                    fail(file, "use_sliding_window is true: Qwen's sliding window above max_window_layers is not supported");
                }
                return LayerAttention.NONE;
            }
            case GEMMA3 -> {
                for (String cap : new String[] {"final_logit_softcapping", "attn_logit_softcapping"}) {
                    if (present(json, cap)) fail(file, cap + " is set; gemma3 soft-capping is not supported");
                }
                int w = window.orElse(4096);
                int pattern = optInteger(file, json, "sliding_window_pattern").orElse(LayerAttention.GEMMA3_SWA_PATTERN);
                if (present(json, "layer_types")) pattern = patternOfLayerTypes(file, json, nLayer);
                float local = optFloat(file, json, "rope_local_base_freq").orElse(LayerAttention.GEMMA3_ROPE_THETA_LOCAL);
                float scalar = optFloat(file, json, "query_pre_attn_scalar").orElse((float) headDim);
                float scale = scalar == headDim ? 0f : (float) (1 / Math.sqrt(scalar));
                return new LayerAttention(w, pattern, local, scale);
            }
            default -> throw new IllegalStateException(arch.name());
        }
    }

    /** layer_types ("sliding_attention" / "full_attention" per layer) as a pattern: global exactly every n-th layer. */
    private static int patternOfLayerTypes(Path file, JsonObject json, int nLayer) {
        JsonElement e = json.get("layer_types");
        if (!e.isJsonArray() || e.getAsJsonArray().size() != nLayer) fail(file, "'layer_types' is not a list of " + nLayer + " layer types");
        var types = e.getAsJsonArray();
        int pattern = 0;
        for (int l = 0; l < nLayer && pattern == 0; l++) {
            if (types.get(l).getAsString().equals("full_attention")) pattern = l + 1;
        }
        if (pattern == 0) pattern = nLayer + 1; // no global layer
        for (int l = 0; l < nLayer; l++) {
            String want = (l + 1) % pattern == 0 ? "full_attention" : "sliding_attention";
            if (!types.get(l).isJsonPrimitive() || !types.get(l).getAsString().equals(want)) {
                fail(file, "'layer_types' is not a global layer every " + pattern + " layers (layer " + l + " is " + types.get(l)
                        + "), which the engine does not support");
            }
        }
        return pattern;
    }

    private static boolean present(JsonObject o, String key) {
        return o.has(key) && !o.get(key).isJsonNull();
    }

    private static JsonElement require(Path file, JsonObject o, String key) {
        if (!present(o, key)) throw new ModelFormatException(file, "missing '" + key + "'");
        return o.get(key);
    }

    private static String string(Path file, JsonObject o, String key) {
        JsonElement e = require(file, o, key);
        if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isString()) fail(file, "'" + key + "' is not a string: " + e);
        return e.getAsString();
    }

    private static JsonObject object(Path file, JsonObject o, String key) {
        JsonElement e = require(file, o, key);
        if (!e.isJsonObject()) fail(file, "'" + key + "' is not an object: " + e);
        return e.getAsJsonObject();
    }

    private static boolean bool(Path file, JsonObject o, String key) {
        JsonElement e = require(file, o, key);
        if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isBoolean()) fail(file, "'" + key + "' is not true or false: " + e);
        return e.getAsBoolean();
    }

    private static int integer(Path file, JsonObject o, String key) {
        JsonElement e = require(file, o, key);
        try {
            if (e.isJsonPrimitive() && e.getAsJsonPrimitive().isNumber()) return e.getAsBigDecimal().intValueExact();
        } catch (ArithmeticException | NumberFormatException ignored) {
            // reported below
        }
        throw new ModelFormatException(file, "'" + key + "' is not a 32-bit whole number: " + e);
    }

    private static Optional<Integer> optInteger(Path file, JsonObject o, String key) {
        return present(o, key) ? Optional.of(integer(file, o, key)) : Optional.empty();
    }

    private static float floatValue(Path file, JsonObject o, String key) {
        JsonElement e = require(file, o, key);
        try {
            if (e.isJsonPrimitive() && e.getAsJsonPrimitive().isNumber()) {
                BigDecimal d = e.getAsBigDecimal();
                return d.floatValue();
            }
        } catch (NumberFormatException ignored) {
            // reported below
        }
        throw new ModelFormatException(file, "'" + key + "' is not a number: " + e);
    }

    private static Optional<Float> optFloat(Path file, JsonObject o, String key) {
        return present(o, key) ? Optional.of(floatValue(file, o, key)) : Optional.empty();
    }
}
