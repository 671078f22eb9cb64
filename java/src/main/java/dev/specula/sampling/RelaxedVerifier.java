package dev.specula.sampling;

import dev.specula.nativeapi.VerifyResult;
import java.util.Arrays;

/**
 * Relaxed, LOSSY tree verification, in Java on the host: it accepts drafted tokens that plain greedy decoding
 * would not have produced, trading fidelity for longer accepted runs. Opt in per request with
 * {@code DecodeLoop.Request.withRelaxedVerifier}; the output is no longer that of plain decoding.
 *
 * <p>Both modes walk the tree down from the root. At the current node n, p_n is the softmax of the target's
 * (filtered) logits row at n at this verifier's temperature; a child is judged by its token x:
 * <ul>
 * <li>{@link VerifyMode#TYPICAL} (Medusa's typical acceptance): x is acceptable iff
 *     {@code p_n(x) > min(epsilon, delta * exp(-H(p_n)))}, H the entropy in nats. The target's argmax always
 *     passes (exp(-H) <= max p), so on the same tree TYPICAL accepts at least as many tokens as greedy.</li>
 * <li>{@link VerifyMode#LANTERN} (neighbourhood acceptance, arXiv 2410.03355, greedy form): with y the
 *     target's greedy choice at n (argmax of the logits, lowest id among equals), x is acceptable iff
 *     {@code x == y}, or {@code delta > 0}, x is among y's k nearest embedding neighbours and
 *     {@code p_n(y) - p_n(x) <= delta}. The bound is a total-variation bound: emitting x is exactly the greedy
 *     choice of p'_n, p_n with the probabilities of x and y exchanged, and
 *     {@code TV(p_n, p'_n) = p_n(y) - p_n(x)}, so each relaxed step emits the mode of a distribution within
 *     TV distance delta of the target's. delta = 0 is exactly greedy.</li>
 * </ul>
 * A token whose logit is {@code -Infinity} (masked by a {@link CandidateFilter}) is never accepted. Among
 * several acceptable children the walk takes the target's argmax if it is one, else the most probable (lowest
 * node index among equals); it stops at a node with no acceptable child. The bonus token is the target's
 * argmax at the last accepted node (a greedy bonus), so requests using a relaxed verifier must sample greedily.
 */
public final class RelaxedVerifier {
    public static final double TYPICAL_EPSILON = 0.09;
    public static final double TYPICAL_DELTA = 0.3;
    public static final double LANTERN_DELTA = 0.1;

    private final VerifyMode mode;
    private final double epsilon;
    private final double delta;
    private final double temperature;
    private final TokenNeighbours neighbours;

    private RelaxedVerifier(VerifyMode mode, double epsilon, double delta, double temperature, TokenNeighbours neighbours) {
        if (!(temperature > 0) || Double.isInfinite(temperature))
            throw new IllegalArgumentException("the criterion's temperature must be > 0, got " + temperature);
        if (!(delta >= 0)) throw new IllegalArgumentException("delta must be >= 0, got " + delta);
        if (!(epsilon >= 0)) throw new IllegalArgumentException("epsilon must be >= 0, got " + epsilon);
        this.mode = mode;
        this.epsilon = epsilon;
        this.delta = delta;
        this.temperature = temperature;
        this.neighbours = neighbours;
    }

    /** LOSSY typical acceptance with the given threshold parameters and criterion temperature. */
    public static RelaxedVerifier typical(double epsilon, double delta, double temperature) {
        return new RelaxedVerifier(VerifyMode.TYPICAL, epsilon, delta, temperature, null);
    }

    /** LOSSY typical acceptance with Medusa's defaults: epsilon 0.09, delta 0.3, temperature 1. */
    public static RelaxedVerifier typical() {
        return typical(TYPICAL_EPSILON, TYPICAL_DELTA, 1);
    }

    /** LOSSY LANTERN acceptance: neighbours of the greedy token within probability gap (TV) delta; temperature 1. */
    public static RelaxedVerifier lantern(TokenNeighbours neighbours, double delta) {
        if (neighbours == null) throw new IllegalArgumentException("LANTERN needs token neighbours");
        return new RelaxedVerifier(VerifyMode.LANTERN, 0, delta, 1, neighbours);
    }

    public VerifyMode mode() {
        return mode;
    }

    public double epsilon() {
        return epsilon;
    }

    public double delta() {
        return delta;
    }

    public double temperature() {
        return temperature;
    }

    public TokenNeighbours neighbours() {
        return neighbours;
    }

    /** Softmax of row at temperature t, in doubles; -Infinity logits get probability 0. */
    public static double[] softmax(float[] row, double t) {
        double max = Double.NEGATIVE_INFINITY;
        for (float v : row) max = Math.max(max, v);
        double[] p = new double[row.length];
        double sum = 0;
        for (int i = 0; i < row.length; i++) {
            p[i] = row[i] == Float.NEGATIVE_INFINITY ? 0 : Math.exp((row[i] - max) / t);
            sum += p[i];
        }
        for (int i = 0; i < p.length; i++) p[i] /= sum;
        return p;
    }

    /** Entropy in nats. */
    public static double entropy(double[] p) {
        double h = 0;
        for (double v : p) if (v > 0) h -= v * Math.log(v);
        return h;
    }

    /** TYPICAL's acceptance threshold for p: min(epsilon, delta * exp(-H(p))); a token needs more than this. */
    public double typicalThreshold(double[] p) {
        return Math.min(epsilon, delta * Math.exp(-entropy(p)));
    }

    /**
     * Verifies one tree against the target's logits at its nodes.
     *
     * @param tokens  the tree's tokens, node 0 the root
     * @param parents each node's parent (-1 for the root), earlier than the node
     * @param rows    rows[i] is the target's (filtered) logits row at node i, for every node of the tree
     */
    public VerifyResult verify(int[] tokens, int[] parents, float[][] rows) {
        int n = tokens.length;
        int[] flags = new int[n];
        Arrays.fill(flags, -1);
        flags[0] = 1;
        int[] path = new int[n];
        int depth = 0, cur = 0;
        while (true) {
            float[] row = rows[cur];
            int y = Sampler.argmax(row);
            double[] p = softmax(row, temperature);
            double threshold = mode == VerifyMode.TYPICAL ? typicalThreshold(p) : 0;
            int chosen = -1;
            boolean anyChild = false;
            for (int c = cur + 1; c < n; c++) {
                if (parents[c] != cur) continue;
                anyChild = true;
                int x = tokens[c];
                if (x < 0 || x >= row.length || !acceptable(x, y, p, threshold)) continue;
                if (chosen < 0) {
                    chosen = c;
                    continue;
                }
                int best = tokens[chosen];
                if (best != y && (x == y || p[x] > p[best])) chosen = c;
            }
            if (chosen < 0) {
                if (anyChild) flags[depth + 1] = 0;
                break;
            }
            path[++depth] = chosen;
            flags[depth] = 1;
            cur = chosen;
        }
        return new VerifyResult(depth, cur, Sampler.argmax(rows[cur]), Arrays.copyOf(path, depth + 1), flags);
    }

    private boolean acceptable(int x, int y, double[] p, double threshold) {
        if (p[x] <= 0) return false; // masked by a filter (or underflowed)
        return switch (mode) {
            case TYPICAL -> p[x] > threshold;
            case LANTERN -> x == y || (delta > 0 && p[y] - p[x] <= delta && neighbours.contains(y, x));
            default -> throw new IllegalStateException(mode + " is not a relaxed mode");
        };
    }

    @Override
    public String toString() {
        return mode == VerifyMode.TYPICAL
                ? "typical(epsilon=" + epsilon + ", delta=" + delta + ", T=" + temperature + ", LOSSY)"
                : "lantern(k=" + neighbours.k() + ", delta=" + delta + ", LOSSY)";
    }
}
