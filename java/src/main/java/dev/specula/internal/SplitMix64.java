package dev.specula.internal;

/**
 * SplitMix64 (Steele, Lea and Flood), the one definition for every place that scatters seeds or hashes keys: the
 * engine's per-position random streams, the vocabulary trainer's tie-breaks and the test-model maker's per-tensor
 * seeds. Not exported: callers outside the library use {@link java.util.SplittableRandom}, which is the same generator.
 */
public final class SplitMix64 {
    private SplitMix64() {}

    /** The generator's increment: the odd 64-bit number nearest 2^64 over the golden ratio. */
    public static final long GOLDEN_GAMMA = 0x9E3779B97F4A7C15L;

    /** The finalizer: a bijection of 64-bit values that scatters nearby inputs. */
    public static long mix(long z) {
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    /** The generator's output for the state before it: mix(state + GOLDEN_GAMMA). */
    public static long next(long state) {
        return mix(state + GOLDEN_GAMMA);
    }
}
