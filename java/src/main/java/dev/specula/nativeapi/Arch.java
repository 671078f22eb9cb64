package dev.specula.nativeapi;

import dev.specula.ffi.SpeculaFfi;

/** The transformer architectures the native core runs (enum spec_arch). */
public enum Arch {
    /** Llama, and the models that share its layout: Mistral, SmolLM. */
    LLAMA(SpeculaFfi.SPEC_ARCH_LLAMA()),
    /** Llama's layout plus q/k/v biases. */
    QWEN2(SpeculaFfi.SPEC_ARCH_QWEN2());

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
}
