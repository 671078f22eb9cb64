package dev.specula.nativeapi;

/**
 * How verification shapes one sequence's target distribution (spec_sampling_params): softmax(logits / T),
 * then top-k, then top-p, ties by the lower token id; temperature 0 is greedy.
 */
public record SamplingParams(long seed, float temperature, float topP, int topK) {
    public static final SamplingParams GREEDY = new SamplingParams(0, 0f, 1f, 0);

    public SamplingParams {
        if (!(temperature >= 0f)) throw new IllegalArgumentException("temperature must be >= 0, got " + temperature);
        if (!(topP > 0f && topP <= 1f)) throw new IllegalArgumentException("topP must be in (0, 1], got " + topP);
        if (topK < 0) throw new IllegalArgumentException("topK must be >= 0, got " + topK);
    }
}
