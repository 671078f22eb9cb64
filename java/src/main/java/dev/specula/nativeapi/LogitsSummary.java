package dev.specula.nativeapi;

import static dev.specula.ffi.SpeculaFfi.*;

import dev.specula.ffi.spec_logits_summary;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * What one logits row says in a few numbers (spec_logits_summarize): its k most likely ids, best first (by logit,
 * ties to the lower id, NaN as -inf, as verification ranks them; -1 where the row has fewer than k ids), their
 * probabilities under softmax at temperature 1 over the ids below the limit, and that distribution's entropy in
 * nats. Computed on the buffer's device, so only these numbers cross to the host.
 */
public record LogitsSummary(int[] top, float[] prob, float entropy) {
    /** The most ids one summary can name. */
    public static final int MAX_K;
    /** The most rows one call summarizes. */
    public static final int MAX_ROWS;

    static {
        Native.ensureLoaded();
        MAX_K = SPEC_SUMMARY_MAX_K();
        MAX_ROWS = SPEC_KERNEL_MAX_BATCH() * SPEC_MAX_TREE_NODES();
    }

    public LogitsSummary {
        if (top.length != prob.length) throw new IllegalArgumentException("top and prob must have one entry per rank");
    }

    public int k() {
        return top.length;
    }

    /**
     * Summarizes rows rows of f32 logits in buffer: row r starts offsetBytes + r * rowStride * 4 bytes in, and its
     * ids below limit count (1 <= limit <= rowStride). k (1..{@link #MAX_K}) ids per row. The native core checks
     * every argument; a bad one is a SpeculaException with its message.
     */
    public static LogitsSummary[] summarize(DeviceBuffer logits, long offsetBytes, int rows, long rowStride, int limit, int k) {
        Context context = logits.context();
        MemorySegment ctx = context.handle();
        try (Arena arena = Arena.ofConfined()) {
            // Out of range, rows is refused by the native check before anything is written.
            MemorySegment out = spec_logits_summary.allocateArray(rows >= 1 && rows <= MAX_ROWS ? rows : 1, arena);
            Native.check(spec_logits_summarize(ctx, logits.handle(), offsetBytes, rows, rowStride, limit, k, out), ctx);
            return read(out, rows, k);
        }
    }

    /** The first rows spec_logits_summary structs of out, k ids each, as written by the native core. */
    static LogitsSummary[] read(MemorySegment out, int rows, int k) {
        LogitsSummary[] summaries = new LogitsSummary[rows];
        int n = Math.clamp(k, 0, MAX_K);
        for (int r = 0; r < rows; r++) {
            MemorySegment s = spec_logits_summary.asSlice(out, r);
            int[] top = spec_logits_summary.top(s).asSlice(0, n * 4L).toArray(ValueLayout.JAVA_INT);
            float[] prob = spec_logits_summary.prob(s).asSlice(0, n * 4L).toArray(ValueLayout.JAVA_FLOAT);
            summaries[r] = new LogitsSummary(top, prob, spec_logits_summary.entropy(s));
        }
        return summaries;
    }
}
