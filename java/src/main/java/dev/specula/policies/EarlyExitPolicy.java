package dev.specula.policies;

import dev.specula.engine.DraftPolicy;
import dev.specula.engine.DraftTree;
import dev.specula.nativeapi.DeviceBuffer;
import dev.specula.nativeapi.ForwardArgs;
import dev.specula.nativeapi.KvCache;
import dev.specula.nativeapi.NativeModel;
import dev.specula.nativeapi.VerifyResult;
import java.util.Arrays;
import java.util.TreeSet;
import java.util.function.Supplier;

/**
 * Self-speculation by early exit, choosing the exit layer and draft length per step (DEL, "Dynamic Exit
 * Layer", arXiv 2504.05598, after LayerSkip): the target's first E layers, then its output norm and LM head,
 * draft a greedy chain; the whole target verifies it. No second model, no training.
 *
 * <p><b>KV caches.</b> Drafting runs spec_forward with exit_layer = E and stop_at_exit, so the drafted and
 * caught-up positions hold KV for layers [0, E) only. Such a cache is valid for drafting with that E and no
 * other, so the policy keeps one cache per candidate E, each kept equal to a prefix of the sequence the way
 * {@link DraftModelPolicy} keeps its draft cache: rejected drafts truncated away, missing tokens forwarded as
 * a chain. A cache not used for a while is caught up when its E is next chosen.
 *
 * <p><b>Acceptance estimates.</b> For each candidate E the policy keeps a (discounted) estimate a_E of the
 * probability that a drafted token is accepted given the previous one was. Two sources feed it:
 * <ul>
 *   <li>the chosen E's own drafts: every chain token verification reached counts as accepted or rejected;</li>
 *   <li>shadow passes, every {@code shadowEvery} steps, for the other candidates (those that did not draft
 *       since the last pass). A candidate's exit head predicts generated tokens and each prediction is compared
 *       with the token that actually followed. Generated tokens are the target's own choices (under sampling
 *       its samples, which a deterministic draft matches exactly as often as it would be accepted), so the hit
 *       rate estimates a_E. Two ways, by {@code shadowWindow}:
 *       <ul>
 *         <li>0, exact (the default): the candidate's own cache is caught up to the sequence, in chunks of up
 *             to {@value #ROWS} tokens with exit logits for every row, and each newly caught-up generated token
 *             is scored with its full context. This also keeps every candidate's cache current, so switching
 *             E costs nothing extra. Its price is E layers per generated token per candidate; batched, on a
 *             GPU that is about one E-layer pass per shadow pass, but on a CPU it is real compute.</li>
 *         <li>w > 0, windowed: the last w tokens, led by the sequence's first token (an attention sink), run
 *             through the first E layers on a scratch cache at their true positions; the second half of the
 *             window is scored. Bounded cost (w tokens per candidate per pass) whatever the generation rate,
 *             but without the older context the estimates come out pessimistic: in the tests (a random 4-layer
 *             model, 16-token windows) about 0.15 for an exit whose drafts were accepted 0.29 of the time.</li>
 *       </ul></li>
 * </ul>
 *
 * <p><b>Choice.</b> Each step takes the E and length d (0..maxDraft, within the node budget) that maximise
 * expected tokens per unit of layer cost: E[tokens] = (1 - a^(d+1)) / (1 - a) (accepted drafts plus the
 * bonus token), cost = d * E + n_layer (d draft passes of E layers, one verify pass of the whole model).
 * d = 0 is plain decoding; shadow passes keep the estimates fresh, so speculation comes back when it pays.
 * With {@link Options#fixedDraft} > 0 and a single candidate the policy always drafts that many tokens at that E.
 *
 * <p>Drafts and shadow scores need only each exit row's argmax ({@link TopTokens}): off the cpu backend it is
 * found on the device, so a draft step brings back a few numbers instead of a logits row (see
 * {@link dev.specula.nativeapi.Context#devicePathsByDefault}).
 *
 * <p>One instance serves one sequence: make one per request ({@link #factory}) and close it to free its caches.
 */
public final class EarlyExitPolicy implements DraftPolicy, AutoCloseable {
    /** Rows of exit logits per forward: the longest chunk a cache is caught up in with every prediction read. */
    static final int ROWS = 32;

    /**
     * @param exitLayers   candidate exit layers, each in 1..n_layer
     * @param maxDraft     the longest chain
     * @param fixedDraft   0 to choose d each step; else always draft this many tokens (at the best E)
     * @param shadowEvery  steps between shadow passes (0: never; then only the chosen E learns)
     * @param shadowWindow 0: exact shadow passes on each candidate's own cache; else tokens per windowed pass
     * @param capacity     positions of each draft cache (at least the target's context)
     */
    public record Options(int[] exitLayers, int maxDraft, int fixedDraft, int shadowEvery, int shadowWindow, int capacity) {
        public Options {
            if (exitLayers.length == 0) throw new IllegalArgumentException("need at least one candidate exit layer");
            exitLayers = exitLayers.clone();
            if (maxDraft < 1) throw new IllegalArgumentException("maxDraft must be >= 1, got " + maxDraft);
            if (fixedDraft < 0) throw new IllegalArgumentException("fixedDraft must be >= 0, got " + fixedDraft);
            if (shadowEvery < 0) throw new IllegalArgumentException("shadowEvery must be >= 0, got " + shadowEvery);
            if (shadowWindow < 0 || shadowWindow == 1) throw new IllegalArgumentException("shadowWindow must be 0 (exact) or >= 2, got " + shadowWindow);
            if (capacity < 2) throw new IllegalArgumentException("capacity must be >= 2, got " + capacity);
        }

        /** Candidates n_layer/4, n_layer/2 and 3 n_layer/4, up to 8 tokens, an exact shadow pass every 8 steps. */
        public static Options dynamic(int nLayer, int capacity) {
            TreeSet<Integer> set = new TreeSet<>();
            for (int q = 1; q <= 3; q++) set.add(Math.max(1, nLayer * q / 4));
            return new Options(set.stream().mapToInt(Integer::intValue).toArray(), 8, 0, 8, 0, capacity);
        }

        /** Always d tokens from exit layer e: no choosing, no shadow passes. */
        public static Options fixed(int e, int d, int capacity) {
            return new Options(new int[] {e}, d, d, 0, 0, capacity);
        }
    }

    private final NativeModel target;
    private final Options options;
    private final int nLayer;
    private final DraftCache[] caches; // one per candidate, made on first use
    private KvCache shadowKv;          // scratch cache for shadow passes
    private DeviceBuffer shadowLogits; // their exit logits, one row per window token
    private TopTokenReader shadowReader;
    private final boolean deviceSummaries; // read exit logits as device summaries, not host rows
    private final Estimates estimates; // a_E per candidate, maybe shared with other sequences
    private final int[] chosenCount;
    private final long[] lastDrafted; // the step each candidate last drafted at
    private long steps;
    private int promptLength = -1; // the history's length at the first step: tokens from there on are the target's

    // The last proposal, for learning.
    private int lastCandidate = -1;
    private int lastDraft;

    /**
     * The acceptance estimates a_E of a set of candidate exit layers: discounted hit rates, so that about the
     * last 1 / (1 - DECAY) observations count. Thread-safe: sequences of one target and one set of candidates
     * share them (through {@link #factory}), so what one request learned serves the next.
     */
    public static final class Estimates {
        private static final double DECAY = 0.97;
        private final double[] a;

        /** Priors before any evidence: deeper exits agree more with the full model. */
        public Estimates(int[] exitLayers, int nLayer) {
            a = new double[exitLayers.length];
            for (int i = 0; i < a.length; i++) a[i] = 0.3 + 0.6 * exitLayers[i] / nLayer;
        }

        public synchronized double[] values() {
            return a.clone();
        }

        public synchronized void update(int candidate, boolean hit) {
            a[candidate] = DECAY * a[candidate] + (1 - DECAY) * (hit ? 1 : 0);
        }

        int size() {
            return a.length;
        }
    }

    /**
     * Rows of vocabulary logits one sequence's policy may keep on the device when it drafts on the target's own
     * KV cache, as the engine lets it: one exit step's row, and a windowed shadow pass's rows (exact shadow
     * passes use a cache per candidate instead, see {@link #deviceKvPositions}).
     */
    public static int deviceLogitsRows(Options o) {
        return 1 + (o.shadowWindow() > 0 ? shadowRows(o) : o.exitLayers().length * DraftCache.logitsRows(1, ROWS));
    }

    /** Positions of the target's KV caches one sequence's policy may keep of its own: the windowed pass's, or a cache per candidate. */
    public static int deviceKvPositions(Options o) {
        return o.shadowWindow() > 0 ? shadowRows(o) : o.exitLayers().length * o.capacity();
    }

    private static int shadowRows(Options o) {
        return o.shadowWindow() + 1;
    }

    /** IllegalArgumentException when an exit layer is outside 1..n_layer. Estimates of its own. */
    public EarlyExitPolicy(NativeModel target, Options options) {
        this(target, options, null);
    }

    /** As above, sharing estimates (null: its own) with other sequences of the same target and candidates. */
    public EarlyExitPolicy(NativeModel target, Options options, Estimates estimates) {
        this(target, options, estimates, target.context().devicePathsByDefault());
    }

    /** deviceSummaries: read exit logits as device summaries (true) or whole rows on the host (false). */
    EarlyExitPolicy(NativeModel target, Options options, Estimates estimates, boolean deviceSummaries) {
        this.target = target;
        this.deviceSummaries = deviceSummaries;
        this.options = options;
        this.nLayer = target.shape().nLayer();
        for (int e : options.exitLayers())
            if (e < 1 || e > nLayer)
                throw new IllegalArgumentException("exit layer " + e + " is out of range: the target has " + nLayer + " layers (use 1.." + nLayer + ")");
        int k = options.exitLayers().length;
        caches = new DraftCache[k];
        chosenCount = new int[k];
        lastDrafted = new long[k];
        Arrays.fill(lastDrafted, Long.MIN_VALUE / 2);
        if (estimates == null) estimates = new Estimates(options.exitLayers(), nLayer);
        if (estimates.size() != k) throw new IllegalArgumentException("the estimates are for " + estimates.size() + " candidates, the options have " + k);
        this.estimates = estimates;
    }

    /**
     * Checks the options once, then makes a fresh policy (with its own caches) per call; all of them share one
     * set of acceptance estimates.
     */
    public static Supplier<EarlyExitPolicy> factory(NativeModel target, Options options) {
        Estimates shared = new EarlyExitPolicy(target, options).estimates; // validates; makes no caches
        return () -> new EarlyExitPolicy(target, options, shared);
    }

    public Estimates estimates() {
        return estimates;
    }

    @Override
    public String name() {
        return "early-exit";
    }

    /** Where the target's tokens start, known before the first step (which the budget may not show this policy). */
    @Override
    public void prefill(int[] prompt, int length) {
        if (promptLength < 0) promptLength = length;
    }

    /** The current acceptance estimate of each candidate exit layer, in the order of {@link Options#exitLayers}. */
    public double[] acceptanceEstimates() {
        return estimates.values();
    }

    /** How many steps drafted with each candidate. */
    public int[] timesChosen() {
        return chosenCount.clone();
    }

    @Override
    public DraftTree propose(int[] history, int length, int maxTreeNodes) {
        return propose(history, length, maxTreeNodes, null);
    }

    /**
     * Drafts with the first E layers. Given the target's own KV cache, the draft runs on it: the committed
     * prefix's first E layers hold exactly what an E-layer drafter computes, so nothing is recomputed; the
     * drafted tokens are committed with KV for those layers only and truncated away before returning. Without
     * it, the candidate's own cache is caught up instead.
     */
    @Override
    public DraftTree propose(int[] history, int length, int maxTreeNodes, KvCache targetKv) {
        int root = history[length - 1];
        lastCandidate = -1;
        lastDraft = 0;
        steps++;
        if (promptLength < 0) promptLength = length;
        int maxD = Math.min(options.maxDraft(), Math.min(maxTreeNodes - 1, options.capacity() - length));
        boolean reuse = targetKv != null && targetKv.model() == target && targetKv.length() == length - 1;
        if (reuse) maxD = Math.min(maxD, targetKv.capacity() - length);
        // No shadow passes while the engine allows no draft: they would cost without serving a choice.
        if (maxD < 1) return DraftTree.rootOnly(root);
        if (options.shadowEvery() > 0 && steps % options.shadowEvery() == 0) {
            if (options.shadowWindow() == 0) exactShadowPass(history, length);
            else windowedShadowPass(history, length);
        }
        int[] choice = choose(estimates.values(), options.exitLayers(), nLayer, maxD, options.fixedDraft());
        int best = choice[0], bestD = choice[1];
        if (bestD == 0) return DraftTree.rootOnly(root);

        int[] guesses = new int[bestD];
        // Argmax: deterministic drafts keep the engine's point-mass verification lossless.
        if (reuse) {
            int base = targetKv.length();
            try {
                TopTokens top = exitStep(targetKv, root, options.exitLayers()[best]);
                for (int d = 0; d < bestD; d++) {
                    guesses[d] = top.first();
                    if (d + 1 < bestD) top = exitStep(targetKv, guesses[d], options.exitLayers()[best]);
                }
            } finally {
                targetKv.truncate(base);
            }
        } else {
            DraftCache cache = cache(best);
            TopTokens top = cache.advanceTo(history, length);
            for (int d = 0; d < bestD; d++) {
                guesses[d] = top.first();
                if (d + 1 < bestD) top = cache.append(guesses[d]);
            }
        }
        lastCandidate = best;
        lastDraft = bestD;
        chosenCount[best]++;
        lastDrafted[best] = steps;
        return DraftTree.chain(root, guesses);
    }

    private DeviceBuffer stepLogits;
    private TopTokenReader stepReader;

    /** One token through the first exitLayer layers of kv's model, committed; returns what its exit logits say. */
    private TopTokens exitStep(KvCache kv, int token, int exitLayer) {
        int vocab = target.shape().nVocab();
        if (stepLogits == null) {
            stepLogits = target.context().allocate((long) vocab * Float.BYTES);
            stepReader = new TopTokenReader(stepLogits, vocab, vocab, deviceSummaries);
        }
        target.forward(kv, new ForwardArgs(new int[] {token}, null, null, ForwardArgs.LogitsMode.NONE, null, exitLayer, null,
                stepLogits, true, 0));
        kv.commitChain(1);
        return stepReader.row(0);
    }

    /**
     * The candidate index and draft length d in 0..maxD with the most expected tokens per layer of compute;
     * d = 0 (plain decoding) unless some draft beats it. fixedDraft > 0 forces d = min(fixedDraft, maxD) and
     * only picks the candidate.
     */
    static int[] choose(double[] acceptance, int[] exitLayers, int nLayer, int maxD, int fixedDraft) {
        int best = 0, bestD = 0;
        if (fixedDraft > 0) {
            int d = Math.min(fixedDraft, maxD);
            for (int i = 1; i < acceptance.length; i++)
                if (value(acceptance[i], d, exitLayers[i], nLayer) > value(acceptance[best], d, exitLayers[best], nLayer)) best = i;
            return new int[] {best, d};
        }
        double bestValue = 1.0 / nLayer; // d = 0: one token for one pass of the target
        for (int i = 0; i < acceptance.length; i++) {
            for (int d = 1; d <= maxD; d++) {
                double v = value(acceptance[i], d, exitLayers[i], nLayer);
                if (v > bestValue) {
                    bestValue = v;
                    best = i;
                    bestD = d;
                }
            }
        }
        return new int[] {best, bestD};
    }

    /**
     * Expected tokens per layer of compute: (1 - a^(d+1)) / (1 - a) tokens (accepted drafts and the bonus) for
     * d passes of e layers and one verify pass of all nLayer.
     */
    static double value(double a, int d, int e, int nLayer) {
        double tokens = a >= 1 ? d + 1 : (1 - Math.pow(a, d + 1)) / (1 - a);
        return tokens / ((double) d * e + nLayer);
    }

    /** The chosen E learns from its own drafts: the accepted ones, then the first rejected one. */
    @Override
    public void observe(DraftTree tree, VerifyResult result) {
        if (lastCandidate < 0) return;
        int accepted = Math.min(result.nAccepted(), lastDraft);
        for (int i = 0; i < accepted; i++) update(lastCandidate, true);
        if (accepted < lastDraft) update(lastCandidate, false);
        lastCandidate = -1;
    }

    private void update(int candidate, boolean hit) {
        estimates.update(candidate, hit);
    }

    /**
     * See the class comment: each candidate that has not drafted since the last pass catches its own cache up
     * to the sequence (all but the root), scoring its prediction of every generated token it newly sees.
     */
    private void exactShadowPass(int[] history, int length) {
        for (int c = 0; c < caches.length; c++) {
            if (steps - lastDrafted[c] <= options.shadowEvery()) continue; // its own drafts teach it
            int candidate = c;
            cache(c).catchUp(history, length - 1, length, promptLength,
                    (next, prediction) -> update(candidate, prediction.first() == history[next]));
        }
    }

    /** See the class comment: every candidate's exit head predicts the last tokens of a short window. */
    private void windowedShadowPass(int[] history, int length) {
        int window = Math.min(options.shadowWindow(), length);
        if (window < 2 || length - promptLength < 2) return;
        int vocab = target.shape().nVocab();
        if (shadowKv == null) {
            shadowKv = target.newKvCache(shadowRows(options));
            shadowLogits = target.context().allocate((long) shadowRows(options) * vocab * Float.BYTES);
            shadowReader = new TopTokenReader(shadowLogits, vocab, vocab, deviceSummaries);
        }
        // The sequence's first token leads the window, at position 0: models lean on it as an attention sink
        // (StreamingLLM), and without it windowed predictions are much worse than those with full context.
        int start = length - window;
        boolean sink = start > 0;
        int lead = sink ? 1 : 0;
        int n = window + lead;
        int[] chain = new int[n];
        int[] positions = new int[n];
        if (sink) chain[0] = history[0];
        for (int i = 0; i < window; i++) {
            chain[lead + i] = history[start + i];
            positions[lead + i] = start + i; // true positions: RoPE sees the real offsets
        }
        // Only the target's own choices say what a draft would have needed to be, not the prompt's tokens.
        int scoredFrom = Math.max(lead + window / 2, promptLength - 1 - start + lead);
        if (scoredFrom >= n - 1) return;
        for (int c = 0; c < options.exitLayers().length; c++) {
            if (steps - lastDrafted[c] <= options.shadowEvery()) continue; // its own drafts teach it
            shadowKv.truncate(0);
            target.forward(shadowKv, new ForwardArgs(chain, null, positions, ForwardArgs.LogitsMode.NONE, null,
                    options.exitLayers()[c], null, shadowLogits, true, 0));
            TopTokens[] predictions = shadowReader.rows(scoredFrom, n - 1 - scoredFrom);
            for (int i = scoredFrom; i < n - 1; i++) update(c, predictions[i - scoredFrom].first() == chain[i + 1]);
        }
        shadowKv.truncate(0);
    }

    private DraftCache cache(int candidate) {
        if (caches[candidate] == null)
            caches[candidate] = new DraftCache(target, options.exitLayers()[candidate], options.capacity(), ROWS, target.shape().nVocab(),
                    deviceSummaries);
        return caches[candidate];
    }

    @Override
    public void close() {
        for (int i = 0; i < caches.length; i++) {
            if (caches[i] != null) caches[i].close();
            caches[i] = null;
        }
        if (shadowReader != null) shadowReader.close();
        if (stepReader != null) stepReader.close();
        if (shadowKv != null) shadowKv.close();
        if (shadowLogits != null) shadowLogits.close();
        if (stepLogits != null) stepLogits.close();
        stepLogits = null;
        stepReader = null;
        shadowReader = null;
        shadowKv = null;
        shadowLogits = null;
    }
}
