package dev.specula.engine;

import dev.specula.StopReason;
import dev.specula.nativeapi.DeviceBuffer;
import dev.specula.nativeapi.ForwardArgs;
import dev.specula.nativeapi.KvCache;
import dev.specula.nativeapi.NativeModel;
import dev.specula.nativeapi.SamplingParams;
import dev.specula.nativeapi.TreeVerifier;
import dev.specula.nativeapi.VerifyResult;
import dev.specula.sampling.CandidateFilter;
import dev.specula.sampling.RelaxedVerifier;
import dev.specula.sampling.Sampler;
import dev.specula.sampling.SamplingOptions;
import dev.specula.sampling.VerifyMode;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.BooleanSupplier;
import java.util.function.IntPredicate;

/**
 * The one decode loop, plain and speculative alike: each step, every active sequence's policy proposes a tree rooted at its last chosen
 * token; the target runs each tree forward (tree attention); one verification call checks the whole batch;
 * each sequence commits its accepted path in its KV cache and streams the accepted tokens and the bonus
 * token; the policies learn from the outcome. Plain decoding is the same loop whose trees are lone roots
 * ({@link dev.specula.policies.NoSpeculation} with trees of 1 node): only then do repetition penalty and min-p
 * apply, since they are not part of tree verification.
 *
 * <p>Greedy verification gives exactly the tokens of plain greedy decoding; sampling gives exactly the
 * distribution of plain sampling with the same temperature, top-k and top-p. {@link CandidateFilter}s on a
 * request keep both lossless with respect to the filtered distribution. A request may instead opt in to a
 * LOSSY {@link RelaxedVerifier} (typical or LANTERN acceptance), verified on the host. One engine serves one
 * batch at a time (calls are serialised); make one per thread for parallel batches.
 */
public final class DecodeLoop implements AutoCloseable {
    private final NativeModel target;
    private final int maxTreeNodes;
    private final SpeculationBudget budget;
    private final int vocab;
    private DeviceBuffer logits;
    private DeviceBuffer finalHidden; // [logitsBatch][maxTreeNodes][n_embd] f32, for policies that read final hidden states
    private MemorySegment hostRows;
    private final Arena hostArena = Arena.ofShared();
    private int logitsBatch;
    private long step;
    private final boolean deviceSampling;

    /**
     * @param maxTreeNodes the largest tree, root included (at most {@link TreeVerifier#MAX_TREE_NODES})
     * @param adaptive let measured step costs shrink trees, down to plain decoding, when speculation does not pay
     */
    public DecodeLoop(NativeModel target, int maxTreeNodes, boolean adaptive) {
        this(target, new SpeculationBudget(maxTreeNodes, adaptive));
    }

    /**
     * An engine whose tree sizes come from budget, which may be shared with other engines of the same target so
     * that what one request measured serves the next (its largest tree is this engine's).
     */
    public DecodeLoop(NativeModel target, SpeculationBudget budget) {
        this(target, budget, target.context().devicePathsByDefault());
    }

    /**
     * As above, choosing where plain steps (every tree a lone root) pick their tokens: deviceSampling true runs
     * them as a verification of one-node trees on the context's device, so only the chosen tokens cross to the
     * host; false copies each logits row to the host and samples there (the reference). Sequences with filters,
     * relaxed verification, repetition penalty or min-p always take the host path.
     */
    public DecodeLoop(NativeModel target, SpeculationBudget budget, boolean deviceSampling) {
        int maxTreeNodes = budget.maxTreeNodes();
        if (maxTreeNodes < 1 || maxTreeNodes > TreeVerifier.MAX_TREE_NODES)
            throw new IllegalArgumentException("maxTreeNodes must be in 1.." + TreeVerifier.MAX_TREE_NODES + ", got " + maxTreeNodes);
        this.target = target;
        this.maxTreeNodes = maxTreeNodes;
        this.budget = budget;
        this.vocab = target.shape().nVocab();
        this.deviceSampling = deviceSampling;
    }

    /** The device buffer of tree logits for batch trees of maxTreeNodes: what the memory budget counts for them. */
    public static long logitsBytes(int batch, int maxTreeNodes, int vocab) {
        return (long) batch * maxTreeNodes * vocab * Float.BYTES;
    }

    /** The device buffer of final hidden states for batch trees, made when a policy reads them (draft heads). */
    public static long finalHiddenBytes(int batch, int maxTreeNodes, int nEmbd) {
        return (long) batch * maxTreeNodes * nEmbd * Float.BYTES;
    }

    public NativeModel target() {
        return target;
    }

    /**
     * One sequence of a batch. The KV cache must be empty and belong to the target.
     *
     * @param filters  constraints on every chosen token, applied to the target's row at every tree node before
     *                 verification (empty for none); greedy and sampling stay lossless w.r.t. the filtered
     *                 distribution
     * @param relaxed  null for lossless verification (greedy or sampling, by {@code sampling}); otherwise a
     *                 LOSSY relaxed verifier (typical or LANTERN), which needs greedy sampling options
     */
    public record Request(KvCache kv, int[] prompt, int maxTokens, SamplingOptions sampling, DraftPolicy policy,
                          IntPredicate isStop, TokenSink sink, BooleanSupplier cancelled,
                          List<CandidateFilter> filters, RelaxedVerifier relaxed) {
        public Request {
            if (prompt.length == 0) throw new IllegalArgumentException("the prompt has no tokens");
            if (maxTokens < 0) throw new IllegalArgumentException("maxTokens must be >= 0, got " + maxTokens);
            if (prompt.length >= kv.capacity())
                throw new IllegalArgumentException("the prompt's " + prompt.length + " tokens do not fit a context of " + kv.capacity());
            filters = filters == null ? List.of() : List.copyOf(filters);
            if (relaxed != null && !sampling.greedy())
                throw new IllegalArgumentException("relaxed verification (" + relaxed.mode() + ") picks tokens greedily; use temperature 0");
        }

        /** A request without filters, verified losslessly. */
        public Request(KvCache kv, int[] prompt, int maxTokens, SamplingOptions sampling, DraftPolicy policy,
                       IntPredicate isStop, TokenSink sink, BooleanSupplier cancelled) {
            this(kv, prompt, maxTokens, sampling, policy, isStop, sink, cancelled, List.of(), null);
        }

        public Request withFilters(List<CandidateFilter> f) {
            return new Request(kv, prompt, maxTokens, sampling, policy, isStop, sink, cancelled, f, relaxed);
        }

        /** Opts in to LOSSY relaxed verification; null returns to lossless verification. */
        public Request withRelaxedVerifier(RelaxedVerifier r) {
            return new Request(kv, prompt, maxTokens, sampling, policy, isStop, sink, cancelled, filters, r);
        }

        public VerifyMode verifyMode() {
            return relaxed != null ? relaxed.mode() : sampling.greedy() ? VerifyMode.GREEDY : VerifyMode.SAMPLE;
        }

        boolean needsHostRows() {
            return relaxed != null || !filters.isEmpty();
        }

        /** Whether a plain step of this sequence may choose its token on the device. */
        boolean deviceSamplable() {
            return !needsHostRows() && sampling.deviceExpressible();
        }
    }

    public record Result(int[] tokens, StopReason reason, SpecStats stats) {}

    public Result generate(Request request) {
        return generateBatch(List.of(request)).get(0);
    }

    private static final class Sequence {
        final Request request;
        final SamplingParams params;
        final Sampler sampler; // for plain steps sampled on the host
        int[] history;
        int length;
        int generated;
        StopReason reason;
        final SpecStats stats = new SpecStats();
        DraftTree tree;
        int allowed;
        double forwardSeconds;
        double draftSeconds;

        Sequence(Request r) {
            request = r;
            SamplingOptions s = r.sampling();
            params = new SamplingParams(s.seed(), s.temperature(), s.topP(), s.topK());
            sampler = new Sampler(s);
            history = Arrays.copyOf(r.prompt(), r.prompt().length + Math.max(16, r.maxTokens() + 1));
            length = r.prompt().length;
        }

        boolean active() {
            return reason == null;
        }

        /** Streams one token; false once the sequence has finished. */
        boolean emit(int token) {
            if (request.isStop().test(token)) {
                reason = StopReason.END_OF_SEQUENCE;
                return false;
            }
            if (length == history.length) history = Arrays.copyOf(history, history.length * 2);
            history[length++] = token;
            generated++;
            if (!request.sink().accept(token)) {
                reason = StopReason.STOP_STRING;
                return false;
            }
            if (generated >= request.maxTokens()) {
                reason = StopReason.MAX_TOKENS;
                return false;
            }
            return true;
        }
    }

    public synchronized List<Result> generateBatch(List<Request> requests) {
        List<Sequence> seqs = new ArrayList<>();
        for (Request r : requests) {
            if (r.kv().model() != target) throw new IllegalArgumentException("a request's KV cache belongs to another model");
            if (r.kv().length() != 0) throw new IllegalArgumentException("a request's KV cache must start empty");
            if ((r.sampling().repetitionPenalty() != 1f || r.sampling().minP() != 0f) && maxTreeNodes > 1)
                throw new IllegalArgumentException("repetition penalty and min-p are not part of speculative verification;"
                        + " use plain decoding (drafter none) for them");
            Sequence s = new Sequence(r);
            if (r.maxTokens() == 0) s.reason = StopReason.MAX_TOKENS;
            seqs.add(s);
        }
        for (Sequence s : seqs) prefill(s);
        while (true) {
            List<Sequence> active = new ArrayList<>();
            for (Sequence s : seqs) {
                if (s.active() && s.request.cancelled().getAsBoolean()) s.reason = StopReason.CANCELLED;
                if (s.active() && s.request.kv().length() >= s.request.kv().capacity()) s.reason = StopReason.CONTEXT_FULL;
                if (s.active()) active.add(s);
            }
            if (active.isEmpty()) break;
            step(active);
        }
        List<Result> out = new ArrayList<>();
        for (Sequence s : seqs) {
            int[] tokens = Arrays.copyOfRange(s.history, s.request.prompt().length, s.length);
            out.add(new Result(tokens, s.reason, s.stats));
        }
        return out;
    }

    /**
     * Everything but the prompt's last token goes into the cache, in one call (the native backends slice long
     * inputs so their scratch stays bounded); that token is the first tree's root.
     */
    private void prefill(Sequence s) {
        int[] prompt = s.request.prompt();
        long t0 = System.nanoTime();
        if (prompt.length > 1) {
            int[] head = Arrays.copyOf(prompt, prompt.length - 1);
            target.forward(s.request.kv(), new ForwardArgs(head, null, null, ForwardArgs.LogitsMode.NONE, null, 0, null, null, false, 0));
            s.request.kv().commitChain(head.length);
        }
        s.request.policy().prefill(prompt, prompt.length);
        s.stats.recordPrompt(prompt.length, (System.nanoTime() - t0) / 1e9);
    }

    private void step(List<Sequence> active) {
        int batch = active.size();
        ensureLogits(batch);
        long rowBytes = (long) vocab * Float.BYTES;
        int[][] tokens = new int[batch][], parents = new int[batch][];
        SamplingParams[] params = new SamplingParams[batch];
        for (int b = 0; b < batch; b++) {
            Sequence s = active.get(b);
            KvCache kv = s.request.kv();
            s.allowed = Math.min(budget.choose(s.request.policy().name()), kv.capacity() - kv.length());
            long t0 = System.nanoTime();
            DraftTree tree = s.request.policy().propose(s.history, s.length, s.allowed, kv);
            long t1 = System.nanoTime();
            if (tree.size() > s.allowed)
                throw new IllegalStateException("policy " + s.request.policy().name() + " proposed " + tree.size() + " nodes, more than the " + s.allowed + " allowed");
            if (kv.length() != s.length - 1)
                throw new IllegalStateException("policy " + s.request.policy().name() + " left the KV cache at " + kv.length() + " positions, not " + (s.length - 1));
            if (tree.tokens()[0] != s.history[s.length - 1])
                throw new IllegalStateException("policy " + s.request.policy().name() + " rooted its tree at " + tree.tokens()[0] + ", not the last token " + s.history[s.length - 1]);
            ForwardArgs args = ForwardArgs.tree(tree.tokens(), tree.parents(), logits, b * maxTreeNodes * rowBytes);
            if (s.request.policy().readsFinalHidden()) args = args.withFinalHidden(finalHidden(batch), hiddenOffset(b, 0));
            target.forward(kv, args);
            long t2 = System.nanoTime();
            s.tree = tree;
            s.draftSeconds = (t1 - t0) / 1e9;
            s.forwardSeconds = (t2 - t1) / 1e9;
            tokens[b] = tree.tokens();
            parents[b] = tree.parents();
            params[b] = s.params;
        }
        long v0 = System.nanoTime();
        boolean plainStep = true;
        for (Sequence s : active) plainStep &= s.tree.size() == 1;
        boolean onDevice = deviceSampling;
        for (Sequence s : active) onDevice &= s.request.deviceSamplable();
        if (plainStep && !onDevice) {
            // Every tree is its root alone: a plain decoding step, chosen on the host as plain decoding does,
            // without a verification call. This is what "speculation off" costs, so backing off can reach it.
            VerifyResult[] results = new VerifyResult[batch];
            for (int b = 0; b < batch; b++) {
                Sequence s = active.get(b);
                float[] row = hostRows(s, b)[0];
                int token = s.sampler.sample(row, s.history, s.length);
                results[b] = new VerifyResult(0, 0, token, new int[] {0}, new int[] {1});
            }
            step++;
            finish(active, results, (System.nanoTime() - v0) / 1e9 / batch);
            return;
        }
        // A tree step, or a plain step sampled on the device (one-node trees whose bonus token is the sampled
        // next token): one verification call for the batch, and only its small results cross to the host.
        float[][][] rows = new float[batch][][];
        boolean anyNative = false;
        for (int b = 0; b < batch; b++) {
            Sequence s = active.get(b);
            if (s.request.needsHostRows()) rows[b] = hostRows(s, b);
            anyNative |= s.request.relaxed() == null;
        }
        VerifyResult[] results = anyNative
                ? TreeVerifier.verify(target.context(), maxTreeNodes, vocab, tokens, parents, params, logits, null, step)
                : new VerifyResult[batch];
        step++;
        for (int b = 0; b < batch; b++) {
            Sequence s = active.get(b);
            if (s.request.relaxed() != null) results[b] = s.request.relaxed().verify(s.tree.tokens(), s.tree.parents(), rows[b]);
        }
        finish(active, results, (System.nanoTime() - v0) / 1e9 / batch);
    }

    /** Commits each sequence's accepted path, streams its tokens and lets the policies learn. */
    private void finish(List<Sequence> active, VerifyResult[] results, double verifySeconds) {
        int batch = active.size();
        DraftTree[] trees = new DraftTree[batch];
        Map<DraftPolicy, Boolean> policies = new IdentityHashMap<>();
        for (int b = 0; b < batch; b++) {
            Sequence s = active.get(b);
            VerifyResult r = results[b];
            long o0 = System.nanoTime();
            s.request.kv().commit(r.path());
            int emitted = 0;
            boolean going = true;
            for (int i = 1; i < r.path().length && going; i++) {
                going = s.emit(s.tree.tokens()[r.path()[i]]);
                emitted++;
            }
            if (going) {
                s.emit(r.bonusToken());
                emitted++;
            }
            s.stats.recordStep(r.nAccepted(), emitted, r.depthFlags());
            s.request.policy().observe(s.tree, r);
            if (s.request.policy().readsFinalHidden()) s.request.policy().observeFinalHidden(finalHidden, hiddenOffset(b, r.path()[r.path().length - 1]));
            double other = (System.nanoTime() - o0) / 1e9;
            s.stats.addTimes(s.draftSeconds, s.forwardSeconds + verifySeconds, other);
            budget.record(s.request.policy().name(), s.allowed, s.draftSeconds + s.forwardSeconds + verifySeconds + other, r.nAccepted() + 1);
            trees[b] = s.tree;
            policies.put(s.request.policy(), Boolean.TRUE);
        }
        for (DraftPolicy p : policies.keySet()) p.observeBatch(trees, logits, maxTreeNodes);
    }

    /**
     * Copies sequence b's tree rows to the host and, where the request has filters, masks each node's row with
     * that node's context (history, then the path from the root down to the node) and copies the rows back,
     * so native verification and the policies see the filtered logits.
     */
    private float[][] hostRows(Sequence s, int b) {
        DraftTree tree = s.tree;
        int n = tree.size();
        long rowBytes = (long) vocab * Float.BYTES, base = b * maxTreeNodes * rowBytes;
        if (hostRows == null) hostRows = hostArena.allocate((long) maxTreeNodes * rowBytes, 64);
        logits.copyToHost(base, hostRows, 0, n * rowBytes);
        float[][] rows = new float[n][vocab];
        for (int i = 0; i < n; i++) MemorySegment.copy(hostRows, ValueLayout.JAVA_FLOAT, i * rowBytes, rows[i], 0, vocab);
        List<CandidateFilter> filters = s.request.filters();
        if (filters.isEmpty()) return rows;
        int[] depth = tree.depths();
        int maxDepth = Arrays.stream(depth).max().orElse(0);
        int[] context = Arrays.copyOf(s.history, s.length + maxDepth);
        for (int i = 0; i < n; i++) {
            for (int j = i; j > 0; j = tree.parents()[j]) context[s.length + depth[j] - 1] = tree.tokens()[j];
            CandidateFilter.applyAll(filters, context, s.length + depth[i], rows[i]);
            MemorySegment.copy(rows[i], 0, hostRows, ValueLayout.JAVA_FLOAT, i * rowBytes, vocab);
        }
        logits.copyFromHost(hostRows, 0, base, n * rowBytes);
        return rows;
    }

    private long hiddenOffset(int b, int node) {
        return ((long) b * maxTreeNodes + node) * target.shape().nEmbd() * Float.BYTES;
    }

    /** The final hidden rows buffer, made on first use at the logits buffer's batch. */
    private DeviceBuffer finalHidden(int batch) {
        if (finalHidden == null || finalHidden.size() < finalHiddenBytes(batch, maxTreeNodes, target.shape().nEmbd())) {
            if (finalHidden != null) finalHidden.close();
            finalHidden = target.context().allocate(finalHiddenBytes(Math.max(batch, logitsBatch), maxTreeNodes, target.shape().nEmbd()));
        }
        return finalHidden;
    }

    private void ensureLogits(int batch) {
        if (logits != null && logitsBatch >= batch) return;
        if (logits != null) logits.close();
        logits = target.context().allocate(logitsBytes(batch, maxTreeNodes, vocab));
        logitsBatch = batch;
    }

    @Override
    public synchronized void close() {
        if (logits != null) logits.close();
        if (finalHidden != null) finalHidden.close();
        hostArena.close();
    }
}
