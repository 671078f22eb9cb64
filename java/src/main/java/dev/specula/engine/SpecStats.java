package dev.specula.engine;

import java.util.Arrays;

/**
 * Speculative decoding statistics, per request or summed over many ({@link #add}). Mean accepted tokens per
 * step counts the bonus token, as Spec-Bench does: plain decoding scores exactly 1. Not thread-safe.
 */
public final class SpecStats {
    public static final int MAX_DEPTH = 128;

    private long steps;
    private long tokens;
    private final long[] reachedAtDepth = new long[MAX_DEPTH + 1];
    private final long[] acceptedAtDepth = new long[MAX_DEPTH + 1];
    private final long[] acceptedLengthHistogram = new long[MAX_DEPTH + 1];
    private double draftSeconds;
    private double verifySeconds;
    private double otherSeconds;
    private double promptSeconds;
    private long promptTokens;

    void recordStep(int acceptedDrafts, int emitted, int[] depthFlags) {
        steps++;
        tokens += emitted;
        acceptedLengthHistogram[Math.min(acceptedDrafts, MAX_DEPTH)]++;
        for (int d = 1; d < depthFlags.length && d <= MAX_DEPTH; d++) {
            if (depthFlags[d] < 0) continue;
            reachedAtDepth[d]++;
            if (depthFlags[d] > 0) acceptedAtDepth[d]++;
        }
    }

    void addTimes(double draft, double verify, double other) {
        draftSeconds += draft;
        verifySeconds += verify;
        otherSeconds += other;
    }

    void recordPrompt(int tokens, double seconds) {
        promptTokens += tokens;
        promptSeconds += seconds;
    }

    /** Adds another request's figures to these. */
    public synchronized SpecStats add(SpecStats o) {
        steps += o.steps;
        tokens += o.tokens;
        for (int i = 0; i <= MAX_DEPTH; i++) {
            reachedAtDepth[i] += o.reachedAtDepth[i];
            acceptedAtDepth[i] += o.acceptedAtDepth[i];
            acceptedLengthHistogram[i] += o.acceptedLengthHistogram[i];
        }
        draftSeconds += o.draftSeconds;
        verifySeconds += o.verifySeconds;
        otherSeconds += o.otherSeconds;
        promptSeconds += o.promptSeconds;
        promptTokens += o.promptTokens;
        return this;
    }

    public long steps() {
        return steps;
    }

    public long tokens() {
        return tokens;
    }

    /** Tokens per verify step, bonus included. */
    public double meanAccepted() {
        return steps == 0 ? 0 : (double) tokens / steps;
    }

    /** Of the steps whose walk reached depth d (1-based), the fraction that accepted a token there. */
    public double acceptanceAtDepth(int d) {
        return reachedAtDepth[d] == 0 ? Double.NaN : (double) acceptedAtDepth[d] / reachedAtDepth[d];
    }

    /** Steps that accepted exactly n draft tokens. */
    public long[] acceptedLengthHistogram() {
        int last = 0;
        for (int i = 0; i <= MAX_DEPTH; i++) if (acceptedLengthHistogram[i] > 0) last = i;
        return Arrays.copyOf(acceptedLengthHistogram, last + 1);
    }

    public double draftSeconds() {
        return draftSeconds;
    }

    public double verifySeconds() {
        return verifySeconds;
    }

    public double otherSeconds() {
        return otherSeconds;
    }

    public double generateSeconds() {
        return draftSeconds + verifySeconds + otherSeconds;
    }

    public double promptSeconds() {
        return promptSeconds;
    }

    public long promptTokens() {
        return promptTokens;
    }

    public double tokensPerSecond() {
        double s = generateSeconds();
        return s > 0 ? tokens / s : 0;
    }

    public int maxDepthReached() {
        int last = 0;
        for (int d = 1; d <= MAX_DEPTH; d++) if (reachedAtDepth[d] > 0) last = d;
        return last;
    }
}
