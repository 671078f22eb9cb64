package dev.specula.policies;

import dev.specula.engine.DraftPolicy;
import dev.specula.engine.DraftTree;
import dev.specula.nativeapi.NativeModel;
import dev.specula.nativeapi.VerifyResult;
import dev.specula.tokenizer.Tokenizer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.function.Supplier;

/**
 * Speculative sampling with a draft model (SpS; Leviathan et al. 2023, Chen et al. 2023): a smaller model
 * with the target's tokenizer drafts a chain greedily, token by token, in its own KV cache.
 *
 * <p>Drafts are the drafter's argmax, i.e. deterministic: the engine verifies them as point masses, which
 * keeps both greedy and sampled verification exactly lossless whatever the drafter is.
 *
 * <p>Draft length: fixed ({@link Options#fixed}), or SpecDec++ adaptive ({@link Options#adaptive}): an
 * {@link AcceptancePredictor} scores each drafted token and drafting stops once the predicted probability
 * that at least one drafted token is rejected, 1 - prod p_i, exceeds a threshold; the predictor learns from
 * every verification. In both modes drafting also stops when the drafter's top probability falls below
 * {@link Options#minConfidence} and when the engine's node budget is spent.
 *
 * <p>Optionally (LLMCad-style, {@link Options#branchDepth} > 0) the drafter's second choice at each of the
 * first depths is added as a leaf sibling of the chain token: a wider tree for no extra draft forwards.
 *
 * <p>Each draft step needs only the drafter's two most likely tokens, their probabilities and the entropy
 * ({@link TopTokens}): off the cpu backend they are computed on the device, so a step brings back a few
 * numbers instead of a logits row (see {@link dev.specula.nativeapi.Context#devicePathsByDefault}).
 *
 * <p>One instance drafts for one sequence: it owns the draft model's KV cache for it. Make one per request
 * with {@link #factory}; close it (or its context) to free the cache. The predictor may be shared.
 */
public final class DraftModelPolicy implements DraftPolicy, AutoCloseable {

    /**
     * @param maxDraft       the most chain tokens per step
     * @param minConfidence  stop before a token whose drafter top-1 probability is below this (0: never)
     * @param branchDepth    at chain depths 1..branchDepth also propose the drafter's second choice (0: a chain)
     * @param predictor      SpecDec++ stopping and online learning; null for fixed-length drafting
     * @param stopThreshold  stop once 1 - prod p_i exceeds this (with a predictor)
     * @param capacity       positions of the draft model's KV cache (at least the target's context)
     */
    public record Options(int maxDraft, float minConfidence, int branchDepth, AcceptancePredictor predictor,
                          double stopThreshold, int capacity) {
        public Options {
            if (maxDraft < 1) throw new IllegalArgumentException("maxDraft must be >= 1, got " + maxDraft);
            if (!(minConfidence >= 0f && minConfidence < 1f)) throw new IllegalArgumentException("minConfidence must be in [0, 1), got " + minConfidence);
            if (branchDepth < 0) throw new IllegalArgumentException("branchDepth must be >= 0, got " + branchDepth);
            if (!(stopThreshold > 0 && stopThreshold < 1)) throw new IllegalArgumentException("stopThreshold must be in (0, 1), got " + stopThreshold);
            if (capacity < 2) throw new IllegalArgumentException("capacity must be >= 2, got " + capacity);
        }

        /** Always d chain tokens (within the node budget): the baseline the adaptive mode is compared with. */
        public static Options fixed(int d, int capacity) {
            return new Options(d, 0f, 0, null, 0.7, capacity);
        }

        /** SpecDec++ stopping at threshold 0.7, up to 16 tokens, never below top-1 probability 0.05. */
        public static Options adaptive(AcceptancePredictor predictor, int capacity) {
            return new Options(16, 0.05f, 0, predictor, 0.7, capacity);
        }

        public Options withBranchDepth(int depth) {
            return new Options(maxDraft, minConfidence, depth, predictor, stopThreshold, capacity);
        }

        public Options withStopThreshold(double threshold) {
            return new Options(maxDraft, minConfidence, branchDepth, predictor, threshold, capacity);
        }

        public Options withMinConfidence(float floor) {
            return new Options(maxDraft, floor, branchDepth, predictor, stopThreshold, capacity);
        }
    }

    private final NativeModel draft;
    private final Options options;
    private final int vocabLimit;
    private final boolean deviceSummaries;
    private DraftCache cache;

    // The last proposal's chain, for learning: node index and predictor features of each chain token.
    private int[] chainNodes = new int[0];
    private final List<double[]> chainFeatures = new ArrayList<>();

    /**
     * Checks that the tokenizers agree (IllegalArgumentException naming the first differing token otherwise).
     * The draft model's KV cache is made on first use.
     */
    public DraftModelPolicy(NativeModel target, Tokenizer targetTokenizer, NativeModel draft, Tokenizer draftTokenizer, Options options) {
        this(target, draft, options, draft.context().devicePathsByDefault());
        requireSameTokenizer(targetTokenizer, draftTokenizer);
    }

    /** deviceSummaries: read the drafter's logits as device summaries (true) or whole rows on the host (false). */
    DraftModelPolicy(NativeModel target, NativeModel draft, Options options, boolean deviceSummaries) {
        this.draft = draft;
        this.options = options;
        this.deviceSummaries = deviceSummaries;
        // Models may pad their embeddings differently; only ids both have can be drafted and verified.
        this.vocabLimit = Math.min(target.shape().nVocab(), draft.shape().nVocab());
    }

    /** Rows of vocabulary logits one sequence's policy keeps on the device (beside its draft KV cache of capacity positions). */
    public static int deviceLogitsRows() {
        return DraftCache.logitsRows(0, 1);
    }

    /** Checks the tokenizers once and then makes a fresh policy (with its own draft KV cache) per call. */
    public static Supplier<DraftModelPolicy> factory(NativeModel target, Tokenizer targetTokenizer, NativeModel draft,
                                                     Tokenizer draftTokenizer, Options options) {
        requireSameTokenizer(targetTokenizer, draftTokenizer);
        boolean deviceSummaries = draft.context().devicePathsByDefault();
        return () -> new DraftModelPolicy(target, draft, options, deviceSummaries);
    }

    /**
     * Throws IllegalArgumentException unless both tokenizers have the same size and, for every id, the same
     * token text and bytes: a draft token must mean the same text to the target.
     */
    public static void requireSameTokenizer(Tokenizer target, Tokenizer draft) {
        if (target.vocabSize() != draft.vocabSize())
            throw new IllegalArgumentException("the draft model's tokenizer differs from the target's: "
                    + draft.vocabSize() + " tokens against the target's " + target.vocabSize());
        for (int id = 0; id < target.vocabSize(); id++) {
            String a = target.tokenText(id), b = draft.tokenText(id);
            if (!a.equals(b) || !Arrays.equals(target.tokenBytes(id, true), draft.tokenBytes(id, true)))
                throw new IllegalArgumentException("the draft model's tokenizer differs from the target's at token " + id
                        + ": '" + b + "' in the draft, '" + a + "' in the target");
        }
    }

    public Options options() {
        return options;
    }

    @Override
    public String name() {
        return "draft-model";
    }

    /**
     * Fills the draft model's cache with the prompt (all but its last token, the first root); what {@link #prefillChunk}
     * already put there stays.
     */
    @Override
    public void prefill(int[] prompt, int length) {
        if (cache == null) cache = newCache();
        if (length >= 2 && length - 1 < cache.capacity()) cache.fill(prompt, length - 1);
    }

    /** The target's chunk of the prompt, into the draft model's cache too. */
    @Override
    public void prefillChunk(int[] prompt, int from, int to) {
        if (cache == null) cache = newCache();
        if (to < cache.capacity()) cache.fill(prompt, to);
    }

    /** Positions the draft model's cache holds (0 before its first use). */
    int draftCacheLength() {
        return cache == null ? 0 : cache.length();
    }

    @Override
    public DraftTree propose(int[] history, int length, int maxTreeNodes) {
        int root = history[length - 1];
        chainNodes = new int[0];
        chainFeatures.clear();
        if (cache == null) cache = newCache();
        // The cache must hold the history, the root and all but the last drafted token.
        int room = cache.capacity() - length;
        if (maxTreeNodes <= 1 || room < 1) return DraftTree.rootOnly(root);

        int[] tokens = new int[maxTreeNodes], parents = new int[maxTreeNodes];
        float[] probs = new float[maxTreeNodes];
        tokens[0] = root;
        parents[0] = -1;
        probs[0] = 1f;
        int n = 1;
        int[] chain = new int[options.maxDraft()];
        List<double[]> feats = new ArrayList<>();
        int depth = 0, parent = 0;
        double allAccepted = 1; // predicted P(every chain token so far is accepted)

        TopTokens top = cache.advanceTo(history, length);
        while (depth < options.maxDraft() && n < maxTreeNodes) {
            if (top.p1() < options.minConfidence()) break;
            // Drafts are the argmax: deterministic, so the engine's point-mass verification stays lossless.
            tokens[n] = top.first();
            parents[n] = parent;
            probs[n] = 1f;
            chain[depth] = n;
            int node = n++;
            depth++;
            double[] x = AcceptancePredictor.features(top, depth);
            feats.add(x);
            if (depth <= options.branchDepth() && n < maxTreeNodes && top.second() >= 0) {
                tokens[n] = top.second();
                parents[n] = parent;
                probs[n] = 1f;
                n++;
            }
            parent = node;
            if (options.predictor() != null) {
                // SpecDec++: keep this token, then stop once a rejection somewhere is more likely than the threshold.
                allAccepted *= options.predictor().predict(x);
                if (1 - allAccepted > options.stopThreshold()) break;
            }
            if (depth >= options.maxDraft() || n >= maxTreeNodes || depth >= room) break;
            top = cache.append(top.first());
        }
        chainNodes = Arrays.copyOf(chain, depth);
        chainFeatures.addAll(feats);
        return new DraftTree(Arrays.copyOf(tokens, n), Arrays.copyOf(parents, n), Arrays.copyOf(probs, n));
    }

    /** Teaches the predictor which chain tokens were accepted. The draft cache is corrected lazily, next propose. */
    @Override
    public void observe(DraftTree tree, VerifyResult result) {
        if (options.predictor() == null || chainNodes.length == 0) return;
        int[] path = result.path();
        int accepted = 0;
        while (accepted < chainNodes.length && accepted + 1 < path.length && path[accepted + 1] == chainNodes[accepted]) accepted++;
        options.predictor().learnChain(chainFeatures, accepted);
        chainNodes = new int[0];
        chainFeatures.clear();
    }

    private DraftCache newCache() {
        return new DraftCache(draft, 0, options.capacity(), 1, vocabLimit, deviceSummaries);
    }

    @Override
    public void close() {
        if (cache != null) cache.close();
        cache = null;
    }
}
