package dev.specula.nativeapi;

import dev.specula.ffi.SpeculaFfi;

/** Element types the native core reads (enum spec_dtype). */
public enum DType {
    F32(SpeculaFfi.SPEC_DTYPE_F32()),
    F16(SpeculaFfi.SPEC_DTYPE_F16()),
    BF16(SpeculaFfi.SPEC_DTYPE_BF16()),
    Q8_0(SpeculaFfi.SPEC_DTYPE_Q8_0()),
    Q4_0(SpeculaFfi.SPEC_DTYPE_Q4_0()),
    Q4_1(SpeculaFfi.SPEC_DTYPE_Q4_1()),
    Q5_0(SpeculaFfi.SPEC_DTYPE_Q5_0()),
    Q5_1(SpeculaFfi.SPEC_DTYPE_Q5_1()),
    Q2_K(SpeculaFfi.SPEC_DTYPE_Q2_K()),
    Q3_K(SpeculaFfi.SPEC_DTYPE_Q3_K()),
    Q4_K(SpeculaFfi.SPEC_DTYPE_Q4_K()),
    Q5_K(SpeculaFfi.SPEC_DTYPE_Q5_K()),
    Q6_K(SpeculaFfi.SPEC_DTYPE_Q6_K());

    private final int code;

    DType(int code) {
        this.code = code;
    }

    public int code() {
        return code;
    }
}
