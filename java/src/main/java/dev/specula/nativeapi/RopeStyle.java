package dev.specula.nativeapi;

import dev.specula.ffi.SpeculaFfi;

/** Which dimensions RoPE rotates together (enum spec_rope_style). */
public enum RopeStyle {
    /** Rotates adjacent pairs: GGUF llama weights, whose q/k rows llama.cpp's converter permuted. */
    NORM(SpeculaFfi.SPEC_ROPE_NORM()),
    /** Rotates halves: qwen2, and every Hugging Face checkpoint. */
    NEOX(SpeculaFfi.SPEC_ROPE_NEOX());

    private final int code;

    RopeStyle(int code) {
        this.code = code;
    }

    /** The spec_rope_style value. */
    public int code() {
        return code;
    }
}
