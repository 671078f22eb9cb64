package dev.specula.nativeapi;

import static dev.specula.ffi.SpeculaFfi.*;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/** One sequence's KV cache for one model: a committed prefix, plus the last forward's pending tokens. */
public final class KvCache extends NativeHandle {
    private final NativeModel model;
    private final int capacity;

    KvCache(NativeModel model, MemorySegment raw, int capacity) {
        super("KvCache(" + capacity + " positions)", model.context(), raw, h -> spec_kv_destroy(h));
        this.model = model;
        this.capacity = capacity;
    }

    public NativeModel model() {
        return model;
    }

    public int capacity() {
        return capacity;
    }

    MemorySegment handle() {
        return segment();
    }

    /** Committed positions. */
    public int length() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ValueLayout.JAVA_INT);
            Native.check(spec_kv_length(segment(), out), model.context().handle());
            return out.get(ValueLayout.JAVA_INT, 0);
        }
    }

    /** Drops committed positions from newLength on, and any pending tokens. */
    public void truncate(int newLength) {
        synchronized (model) {
            Native.check(spec_kv_truncate(segment(), newLength), model.context().handle());
        }
    }

    /** Keeps the last forward's pending tokens path[0..] (a root-to-node chain) as committed positions. */
    public void commit(int[] path) {
        synchronized (model) {
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment p = path.length == 0 ? MemorySegment.NULL : arena.allocateFrom(ValueLayout.JAVA_INT, path);
                Native.check(spec_kv_commit(segment(), path.length, p), model.context().handle());
            }
        }
    }

    /** Commits all n pending tokens of a chain forward. */
    public void commitChain(int n) {
        int[] path = new int[n];
        for (int i = 0; i < n; i++) path[i] = i;
        commit(path);
    }
}
