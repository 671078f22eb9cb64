package dev.specula.nativeapi;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.function.ToIntFunction;

/**
 * One native handle owned by Java. Its lifetime is an {@link Arena}: closing the handle closes the
 * arena, whose cleanup action runs the native destroy exactly once. Every use goes through
 * {@link #segment()}, so a closed handle fails in Java with a clear message and never reaches native code.
 */
abstract class NativeHandle implements AutoCloseable {
    private final String kind;
    private final Context owner;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment segment;

    /**
     * owner is the context this handle was made from (null for a context itself); it tracks live handles. destroy's
     * status is checked: the native side refuses to destroy a context or model that something made on it still uses
     * (SPEC_ERR_IN_USE), and that surfaces as a SpeculaException from {@link #close()} instead of passing unseen.
     */
    NativeHandle(String kind, Context owner, MemorySegment raw, ToIntFunction<MemorySegment> destroy) {
        this.kind = kind;
        this.owner = owner;
        this.segment = raw.reinterpret(arena, h -> Native.check(destroy.applyAsInt(h), MemorySegment.NULL));
        if (owner != null) owner.register(this);
    }

    /** The live handle; throws IllegalStateException once closed. */
    final MemorySegment segment() {
        if (!arena.scope().isAlive()) throw new IllegalStateException(kind + " is closed");
        return segment;
    }

    public final boolean isOpen() {
        return arena.scope().isAlive();
    }

    /** Closes what depends on this handle first; subclasses override to add that. */
    void closeDependents() {}

    @Override
    public synchronized void close() {
        if (!arena.scope().isAlive()) return;
        closeDependents();
        try {
            arena.close();
        } finally {
            if (owner != null && !arena.scope().isAlive()) owner.forget(this);
        }
    }

    final String kind() {
        return kind;
    }
}
