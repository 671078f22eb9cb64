package dev.specula.nativeapi;

import dev.specula.ffi.SpeculaFfi;

/** The transformer architectures the native core runs (enum spec_arch). */
public enum Arch {
    /** Llama, and the models that share its layout: Mistral, SmolLM. */
    LLAMA(SpeculaFfi.SPEC_ARCH_LLAMA()),
    /** Llama's layout plus q/k/v biases. */
    QWEN2(SpeculaFfi.SPEC_ARCH_QWEN2()),
    /** Llama's layout plus a per-head RMSNorm of q and k before RoPE (ABI 0.8). */
    QWEN3(SpeculaFfi.SPEC_ARCH_QWEN3()),
    /**
     * Gemma 3 (ABI 0.8): embeddings scaled by sqrt(n_embd), q/k norms, post-attention and post-FFN norms, a
     * GELU-tanh gated FFN, interleaved local (sliding-window) and global layers.
     */
    GEMMA3(SpeculaFfi.SPEC_ARCH_GEMMA3());

    private final int code;

    Arch(int code) {
        this.code = code;
    }

    /** The spec_arch value. */
    public int code() {
        return code;
    }

    /** Whether every layer has q/k/v biases (qwen2 does; a llama checkpoint may, optionally). */
    public boolean requiresQkvBias() {
        return this == QWEN2;
    }

    /** Whether q/k/v biases may be present at all (optional on llama). */
    public boolean allowsQkvBias() {
        return this == LLAMA || this == QWEN2;
    }

    /** Whether a weight role is part of this architecture (the biases: see {@link #allowsQkvBias}). */
    public boolean uses(WeightRole role) {
        return switch (role) {
            case ATTN_Q_BIAS, ATTN_K_BIAS, ATTN_V_BIAS -> allowsQkvBias();
            case ATTN_Q_NORM, ATTN_K_NORM -> this == QWEN3 || this == GEMMA3;
            case ATTN_POST_NORM, FFN_POST_NORM -> this == GEMMA3;
            default -> true;
        };
    }
}
