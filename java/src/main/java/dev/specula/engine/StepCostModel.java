package dev.specula.engine;

import java.util.HashMap;
import java.util.Map;

/**
 * The batch's {@link StepPlanner}: a token budget per step and a cost model that gives draft tokens only where
 * they pay.
 *
 * <ol>
 * <li><b>Token budget.</b> A step runs at most {@code stepTokens} tree rows. Every sequence gets its root; the
 *     rest is handed out round-robin, starting one sequence further each step, so that under a tight budget no
 *     sequence always comes last.</li>
 * <li><b>Cost model.</b> The step's measured seconds are fitted against its shape, {@code seconds = fixed + perSequence
 *     * sequences + perRow * rows} (least squares, older steps fading). Each policy's tokens per step are measured
 *     per tree-size bucket. Then, least valuable first (fewest expected extra tokens per draft row), a sequence's
 *     drafts are dropped, down to plain decoding, as long as the batch's expected tokens per second rise without
 *     them. On a memory-bound target the per-row cost is small and drafts stay; once the batch is large enough for
 *     rows to cost nearly what sequences do, a full batch decodes plainly.</li>
 * </ol>
 * Until the fit has seen enough steps, and for a bucket a policy has not been measured at, drafts are kept: that is
 * how they get measured. Every {@value #EXPLORE_EVERY} steps a batch explores: its adaptive sequences' drafts share
 * one whole tree's rows, the next sequence's turn each time, so the fit keeps seeing what rows cost at the price of
 * one tree. A sequence whose budget is not adaptive keeps its drafts, and so does a lone sequence
 * (its {@link SpeculationBudget} already weighs its drafts against plain decoding). Not thread-safe: one scheduler thread plans and observes.
 */
public final class StepCostModel implements StepPlanner {
    /** Steps measured before the cost model trims anything. */
    static final int MIN_SAMPLES = 8;
    /** Weight of the previous fit at each new step: about the last 50 steps count. */
    private static final double FORGET = 0.98;
    /** Every this many steps the drafts run untrimmed, so the fit keeps seeing what rows cost. */
    static final int EXPLORE_EVERY = 16;
    /** Weight of the previous tokens-per-step estimate at each new measurement. */
    private static final double DECAY = 0.8;

    private final int stepTokens;
    private final double[][] xtx = new double[3][3];
    private final double[] xty = new double[3];
    private int samples;
    private final Map<String, double[]> tokensPerStep = new HashMap<>(); // per policy, per bucket of allowed nodes
    private int rotation;
    private long planned;
    private int explored;

    /** stepTokens: the most tree rows one step may run, all sequences together (at least the largest batch). */
    public StepCostModel(int stepTokens) {
        if (stepTokens < 1) throw new IllegalArgumentException("the step's token budget must be >= 1, got " + stepTokens);
        this.stepTokens = stepTokens;
    }

    public int stepTokens() {
        return stepTokens;
    }

    @Override
    public void plan(String[] policies, int[] allowed, boolean[] adaptive) {
        int n = allowed.length;
        if (n == 0) return;
        int[] wish = allowed.clone();
        int start = Math.floorMod(rotation++, n);
        // Until measured, and every EXPLORE_EVERY steps, the wishes run untrimmed: a batch that only ever decodes
        // plainly would run one shape (rows = sequences) and could never learn what its drafts would cost now.
        boolean measuring = samples < MIN_SAMPLES;
        boolean exploring = !measuring && ++planned % EXPLORE_EVERY == 0;
        // An exploring step needs one tree to measure, not every wish at once (at a batch of 16, recycling's trees of
        // 29 nodes made steps of 464 rows, each as dear as dozens of plain steps): the adaptive sequences' drafts
        // then share a budget of one whole tree, the largest wish, handed to the next sequence in turn (a rotation
        // of its own: the planning rotation meets exploring steps at the same place whenever the batch divides
        // EXPLORE_EVERY). Sequences that are not adaptive keep their trees, as in every step.
        int exploreRoom = Integer.MAX_VALUE;
        if (exploring && n > 1) {
            int largest = 1;
            for (int b = 0; b < n; b++) if (adaptive[b]) largest = Math.max(largest, wish[b]);
            exploreRoom = largest - 1;
            start = Math.floorMod(explored++, n);
        }
        int rows = n;
        for (int k = 0; k < n; k++) { // round-robin, from a rotating start: roots first, then drafts while rows remain
            int b = (start + k) % n;
            int room = stepTokens - rows;
            if (adaptive[b]) room = Math.min(room, exploreRoom);
            int extra = Math.max(0, Math.min(wish[b] - 1, room));
            allowed[b] = 1 + extra;
            rows += extra;
            if (adaptive[b] && exploreRoom != Integer.MAX_VALUE) exploreRoom -= extra;
        }
        if (measuring || exploring) return;
        // A lone sequence's drafts are its budget's to weigh: the budget compares the same whole steps against
        // plain decoding, and a trim here would cancel its probes (it would then never see drafts pay again).
        if (n == 1) return;
        // Drafts of a policy not yet measured at their size stay, and are left out of the sums (counted as plain
        // steps), so that their unknown worth does not sway the others' decisions.
        double[] value = new double[n];
        double tokens = 0;
        for (int b = 0; b < n; b++) {
            value[b] = allowed[b] == 1 ? 1 : expectedTokens(policies[b], allowed[b]);
            if (Double.isNaN(value[b])) rows -= allowed[b] - 1;
            tokens += Double.isNaN(value[b]) ? 1 : value[b];
        }
        while (true) {
            // The least valuable speculating sequence (its extra tokens per draft row); the last in this step's
            // round-robin order on ties, so the same sequences are not always the ones to lose their drafts.
            int worst = -1;
            double worstDensity = Double.POSITIVE_INFINITY;
            for (int k = n - 1; k >= 0; k--) {
                int b = (start + k) % n;
                if (allowed[b] == 1 || Double.isNaN(value[b]) || !adaptive[b]) continue;
                double density = (value[b] - 1) / (allowed[b] - 1);
                if (density < worstDensity) {
                    worstDensity = density;
                    worst = b;
                }
            }
            if (worst < 0) return;
            int draftRows = allowed[worst] - 1;
            double with = tokens / seconds(n, rows);
            double without = (tokens - (value[worst] - 1)) / seconds(n, rows - draftRows);
            if (!(without > with)) return;
            tokens -= value[worst] - 1;
            rows -= draftRows;
            allowed[worst] = 1;
        }
    }

    @Override
    public void observe(Outcome o) {
        double[] x = {1, o.sequences(), o.rows()};
        for (int i = 0; i < 3; i++) {
            xty[i] = FORGET * xty[i] + x[i] * o.seconds();
            for (int j = 0; j < 3; j++) xtx[i][j] = FORGET * xtx[i][j] + x[i] * x[j];
        }
        samples++;
        for (int b = 0; b < o.sequences(); b++) {
            if (o.accepted()[b] < 0 || o.allowed()[b] <= 1) continue;
            double[] y = tokensPerStep.computeIfAbsent(o.policies()[b], k -> new double[32]);
            int i = bucket(o.allowed()[b]);
            double got = o.accepted()[b] + 1;
            y[i] = y[i] == 0 ? got : DECAY * y[i] + (1 - DECAY) * got;
        }
    }

    /** Expected tokens per step (bonus included) of a policy allowed this many nodes; NaN where not yet measured. */
    double expectedTokens(String policy, int allowed) {
        double[] y = tokensPerStep.get(policy);
        double v = y == null ? 0 : y[bucket(allowed)];
        return v == 0 ? Double.NaN : v;
    }

    /** The fitted seconds of a step of this many sequences and rows (never below a nanosecond). */
    double seconds(int sequences, int rows) {
        double[] c = coefficients();
        return Math.max(1e-9, c[0] + c[1] * sequences + c[2] * rows);
    }

    /** fixed, perSequence, perRow: the least-squares fit, with a little ridge so that one batch shape still solves. */
    double[] coefficients() {
        double[][] a = new double[3][4];
        double ridge = 1e-6 * (xtx[0][0] + xtx[1][1] + xtx[2][2]) + 1e-300;
        for (int i = 0; i < 3; i++) {
            System.arraycopy(xtx[i], 0, a[i], 0, 3);
            a[i][i] += ridge;
            a[i][3] = xty[i];
        }
        for (int c = 0; c < 3; c++) { // Gauss-Jordan with partial pivoting
            int p = c;
            for (int r = c + 1; r < 3; r++) if (Math.abs(a[r][c]) > Math.abs(a[p][c])) p = r;
            double[] t = a[c];
            a[c] = a[p];
            a[p] = t;
            if (a[c][c] == 0) return new double[3];
            for (int r = 0; r < 3; r++) {
                if (r == c) continue;
                double f = a[r][c] / a[c][c];
                for (int k = c; k < 4; k++) a[r][k] -= f * a[c][k];
            }
        }
        return new double[] {a[0][3] / a[0][0], a[1][3] / a[1][1], a[2][3] / a[2][2]};
    }

    /** Buckets of allowed nodes: 2, 3-4, 5-8, ... (1 is plain decoding, never measured: it yields one token). */
    private static int bucket(int allowed) {
        return Math.min(31, 32 - Integer.numberOfLeadingZeros(Math.max(1, allowed - 1)));
    }
}
