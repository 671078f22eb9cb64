package dev.specula.nativeapi;

import dev.specula.ffi.SpeculaFfi;
import java.util.Locale;

/**
 * Which weight a tensor is to the native model (enum spec_weight_role). Its shape under a config comes from the
 * native core: {@link ModelShape#weightShape}.
 */
public enum WeightRole {
    TOKEN_EMBD(SpeculaFfi.SPEC_W_TOKEN_EMBD(), true),
    OUTPUT_NORM(SpeculaFfi.SPEC_W_OUTPUT_NORM(), true),
    OUTPUT(SpeculaFfi.SPEC_W_OUTPUT(), true),
    ATTN_NORM(SpeculaFfi.SPEC_W_ATTN_NORM(), false),
    ATTN_Q(SpeculaFfi.SPEC_W_ATTN_Q(), false),
    ATTN_K(SpeculaFfi.SPEC_W_ATTN_K(), false),
    ATTN_V(SpeculaFfi.SPEC_W_ATTN_V(), false),
    ATTN_OUT(SpeculaFfi.SPEC_W_ATTN_OUT(), false),
    ATTN_Q_BIAS(SpeculaFfi.SPEC_W_ATTN_Q_BIAS(), false),
    ATTN_K_BIAS(SpeculaFfi.SPEC_W_ATTN_K_BIAS(), false),
    ATTN_V_BIAS(SpeculaFfi.SPEC_W_ATTN_V_BIAS(), false),
    FFN_NORM(SpeculaFfi.SPEC_W_FFN_NORM(), false),
    FFN_GATE(SpeculaFfi.SPEC_W_FFN_GATE(), false),
    FFN_UP(SpeculaFfi.SPEC_W_FFN_UP(), false),
    FFN_DOWN(SpeculaFfi.SPEC_W_FFN_DOWN(), false),
    // ABI 0.8 (architectures)
    ATTN_Q_NORM(SpeculaFfi.SPEC_W_ATTN_Q_NORM(), false),
    ATTN_K_NORM(SpeculaFfi.SPEC_W_ATTN_K_NORM(), false),
    ATTN_POST_NORM(SpeculaFfi.SPEC_W_ATTN_POST_NORM(), false),
    FFN_POST_NORM(SpeculaFfi.SPEC_W_FFN_POST_NORM(), false);

    private final int code;
    private final boolean global;

    WeightRole(int code, boolean global) {
        this.code = code;
        this.global = global;
    }

    public int code() {
        return code;
    }

    /** True for weights outside the layers (embeddings, final norm, LM head). */
    public boolean global() {
        return global;
    }

    /** True for the q/k/v biases, which only some checkpoints have. */
    public boolean bias() {
        return this == ATTN_Q_BIAS || this == ATTN_K_BIAS || this == ATTN_V_BIAS;
    }

    /** True for the one-row weights (norms and biases), which are never quantized. */
    public boolean vector() {
        return bias() || norm();
    }

    /** True for the RMSNorm weights. */
    public boolean norm() {
        return this == OUTPUT_NORM || this == ATTN_NORM || this == FFN_NORM || this == ATTN_Q_NORM || this == ATTN_K_NORM
                || this == ATTN_POST_NORM || this == FFN_POST_NORM;
    }

    /** The name the native core's messages use, e.g. "attn_q". */
    public String label() {
        return name().toLowerCase(Locale.ROOT);
    }
}
