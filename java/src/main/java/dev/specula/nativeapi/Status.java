package dev.specula.nativeapi;

import dev.specula.ffi.SpeculaFfi;

/** The status codes of the C ABI (enum spec_status_code in specula.h). */
public enum Status {
    OK(SpeculaFfi.SPEC_OK()),
    INVALID_ARGUMENT(SpeculaFfi.SPEC_ERR_INVALID_ARGUMENT()),
    INVALID_HANDLE(SpeculaFfi.SPEC_ERR_INVALID_HANDLE()),
    OUT_OF_RANGE(SpeculaFfi.SPEC_ERR_OUT_OF_RANGE()),
    OUT_OF_MEMORY(SpeculaFfi.SPEC_ERR_OUT_OF_MEMORY()),
    BACKEND_UNAVAILABLE(SpeculaFfi.SPEC_ERR_BACKEND_UNAVAILABLE()),
    UNSUPPORTED(SpeculaFfi.SPEC_ERR_UNSUPPORTED()),
    DEVICE(SpeculaFfi.SPEC_ERR_DEVICE()),
    BUFFER_TOO_SMALL(SpeculaFfi.SPEC_ERR_BUFFER_TOO_SMALL()),
    INTERNAL(SpeculaFfi.SPEC_ERR_INTERNAL()),
    /** ABI 0.12: a context or model was to be destroyed while objects made on it still live; nothing was freed. */
    IN_USE(SpeculaFfi.SPEC_ERR_IN_USE()),
    UNKNOWN(-1);

    private final int code;

    Status(int code) {
        this.code = code;
    }

    public int code() {
        return code;
    }

    static Status of(int code) {
        for (Status s : values()) {
            if (s.code == code) return s;
        }
        return UNKNOWN;
    }
}
