package dev.specula.sampling;

import static org.junit.jupiter.api.Assertions.*;

import org.junit.jupiter.api.Test;

class SamplerTest {
    private static final float[] LOGITS = {1.0f, 3.0f, 2.0f, 3.0f, -1.0f, 0.5f};

    @Test
    void greedyTakesTheLowestIdAmongEqualMaxima() {
        assertEquals(1, new Sampler(SamplingOptions.GREEDY).sample(LOGITS, new int[0], 0));
    }

    @Test
    void repetitionPenaltyChangesTheGreedyChoice() {
        SamplingOptions o = SamplingOptions.GREEDY.withRepetitionPenalty(2f, 8);
        // Token 1 was just used: 3/2 = 1.5 < 3, so token 3 wins; 2 stays at 2.
        assertEquals(3, new Sampler(o).sample(LOGITS, new int[] {1}, 1));
        // Negative logits are multiplied, not divided, so a penalty always lowers them.
        double[] p = Sampler.distribution(new float[] {-1f, -1.5f}, new int[] {0}, 1, SamplingOptions.sampled(1f, 0).withRepetitionPenalty(2f, 8));
        assertTrue(p[1] > p[0]);
    }

    @Test
    void temperatureOneIsTheSoftmax() {
        double[] p = Sampler.distribution(LOGITS, null, 0, SamplingOptions.sampled(1f, 0));
        double sum = 0;
        for (float l : LOGITS) sum += Math.exp(l);
        for (int i = 0; i < LOGITS.length; i++) assertEquals(Math.exp(LOGITS[i]) / sum, p[i], 1e-12);
    }

    @Test
    void truncationsKeepTheExpectedSets() {
        double[] p = Sampler.distribution(LOGITS, null, 0, SamplingOptions.sampled(1f, 0).withTopK(2));
        assertTrue(p[1] > 0 && p[3] > 0);
        assertEquals(0.5, p[1], 1e-12);
        assertEquals(0, p[2] + p[0] + p[4] + p[5], 0);

        // top-p 0.8: 1 and 3 hold ~0.73 together, so 2 (the next) is also needed.
        p = Sampler.distribution(LOGITS, null, 0, SamplingOptions.sampled(1f, 0).withTopP(0.8f));
        assertTrue(p[1] > 0 && p[3] > 0 && p[2] > 0);
        assertEquals(0, p[0] + p[4] + p[5], 0);

        // min-p 0.3: keeps tokens with p >= 0.3 * p(top): e^2/e^3 = 0.37 stays, e^1/e^3 = 0.14 goes.
        p = Sampler.distribution(LOGITS, null, 0, SamplingOptions.sampled(1f, 0).withMinP(0.3f));
        assertTrue(p[2] > 0);
        assertEquals(0, p[0] + p[4] + p[5], 0);
    }

    @Test
    void samplingFollowsTheDistributionAndTheSeed() {
        SamplingOptions o = SamplingOptions.sampled(0.8f, 42);
        double[] expected = Sampler.distribution(LOGITS, null, 0, o);
        Sampler s = new Sampler(o);
        int draws = 60_000;
        int[] counts = new int[LOGITS.length];
        for (int i = 0; i < draws; i++) counts[s.sample(LOGITS, null, 0)]++;
        double chi2 = 0;
        for (int i = 0; i < counts.length; i++) {
            double e = expected[i] * draws;
            chi2 += (counts[i] - e) * (counts[i] - e) / e;
        }
        assertTrue(chi2 < 20.5, "chi-square " + chi2 + " over 5 degrees of freedom (p < 0.001)"); // 5 dof, p=0.001
        Sampler a = new Sampler(o), b = new Sampler(o);
        for (int i = 0; i < 100; i++) assertEquals(a.sample(LOGITS, null, 0), b.sample(LOGITS, null, 0));
    }

    @Test
    void badOptionsAreRefused() {
        assertThrows(IllegalArgumentException.class, () -> SamplingOptions.sampled(-1f, 0));
        assertThrows(IllegalArgumentException.class, () -> SamplingOptions.sampled(1f, 0).withTopP(0f));
        assertThrows(IllegalArgumentException.class, () -> SamplingOptions.sampled(1f, 0).withTopK(-2));
    }
}
