package dev.specula.nativeapi;

import java.util.Arrays;
import java.util.Locale;

/** The backends of the C ABI, by the names it and the command line use ("cpu", "cuda"). */
public enum Backend {
    /** The reference backend, on the host's cores; always compiled in. */
    CPU("cpu"),
    /** NVIDIA GPUs; compiled in when the CUDA toolkit was there at build time. */
    CUDA("cuda");

    private final String id;

    Backend(String id) {
        this.id = id;
    }

    /** The ABI's and the command line's name. */
    public String id() {
        return id;
    }

    @Override
    public String toString() {
        return id;
    }

    /** The backend named s (case does not matter); the error lists the choices. */
    public static Backend parse(String s) {
        String n = s == null ? "" : s.trim().toLowerCase(Locale.ROOT);
        for (Backend b : values()) if (b.id.equals(n)) return b;
        throw new IllegalArgumentException("unknown backend '" + s + "'; choose one of "
                + String.join(", ", Arrays.stream(values()).map(Backend::id).toList()));
    }
}
