package dev.specula.nativeapi;

import dev.specula.ffi.SpeculaFfi;

/** Element types the native core reads (enum spec_dtype). */
public enum DType {
    F32(SpeculaFfi.SPEC_DTYPE_F32()),
    F16(SpeculaFfi.SPEC_DTYPE_F16()),
    BF16(SpeculaFfi.SPEC_DTYPE_BF16()),
    Q8_0(SpeculaFfi.SPEC_DTYPE_Q8_0()),
    Q4_0(SpeculaFfi.SPEC_DTYPE_Q4_0());

    private final int code;

    DType(int code) {
        this.code = code;
    }

    public int code() {
        return code;
    }
}
