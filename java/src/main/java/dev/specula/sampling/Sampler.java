package dev.specula.sampling;

import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * Turns one row of logits into a token under {@link SamplingOptions}. Not thread-safe: one per request.
 * {@link #distribution} exposes the shaped distribution itself, which speculative verification and the
 * losslessness tests compare against.
 */
public final class Sampler {
    private final SamplingOptions options;
    private final SplittableRandom random;

    public Sampler(SamplingOptions options) {
        this.options = options;
        this.random = new SplittableRandom(options.seed());
    }

    public SamplingOptions options() {
        return options;
    }

    /** The next token; history holds the tokens so far (prompt and output) for the repetition penalty. */
    public int sample(float[] logits, int[] history, int historyLength) {
        if (options.greedy() && options.repetitionPenalty() == 1f) return argmax(logits);
        double[] p = distribution(logits, history, historyLength, options);
        if (options.greedy()) return argmax(p);
        double u = random.nextDouble();
        double acc = 0;
        int last = -1;
        for (int i = 0; i < p.length; i++) {
            if (p[i] == 0) continue;
            acc += p[i];
            last = i;
            if (u < acc) return i;
        }
        return last; // rounding left u just above the total
    }

    /**
     * Index of the largest value; the lowest index among equals; NaN ranks as negative infinity (a row of only NaN
     * and negative infinities gives 0). This is the order of the native verification ({@code specula.h}: "ties
     * broken by the lower token id, NaN ranks as -inf"), so a greedy token picked here (a lone sequence's plain
     * step) is the one a batch's native call picks from the same row, NaN or not.
     */
    public static int argmax(float[] v) {
        int best = 0;
        float top = rank(v[0]);
        for (int i = 1; i < v.length; i++) {
            float x = rank(v[i]);
            if (x > top) {
                best = i;
                top = x;
            }
        }
        return best;
    }

    /** {@link #argmax(float[])} of doubles: the same order. */
    public static int argmax(double[] v) {
        int best = 0;
        double top = rank(v[0]);
        for (int i = 1; i < v.length; i++) {
            double x = rank(v[i]);
            if (x > top) {
                best = i;
                top = x;
            }
        }
        return best;
    }

    private static float rank(float x) {
        return Float.isNaN(x) ? Float.NEGATIVE_INFINITY : x;
    }

    private static double rank(double x) {
        return Double.isNaN(x) ? Double.NEGATIVE_INFINITY : x;
    }

    /**
     * The probabilities plain sampling draws from: penalty, temperature, top-k, top-p, min-p, in that order.
     * With temperature 0 it is a point mass on the (penalised) argmax.
     */
    public static double[] distribution(float[] logits, int[] history, int historyLength, SamplingOptions o) {
        int n = logits.length;
        double[] z = new double[n];
        for (int i = 0; i < n; i++) z[i] = logits[i];
        if (o.repetitionPenalty() != 1f && history != null) {
            boolean[] seen = new boolean[n];
            for (int i = Math.max(0, historyLength - o.repetitionWindow()); i < historyLength; i++) {
                int t = history[i];
                if (t < 0 || t >= n || seen[t]) continue;
                seen[t] = true;
                z[t] = z[t] > 0 ? z[t] / o.repetitionPenalty() : z[t] * o.repetitionPenalty();
            }
        }
        double[] p = new double[n];
        if (o.greedy()) {
            p[argmax(z)] = 1;
            return p;
        }
        double max = Double.NEGATIVE_INFINITY;
        for (double v : z) max = Math.max(max, v);
        double sum = 0;
        for (int i = 0; i < n; i++) {
            p[i] = Math.exp((z[i] - max) / o.temperature());
            sum += p[i];
        }
        for (int i = 0; i < n; i++) p[i] /= sum;
        if ((o.topK() > 0 && o.topK() < n) || o.topP() < 1f || o.minP() > 0f) truncate(p, o);
        return p;
    }

    private static void truncate(double[] p, SamplingOptions o) {
        int n = p.length;
        Integer[] order = new Integer[n];
        for (int i = 0; i < n; i++) order[i] = i;
        // Most likely first; equal probabilities by token id, so the kept set is well defined.
        Arrays.sort(order, (a, b) -> p[a] != p[b] ? Double.compare(p[b], p[a]) : Integer.compare(a, b));
        int keep = o.topK() > 0 ? Math.min(o.topK(), n) : n;
        if (o.topP() < 1f) {
            double acc = 0;
            for (int r = 0; r < keep; r++) {
                acc += p[order[r]];
                if (acc >= o.topP()) {
                    keep = r + 1;
                    break;
                }
            }
        }
        if (o.minP() > 0f) {
            double floor = o.minP() * p[order[0]];
            int r = 1;
            while (r < keep && p[order[r]] >= floor) r++;
            keep = r;
        }
        double kept = 0;
        for (int r = 0; r < keep; r++) kept += p[order[r]];
        for (int r = keep; r < n; r++) p[order[r]] = 0;
        for (int r = 0; r < keep; r++) p[order[r]] /= kept;
    }
}
