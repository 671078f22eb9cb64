package dev.specula.nativeapi;

import dev.specula.ffi.SpeculaFfi;

/** Which weight a tensor is to the native model (enum spec_weight_role). */
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
    FFN_DOWN(SpeculaFfi.SPEC_W_FFN_DOWN(), false);

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
}
