package dev.specula.sampling;

/**
 * How a speculative step decides which drafted tokens to keep. GREEDY and SAMPLE are lossless (native
 * verification); TYPICAL and LANTERN are relaxed, LOSSY modes (verified in Java by {@link RelaxedVerifier}):
 * they accept more drafted tokens than the target would itself have produced, so the output differs from
 * plain decoding.
 */
public enum VerifyMode {
    /** Lossless: exactly plain greedy decoding. */
    GREEDY,
    /** Lossless: exactly the distribution of plain sampling. */
    SAMPLE,
    /** LOSSY: Medusa's typical acceptance (see {@link RelaxedVerifier#typical}). */
    TYPICAL,
    /** LOSSY: LANTERN's neighbourhood acceptance (see {@link RelaxedVerifier#lantern}). */
    LANTERN;

    /** Whether this mode changes the output relative to plain decoding. */
    public boolean lossy() {
        return this == TYPICAL || this == LANTERN;
    }
}
