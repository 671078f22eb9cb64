package dev.specula.nativeapi;

import dev.specula.ffi.SpeculaFfi;

/** How RoPE frequencies are stretched for contexts past the trained one (enum spec_rope_scaling). */
public enum RopeScaling {
    NONE(SpeculaFfi.SPEC_ROPE_SCALING_NONE()),
    LINEAR(SpeculaFfi.SPEC_ROPE_SCALING_LINEAR()),
    LLAMA3(SpeculaFfi.SPEC_ROPE_SCALING_LLAMA3());

    private final int code;

    RopeScaling(int code) {
        this.code = code;
    }

    /** The spec_rope_scaling value. */
    public int code() {
        return code;
    }
}
