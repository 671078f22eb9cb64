package dev.specula.nativeapi;

import static dev.specula.ffi.SpeculaFfi.spec_last_error;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;

/** Shared plumbing of the wrapper: loading the library first, and turning statuses into exceptions. */
final class Native {
    static {
        NativeLibrary.load();
    }

    private Native() {}

    /** Touching this class loads the library; the generated bindings resolve symbols after that. */
    static void ensureLoaded() {}

    /** Throws a SpeculaException with the native message when status is not OK. */
    static void check(int status, MemorySegment ctx) {
        if (status != 0) throw new SpeculaException(status, lastError(ctx));
    }

    /** The last error of ctx, or of this thread when ctx is NULL. */
    static String lastError(MemorySegment ctx) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(1024);
            MemorySegment len = arena.allocate(ValueLayout.JAVA_LONG);
            int st = spec_last_error(ctx, buf, buf.byteSize(), len);
            if (st != 0) return "(no message: spec_last_error returned " + st + ")";
            return buf.getString(0, StandardCharsets.UTF_8);
        }
    }

    /** Calls fill(buf, cap) on a scratch buffer and returns the NUL-terminated string it wrote. */
    static String string(java.util.function.ToIntBiFunction<MemorySegment, Long> fill) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(4096);
            check(fill.applyAsInt(buf, buf.byteSize()), MemorySegment.NULL);
            return buf.getString(0, StandardCharsets.UTF_8);
        }
    }
}
