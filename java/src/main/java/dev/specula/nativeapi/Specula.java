package dev.specula.nativeapi;

import static dev.specula.ffi.SpeculaFfi.*;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.List;

/** Library-wide facts: versions, compiled backends and device counts. */
public final class Specula {
    static {
        Native.ensureLoaded();
    }

    private Specula() {}

    /** Where the native library was loaded from. */
    public static Path libraryPath() {
        return NativeLibrary.load();
    }

    public static String libraryVersion() {
        return Native.string((buf, cap) -> spec_library_version(buf, cap));
    }

    /** The ABI version as "major.minor". */
    public static String abiVersion() {
        int packed = abiVersionPacked();
        return (packed >>> 16) + "." + (packed & 0xffff);
    }

    static int abiVersionPacked() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.JAVA_INT);
            Native.check(spec_abi_version(out), MemorySegment.NULL);
            return out.get(ValueLayout.JAVA_INT, 0);
        }
    }

    /** The ABI version these bindings were generated for, as "major.minor". */
    public static String bindingsAbiVersion() {
        return SPEC_ABI_VERSION_MAJOR() + "." + SPEC_ABI_VERSION_MINOR();
    }

    public static List<String> backendsCompiled() {
        return List.of(Native.string((buf, cap) -> spec_backends_compiled(buf, cap)).split(","));
    }

    /**
     * Throws BACKEND_UNAVAILABLE when this library was built without backend. The core calls such a name an invalid
     * argument, as it does a misspelt one; to the caller it is a backend this machine lacks.
     */
    static void requireCompiled(String backend) {
        List<String> compiled = backendsCompiled();
        if (backend != null && !compiled.contains(backend))
            throw new SpeculaException(Status.BACKEND_UNAVAILABLE.code(), "this Specula library has no " + backend
                    + " backend (it was built with: " + String.join(", ", compiled) + ")");
    }

    /** How many devices a backend sees; throws with the reason when it cannot run here. */
    public static int deviceCount(String backend) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.JAVA_INT);
            Native.check(spec_device_count(arena.allocateFrom(backend), out), MemorySegment.NULL);
            return out.get(ValueLayout.JAVA_INT, 0);
        }
    }
}
