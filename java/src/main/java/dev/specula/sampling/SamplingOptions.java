package dev.specula.sampling;

/**
 * How the next token is chosen from the target's logits. The shaping order is fixed and shared by plain
 * and speculative sampling: repetition penalty, temperature, top-k, top-p, min-p. A temperature of 0
 * means greedy (the highest logit; the lowest token id among equals).
 *
 * @param temperature       0 for greedy; otherwise logits are divided by it
 * @param topK              keep the k most likely tokens; 0 keeps all
 * @param topP              keep the smallest set whose probability reaches p; 1 keeps all
 * @param minP              drop tokens below minP times the top probability; 0 keeps all
 * @param repetitionPenalty 1 for none; above 1 penalises tokens among the last repetitionWindow
 * @param repetitionWindow  how many recent tokens the penalty looks at
 * @param seed              the random stream's seed; the same seed and options give the same output
 */
public record SamplingOptions(float temperature, int topK, float topP, float minP, float repetitionPenalty,
                              int repetitionWindow, long seed) {

    public static final SamplingOptions GREEDY = new SamplingOptions(0f, 0, 1f, 0f, 1f, 64, 0L);

    public SamplingOptions {
        if (!(temperature >= 0f) || Float.isInfinite(temperature)) throw new IllegalArgumentException("temperature must be >= 0 and finite, got " + temperature);
        if (topK < 0) throw new IllegalArgumentException("topK must be >= 0, got " + topK);
        if (!(topP > 0f && topP <= 1f)) throw new IllegalArgumentException("topP must be in (0, 1], got " + topP);
        if (!(minP >= 0f && minP < 1f)) throw new IllegalArgumentException("minP must be in [0, 1), got " + minP);
        if (!(repetitionPenalty > 0f) || Float.isInfinite(repetitionPenalty)) throw new IllegalArgumentException("repetitionPenalty must be > 0, got " + repetitionPenalty);
        if (repetitionWindow < 0) throw new IllegalArgumentException("repetitionWindow must be >= 0, got " + repetitionWindow);
    }

    public static SamplingOptions sampled(float temperature, long seed) {
        return new SamplingOptions(temperature, 0, 1f, 0f, 1f, 64, seed);
    }

    public boolean greedy() {
        return temperature == 0f;
    }

    /**
     * Whether spec_verify's sampling parameters express these options (temperature, top-k, top-p), so tokens can
     * be chosen on the device; repetition penalty and min-p are host-only.
     */
    public boolean deviceExpressible() {
        return repetitionPenalty == 1f && minP == 0f;
    }

    public SamplingOptions withTopK(int k) {
        return new SamplingOptions(temperature, k, topP, minP, repetitionPenalty, repetitionWindow, seed);
    }

    public SamplingOptions withTopP(float p) {
        return new SamplingOptions(temperature, topK, p, minP, repetitionPenalty, repetitionWindow, seed);
    }

    public SamplingOptions withMinP(float p) {
        return new SamplingOptions(temperature, topK, topP, p, repetitionPenalty, repetitionWindow, seed);
    }

    public SamplingOptions withRepetitionPenalty(float penalty, int window) {
        return new SamplingOptions(temperature, topK, topP, minP, penalty, window, seed);
    }

    public SamplingOptions withSeed(long s) {
        return new SamplingOptions(temperature, topK, topP, minP, repetitionPenalty, repetitionWindow, s);
    }
}
