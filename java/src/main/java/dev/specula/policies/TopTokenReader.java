package dev.specula.policies;

import dev.specula.nativeapi.DeviceBuffer;
import dev.specula.nativeapi.LogitsSummary;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Reads what drafting needs ({@link TopTokens}) of the logits rows in a device buffer, one of two ways: on the
 * device, a summary per row (spec_logits_summarize), so that a few numbers cross to the host instead of a row
 * of n_vocab floats; or on the host, the whole row copied and {@link TopTokens#of(float[], int)} run over it,
 * the reference (and the cheaper way on the cpu backend, where the "device" is host memory anyway). Which one
 * is the caller's choice: see {@link dev.specula.nativeapi.Context#devicePathsByDefault}. Not thread-safe.
 */
final class TopTokenReader implements AutoCloseable {
    private final DeviceBuffer logits;
    private final int stride; // floats per row in the buffer
    private final int limit;  // ids below it count
    private final boolean onDevice;
    private Arena arena;      // the host path's copy of one row, made on first use
    private MemorySegment host;
    private float[] row;

    /**
     * @param logits   f32 rows of stride floats
     * @param limit    ids below it count (padding the target cannot verify never becomes a draft); at most stride
     * @param onDevice summarize on the device rather than copy rows to the host
     */
    TopTokenReader(DeviceBuffer logits, int stride, int limit, boolean onDevice) {
        if (limit < 1 || limit > stride) throw new IllegalArgumentException("limit " + limit + " must be in 1.." + stride);
        this.logits = logits;
        this.stride = stride;
        this.limit = limit;
        this.onDevice = onDevice;
    }

    boolean onDevice() {
        return onDevice;
    }

    /** Row i of the buffer. */
    TopTokens row(int i) {
        return onDevice ? rows(i, 1)[0] : hostRow(i);
    }

    /** Rows first..first+n of the buffer: one native call on the device path. */
    TopTokens[] rows(int first, int n) {
        TopTokens[] out = new TopTokens[n];
        if (onDevice) {
            LogitsSummary[] s = LogitsSummary.summarize(logits, (long) first * stride * Float.BYTES, n, stride, limit, TopTokens.K);
            for (int r = 0; r < n; r++) out[r] = TopTokens.of(s[r], limit);
        } else {
            for (int r = 0; r < n; r++) out[r] = hostRow(first + r);
        }
        return out;
    }

    private TopTokens hostRow(int i) {
        if (arena == null) {
            arena = Arena.ofShared(); // the engine may call a policy from any thread
            host = arena.allocate((long) limit * Float.BYTES, 64);
            row = new float[limit];
        }
        long bytes = (long) limit * Float.BYTES;
        logits.copyToHost((long) i * stride * Float.BYTES, host, 0, bytes);
        MemorySegment.copy(host, ValueLayout.JAVA_FLOAT, 0, row, 0, limit);
        return TopTokens.of(row, limit);
    }

    @Override
    public void close() {
        if (arena != null) arena.close();
        arena = null;
    }
}
