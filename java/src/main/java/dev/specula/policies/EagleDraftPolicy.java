package dev.specula.policies;

import dev.specula.engine.DraftPolicy;
import dev.specula.engine.DraftTree;
import dev.specula.nativeapi.DeviceBuffer;
import dev.specula.nativeapi.ForwardArgs;
import dev.specula.nativeapi.KvCache;
import dev.specula.nativeapi.LogitsSummary;
import dev.specula.nativeapi.NativeModel;
import dev.specula.nativeapi.VerifyResult;
import dev.specula.policies.DraftHeadsPolicy.Node;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.function.Supplier;

/**
 * EAGLE-style drafting (EAGLE-1, arXiv 2401.15077): a draft layer that extrapolates the target's feature sequence (its
 * final hidden states). Row j of the layer's own sequence reads token x[j + 1] with the target's feature f[j] and
 * predicts f[j + 1]; the target's LM head turns a predicted feature into next-token logits. The layer is a native model
 * of its own ({@link NativeModel#eagleForward}) with a KV cache per sequence, so each step runs only the new rows.
 *
 * <p>A step: the rows the target confirmed since the last one (the accepted path's features with the tokens after them,
 * the bonus token last) run as a chain and are committed; the last one's logits give the root's candidates. Then
 * EAGLE-2's dynamic tree: the {@link #BEAM} candidates of each depth with the highest path probability (the product
 * of the layer's probabilities along the path) run as one extension of the layer's pending tree
 * ({@link NativeModel#eagleExtend}: each row a node's token with its parent's predicted feature, attending to the
 * committed rows and its draft ancestors already in the cache, so a depth costs one row per expanded node), and their
 * top-k become the next depth's candidates. The tree is the best-first set of every candidate found, as many as the
 * budget allows. The next step's chain drops the pending draft rows (their features were the layer's guesses) and
 * commits the confirmed ones in their place, as the target's cache keeps its accepted path.
 *
 * <p>Drafts are deterministic given the features (draft probability 1), so greedy and sampled verification stay
 * lossless. One instance per sequence (it holds that sequence's cache); the layer may be shared.
 */
public final class EagleDraftPolicy implements DraftPolicy, AutoCloseable {
    /**
     * The least path probability a node needs to be expanded. Its children's path probabilities sum to at most its own,
     * so below it the node's row of the layer (its fc, decoder layer and the target's LM head, each depth one more call)
     * adds at most 0.02 to the expected accepted tokens through its children, when the layer's probabilities are
     * calibrated.
     */
    public static final double MIN_EXPAND_SCORE = 0.02;
    /** Candidates per expanded node (the device summary's most). */
    static final int TOP_K = Math.min(8, LogitsSummary.MAX_K);
    /**
     * Nodes per depth that are expanded, at most. On the demo target (40 prompts, 96 tokens, trees of 25) a beam of 3
     * with {@link #MIN_EXPAND_SCORE} accepts 3.44 tokens per step running 7.2 draft rows per step, against 3.49 and
     * 15.7 rows for a beam of 4 expanding every node (bench/RESULTS.md, 2026-12-07 "EAGLE drafting cost").
     */
    static final int BEAM = 3;
    /** The deepest draft. */
    static final int MAX_DEPTH = 8;
    /** Confirmed rows kept back while the budget holds the sequence to plain decoding, before they are run anyway. */
    static final int MAX_BACKLOG = 64;
    /**
     * While the budget holds the sequence to plain decoding, the backlog is not run at all: past twice this many rows
     * the layer's cache is given up and only the last this many rows (with their real features) are kept, which the
     * next tree runs first. Running every committed token through the layer (a chain of up to 63 rows every 64
     * tokens, 2-2.4 ms on the loaded demo machine) was paid by a drafter that was not drafting; the price is that a
     * tree after a plain stretch drafts from these rows alone (lossless all the same: drafts are verified).
     */
    public static final int HELD_PLAIN_ROWS = 16;
    /** The most draft rows a step's tree holds in the layer's cache: the beam at every depth. */
    static final int MAX_EXPANSION_ROWS = BEAM * MAX_DEPTH;
    /** The root and 24 candidates, as the heads drafters'; the adaptive budget shrinks it where it does not pay. */
    public static final int LARGEST_TREE = 1 + 24;
    /** Candidates a step's search can find: the root's top-k, then top-k per expanded node. */
    static final int MAX_CANDIDATES = TOP_K * (1 + BEAM * (MAX_DEPTH - 1));
    /** Feature rows before the root's: the backlog (the confirmed rows not yet run). */
    static final int FEATURE_ROWS_BEFORE_CANDIDATES = MAX_BACKLOG + LARGEST_TREE + 1;

    private final String name;
    private final NativeModel layer;
    private final int contextLength;
    private final int nEmbd, vocab;
    private final long rowBytes;
    // The layer's cache and buffers are made when first needed (see resources): a request whose policy the budget
    // holds to plain decoding throughout never makes them.
    private KvCache kv;
    // features: rows [0, MAX_BACKLOG + MAX_DEPTH + 1) confirmed rows not yet run; then ROOT_ROW, then a row per candidate
    private DeviceBuffer features;
    private DeviceBuffer outputs; // a call's final hidden rows (the predicted features)
    private DeviceBuffer logits;  // a call's logits rows
    private final int rootRow, maxCandidates;
    private final double minExpandScore;
    private final List<Integer> backlogTokens = new ArrayList<>(); // the token of each backlog row, the root last
    // Row j of the layer's sequence is history position offset + j: rows before offset were given up (resync).
    private int offset;
    private boolean lost; // out of step with the sequence: the next propose starts over from there
    private boolean heldPlain; // the last propose was allowed no drafts

    public EagleDraftPolicy(String name, NativeModel layer, int contextLength) {
        this(name, layer, contextLength, MIN_EXPAND_SCORE);
    }

    /** minExpandScore: the least path probability of an expanded node (0: every beam node that can reach the tree). */
    public EagleDraftPolicy(String name, NativeModel layer, int contextLength, double minExpandScore) {
        if (!(minExpandScore >= 0 && minExpandScore < 1)) throw new IllegalArgumentException("minExpandScore must be in [0, 1), got " + minExpandScore);
        this.name = name;
        this.minExpandScore = minExpandScore;
        this.layer = layer;
        this.nEmbd = layer.shape().nEmbd();
        this.vocab = layer.shape().nVocab();
        this.rowBytes = (long) nEmbd * Float.BYTES;
        this.rootRow = FEATURE_ROWS_BEFORE_CANDIDATES;
        this.maxCandidates = MAX_CANDIDATES;
        this.contextLength = contextLength;
    }

    /**
     * Makes the layer's cache and buffers on first use (about 1.5 ms a request on the demo target, with their
     * release: a few percent of a short request, which a policy held plain throughout need not pay).
     */
    private void resources() {
        if (kv != null) return;
        var ctx = layer.context();
        KvCache cache = layer.newKvCache(kvPositions(contextLength));
        DeviceBuffer f = null, o = null, l = null;
        try {
            f = ctx.allocate((rootRow + 1L + maxCandidates) * rowBytes);
            o = ctx.allocate((long) Math.max(rootRow, BEAM) * rowBytes);
            l = ctx.allocate((long) deviceLogitsRows() * vocab * Float.BYTES);
        } catch (RuntimeException e) {
            cache.close();
            for (DeviceBuffer b : new DeviceBuffer[] {f, o, l}) if (b != null) b.close();
            throw e;
        }
        this.kv = cache;
        this.features = f;
        this.outputs = o;
        this.logits = l;
    }

    private int cached() {
        return kv == null ? 0 : kv.length();
    }

    /** A fresh policy per request over a shared layer. */
    public static Supplier<EagleDraftPolicy> factory(String name, NativeModel layer, int contextLength) {
        return factory(name, layer, contextLength, MIN_EXPAND_SCORE);
    }

    /** A fresh policy per request over a shared layer, expanding nodes of at least minExpandScore. */
    public static Supplier<EagleDraftPolicy> factory(String name, NativeModel layer, int contextLength, double minExpandScore) {
        return () -> new EagleDraftPolicy(name, layer, contextLength, minExpandScore);
    }

    /** Positions of the layer's KV cache for a sequence of contextLength: its rows plus the largest draft tree. */
    public static int kvPositions(int contextLength) {
        return contextLength + MAX_EXPANSION_ROWS + 1;
    }

    /** f32 feature and output rows each sequence's policy keeps on the device (for the memory budget). */
    public static long featureRowBytes(int nEmbd) {
        long featureRows = FEATURE_ROWS_BEFORE_CANDIDATES + 1L + MAX_CANDIDATES;
        long outputRows = Math.max(FEATURE_ROWS_BEFORE_CANDIDATES, BEAM);
        return (featureRows + outputRows) * nEmbd * Float.BYTES;
    }

    /** f32 rows of vocabulary logits each sequence's policy keeps on the device (for the memory budget). */
    public static int deviceLogitsRows() {
        return BEAM;
    }

    @Override
    public String name() {
        return name;
    }

    @Override
    public boolean readsFinalHidden() {
        return true;
    }

    @Override
    public boolean readsPromptHidden() {
        return true;
    }

    /**
     * After steps it skipped, the layer starts over from the next step's row (see {@link #resync}); it drafts from
     * as many recent rows as it keeps while held plain.
     */
    @Override
    public int observedStepsBeforeDrafting() {
        return HELD_PLAIN_ROWS;
    }

    /** The prompt's rows go into the layer's cache now, all but the last, which the first step runs for its logits. */
    @Override
    public void prefillFinalHidden(int[] prompt, int length, DeviceBuffer rows) {
        int n = length - 1; // features f[0..n): row j pairs prompt[j + 1] with f[j]
        if (n < 1) return;
        resources();
        if (n + 1 > kv.capacity()) {
            lost = true;
            return;
        }
        if (n > 1) {
            int[] tokens = Arrays.copyOfRange(prompt, 1, n);
            layer.eagleForward(kv, new ForwardArgs(tokens, null, null, ForwardArgs.LogitsMode.NONE, null, 0, null, null, false, 0), rows, 0, null);
            kv.commitChain(tokens.length);
        }
        features.copyFrom(rows, (long) (n - 1) * rowBytes, 0, rowBytes);
        backlogTokens.add(prompt[n]);
    }

    @Override
    public void observe(DraftTree tree, VerifyResult result) {
        // the tokens after the accepted path's nodes: the accepted drafts, then the bonus
        for (int i = 1; i < result.path().length; i++) backlogTokens.add(tree.tokens()[result.path()[i]]);
        backlogTokens.add(result.bonusToken());
    }

    @Override
    public void observeFinalHiddenPath(DeviceBuffer rows, long treeOffset, int[] path) {
        int have = backlogTokens.size() - path.length; // rows whose features are already in place
        if (have < 0 || have + path.length > rootRow) { // out of step (or too far behind): start over at the next step
            lost = true;
            backlogTokens.clear();
            return;
        }
        resources();
        for (int i = 0; i < path.length; i++) features.copyFrom(rows, treeOffset + (long) path[i] * rowBytes, (long) (have + i) * rowBytes, rowBytes);
        if (heldPlain && backlogTokens.size() > 2 * HELD_PLAIN_ROWS) dropBacklog(backlogTokens.size() - HELD_PLAIN_ROWS);
        else if (backlogTokens.size() > MAX_BACKLOG) runBacklog(backlogTokens.size() - 1, false);
    }

    /**
     * Gives up the layer's cache and the first n backlog rows: the layer's sequence then starts at the first row kept
     * (as after {@link #resync}, but keeping the recent rows and their features).
     */
    private void dropBacklog(int n) {
        offset += kv.length() + n;
        kv.truncate(0);
        int left = backlogTokens.size() - n;
        features.copyFrom(features, (long) n * rowBytes, 0, (long) left * rowBytes); // memmove on the device
        backlogTokens.subList(0, n).clear();
    }

    /**
     * Forgets the sequence up to its last token (history length): the layer then drafts from the rows after it alone
     * (still lossless, only less informed).
     */
    private void resync(int length) {
        if (kv != null) kv.truncate(0);
        backlogTokens.clear();
        offset = length - 1;
        lost = false;
    }

    /**
     * Runs the first n backlog rows as a chain and commits them; with logits, also writes the last one's logits (row 0
     * of logits) and its predicted feature at ROOT_ROW. The rest of the backlog moves to the front.
     */
    private void runBacklog(int n, boolean withLogits) {
        if (n <= 0) return;
        int[] tokens = new int[n];
        for (int i = 0; i < n; i++) tokens[i] = backlogTokens.get(i);
        ForwardArgs args = new ForwardArgs(tokens, null, null, withLogits ? ForwardArgs.LogitsMode.LAST : ForwardArgs.LogitsMode.NONE,
                withLogits ? logits : null, 0, null, null, false, 0);
        if (withLogits) args = args.withFinalHidden(outputs, 0);
        layer.eagleForward(kv, args, features, 0, null);
        kv.commitChain(n);
        if (withLogits) features.copyFrom(outputs, (long) (n - 1) * rowBytes, (long) rootRow * rowBytes, rowBytes);
        int left = backlogTokens.size() - n;
        if (left > 0) features.copyFrom(features, (long) n * rowBytes, 0, (long) left * rowBytes); // memmove on the device
        backlogTokens.subList(0, n).clear();
    }

    @Override
    public DraftTree propose(int[] history, int length, int maxTreeNodes) {
        int root = history[length - 1];
        heldPlain = maxTreeNodes <= 1;
        int n = backlogTokens.size();
        if (lost || (n > 0 && (backlogTokens.get(n - 1) != root || offset + cached() + n != length - 1))) {
            resync(length); // not this sequence's rows: start over
            return DraftTree.rootOnly(root);
        }
        if (n == 0 || maxTreeNodes <= 1) return DraftTree.rootOnly(root);
        int budget = maxTreeNodes - 1;
        int depthLimit = Math.min(MAX_DEPTH, budget);
        int beam = Math.min(BEAM, budget);
        if (kv.length() + n + beam * depthLimit > kv.capacity()) return DraftTree.rootOnly(root);
        runBacklog(n, true);

        List<Node> nodes = new ArrayList<>();
        int[] featureRow = new int[maxCandidates]; // a candidate's predicted feature, once it was run
        LogitsSummary top = LogitsSummary.summarize(logits, 0, 1, vocab, vocab, TOP_K)[0];
        for (int r = 0; r < top.k(); r++) if (top.top()[r] >= 0) nodes.add(new Node(top.top()[r], -1, 1, top.prob()[r]));
        List<Integer> frontier = best(nodes, 0, beam);
        int[] pendingIndex = new int[maxCandidates]; // a candidate's index in the layer's pending tree, once it was run
        int pending = 0; // the chain above was committed: the tree starts empty
        for (int d = 1; d < depthLimit; d++) {
            frontier = worthExpanding(nodes, frontier, budget, minExpandScore);
            if (frontier.isEmpty()) break;
            // the frontier alone: its ancestors' rows are already in the layer's cache, pending from earlier depths
            int rows = frontier.size();
            int[] tokens = new int[rows], parents = new int[rows], fRows = new int[rows];
            for (int j = 0; j < rows; j++) {
                Node node = nodes.get(frontier.get(j));
                tokens[j] = node.token();
                parents[j] = node.parent() < 0 ? -1 : pendingIndex[node.parent()];
                fRows[j] = node.parent() < 0 ? rootRow : featureRow[node.parent()];
            }
            // the predicted features go straight to their rows of features (a row per pending node, after the root's),
            // where the next depth reads them
            long written = (long) (rootRow + 1 + pending) * rowBytes;
            // one call: the extension and its rows' top-k (only those cross to the host)
            LogitsSummary[] sums = layer.eagleExtendSummarized(kv, ForwardArgs.tree(tokens, parents, logits).withFinalHidden(features, written), features, 0,
                    fRows, TOP_K);
            int first = nodes.size();
            for (int j = 0; j < rows; j++) {
                int f = frontier.get(j);
                pendingIndex[f] = pending + j;
                featureRow[f] = rootRow + 1 + pending + j;
                LogitsSummary s = sums[j];
                for (int r = 0; r < s.k() && nodes.size() < maxCandidates; r++)
                    if (s.top()[r] >= 0) nodes.add(new Node(s.top()[r], f, d + 1, nodes.get(f).score() * s.prob()[r]));
            }
            pending += rows;
            frontier = best(nodes, first, beam);
        }
        return DraftHeadsPolicy.bestFirst(root, nodes, budget);
    }

    /** The best k candidates from index first on, by path probability. */
    private static List<Integer> best(List<Node> nodes, int first, int k) {
        Integer[] order = new Integer[nodes.size() - first];
        for (int i = 0; i < order.length; i++) order[i] = first + i;
        Arrays.sort(order, Comparator.comparingDouble((Integer i) -> nodes.get(i).score()).reversed().thenComparingInt(i -> i));
        return Arrays.asList(Arrays.copyOf(order, Math.min(k, order.length)));
    }

    /**
     * The frontier nodes worth a row of the layer: those of at least minScore whose children could enter the tree. A
     * child scores at most its parent, so once the budget is filled by candidates more likely than a node, none of its
     * descendants would be picked (dropping such a node leaves the tree as it was).
     */
    static List<Integer> worthExpanding(List<Node> nodes, List<Integer> frontier, int budget, double minScore) {
        List<Integer> out = new ArrayList<>(frontier.size());
        for (int f : frontier) {
            double s = nodes.get(f).score();
            if (s < minScore) continue;
            int better = 0;
            for (Node n : nodes) if (n.score() > s && ++better >= budget) break;
            if (better < budget) out.add(f);
        }
        return out;
    }

    @Override
    public void close() {
        if (kv == null) return;
        kv.close();
        features.close();
        outputs.close();
        logits.close();
        kv = null;
    }
}
