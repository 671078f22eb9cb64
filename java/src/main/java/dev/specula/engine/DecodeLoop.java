package dev.specula.engine;

import dev.specula.StopReason;
import dev.specula.internal.SplitMix64;
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
 * LOSSY {@link RelaxedVerifier} (typical or LANTERN acceptance), verified on the host.
 *
 * <p>A batch may change between steps: {@link #start} adds a sequence, {@link #step} advances the ones given
 * (each with its own policy, tree budget and sampling), and a finished sequence simply is not given again; this
 * is what {@link BatchScheduler} does. {@link #generate} and {@link #generateBatch} run fixed batches to the
 * end. Calls are serialised; make one loop per thread for parallel batches.
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
    private final boolean deviceSampling;
    private final BatchForward batchForward;

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
        this(target, budget, deviceSampling, BatchForward.ONE_CALL);
    }

    /** As above, running each step's trees through the target with batchForward. */
    public DecodeLoop(NativeModel target, SpeculationBudget budget, boolean deviceSampling, BatchForward batchForward) {
        int maxTreeNodes = budget.maxTreeNodes();
        if (maxTreeNodes < 1 || maxTreeNodes > TreeVerifier.MAX_TREE_NODES)
            throw new IllegalArgumentException("maxTreeNodes must be in 1.." + TreeVerifier.MAX_TREE_NODES + ", got " + maxTreeNodes);
        this.target = target;
        this.maxTreeNodes = maxTreeNodes;
        this.budget = budget;
        this.vocab = target.shape().nVocab();
        this.deviceSampling = deviceSampling;
        this.batchForward = batchForward;
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

    /**
     * One sequence in the loop: made by {@link #start}, advanced by {@link #step}, until it has a {@link #reason()}
     * or a {@link #failure()}. A scheduler may start and step sequences at any time between steps, so the batch
     * changes from one step to the next.
     */
    public static final class Sequence {
        final Request request;
        final SpeculationBudget budget;
        final SamplingParams params;
        final Sampler sampler; // for plain steps sampled on the host
        int[] history;
        int length;
        int generated;
        StopReason reason;
        Throwable failure;
        final SpecStats stats = new SpecStats();
        DraftTree tree;
        int allowed;
        boolean attends = true; // whether the policy takes part in this step (the budget's Decision)
        // Whether the policy reads the prompt's final hidden states (EAGLE's layer run over the prompt): not when its
        // budget holds it plain and asleep as the request starts. Woken, it starts from the steps it observes, with
        // nothing to catch up. (A draft model's cache is still filled with the prompt: skipped, the first probe would
        // catch it up over the whole history, the same work moved into the decoding.)
        final boolean preparesPolicy;
        VerifyResult verified;
        double forwardSeconds;
        double draftSeconds;
        boolean prefilling; // joined by {@link #join}: its prompt still goes into the cache, a chunk per step
        int prefilled; // prompt tokens in the cache so far
        int chunk; // prompt tokens this step runs
        double prefillSeconds;

        Sequence(Request r, SpeculationBudget budget) {
            request = r;
            this.budget = budget;
            preparesPolicy = !budget.dormant(r.policy().name());
            SamplingOptions s = r.sampling();
            params = new SamplingParams(s.seed(), s.temperature(), s.topP(), s.topK());
            sampler = new Sampler(s);
            history = Arrays.copyOf(r.prompt(), r.prompt().length + Math.max(16, Math.min(r.maxTokens(), 1 << 16) + 1));
            length = r.prompt().length;
        }

        public Request request() {
            return request;
        }

        /** Why it ended; null while it runs or when it failed. */
        public StopReason reason() {
            return reason;
        }

        /** What made it fail (it then takes no further steps); null unless it failed. */
        public Throwable failure() {
            return failure;
        }

        /** Whether it still takes steps. */
        public boolean active() {
            return reason == null && failure == null;
        }

        /** Whether its prompt is still being prefilled (it then generates nothing yet). */
        public boolean prefilling() {
            return prefilling;
        }

        /**
         * Ends the sequence, between steps, if its caller cancelled or its KV cache is full; returns whether it is
         * still active. A cancel check that throws fails this sequence alone.
         */
        public boolean refresh() {
            if (!active()) return false;
            try {
                if (request.cancelled().getAsBoolean()) reason = StopReason.CANCELLED;
            } catch (RuntimeException e) {
                failure = e;
                return false;
            }
            if (active() && request.kv().length() >= request.kv().capacity()) reason = StopReason.CONTEXT_FULL;
            return active();
        }

        /** The generated tokens so far, why it ended and its statistics. */
        public Result result() {
            return new Result(Arrays.copyOfRange(history, request.prompt().length, length), reason, stats);
        }

        void fail(Throwable e) {
            if (failure == null) failure = e;
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
        for (Request r : requests) check(r, budget);
        for (Request r : requests) seqs.add(start(r, budget));
        while (true) {
            List<Sequence> active = new ArrayList<>();
            for (Sequence s : seqs) if (s.refresh()) active.add(s);
            if (active.isEmpty()) break;
            step(active, StepPlanner.NONE);
            for (Sequence s : seqs) if (s.failure() != null) throw rethrown(s.failure());
        }
        List<Result> out = new ArrayList<>();
        for (Sequence s : seqs) out.add(s.result());
        return out;
    }

    private static RuntimeException rethrown(Throwable t) {
        if (t instanceof RuntimeException e) return e;
        if (t instanceof Error e) throw e;
        return new IllegalStateException(t);
    }

    private void check(Request r, SpeculationBudget budget) {
        if (r.kv().model() != target) throw new IllegalArgumentException("a request's KV cache belongs to another model");
        if (r.kv().length() != 0) throw new IllegalArgumentException("a request's KV cache must start empty");
        if (budget.maxTreeNodes() > maxTreeNodes)
            throw new IllegalArgumentException("a request's trees of " + budget.maxTreeNodes() + " nodes exceed this loop's " + maxTreeNodes);
        if ((r.sampling().repetitionPenalty() != 1f || r.sampling().minP() != 0f) && budget.maxTreeNodes() > 1)
            throw new IllegalArgumentException("repetition penalty and min-p are not part of speculative verification;"
                    + " use plain decoding (drafter none) for them");
    }

    /**
     * Starts a sequence: checks the request and fills its KV cache with the prompt. Its trees come from budget
     * (null: this loop's), whose largest tree may not exceed this loop's.
     */
    public synchronized Sequence start(Request r, SpeculationBudget budget) {
        SpeculationBudget b = budget == null ? this.budget : budget;
        check(r, b);
        Sequence s = new Sequence(r, b);
        if (r.maxTokens() == 0) s.reason = StopReason.MAX_TOKENS;
        else prefill(s);
        return s;
    }

    /**
     * Starts a sequence whose prompt is prefilled by the steps themselves (chunked prefill): each {@link #step}
     * runs a chunk of it that counts against the step's token budget, in the same forward as the other sequences'
     * trees, so a long prompt does not stall the batch. It generates once its prompt is in the cache.
     */
    public synchronized Sequence join(Request r, SpeculationBudget budget) {
        SpeculationBudget b = budget == null ? this.budget : budget;
        check(r, b);
        Sequence s = new Sequence(r, b);
        if (r.maxTokens() == 0) s.reason = StopReason.MAX_TOKENS;
        else if (r.prompt().length == 1) prefill(s); // nothing to put in the cache: its root is the prompt
        // A policy that reads the prompt's features (EAGLE) gets them only from the one-call prefill: the chunks
        // keep no hidden states, and without them its layer would draft from an empty context.
        else if (r.policy().readsPromptHidden() && s.preparesPolicy) prefill(s);
        else s.prefilling = true;
        return s;
    }

    /**
     * Everything but the prompt's last token goes into the cache, in one call (the native backends slice long
     * inputs so their scratch stays bounded); that token is the first tree's root.
     */
    private void prefill(Sequence s) {
        int[] prompt = s.request.prompt();
        long t0 = System.nanoTime();
        DeviceBuffer promptHidden = null;
        try {
            if (prompt.length > 1) {
                int[] head = Arrays.copyOf(prompt, prompt.length - 1);
                ForwardArgs args = new ForwardArgs(head, null, null, ForwardArgs.LogitsMode.NONE, null, 0, null, null, false, 0);
                // EAGLE: its layer attends over the prompt's features (unless the budget holds it plain: then it
                // starts from the steps it observes once woken)
                if (s.request.policy().readsPromptHidden() && s.preparesPolicy) {
                    promptHidden = target.context().allocate((long) head.length * target.shape().nEmbd() * Float.BYTES);
                    args = args.withFinalHidden(promptHidden, 0);
                }
                target.forward(s.request.kv(), args);
                s.request.kv().commitChain(head.length);
            }
            s.request.policy().prefill(prompt, prompt.length);
            if (promptHidden != null) s.request.policy().prefillFinalHidden(prompt, prompt.length, promptHidden);
        } finally {
            if (promptHidden != null) promptHidden.close();
        }
        s.stats.recordPrompt(prompt.length, (System.nanoTime() - t0) / 1e9);
    }

    /** The prompt tokens a joined sequence still has to put in its cache (all but the last, its first root). */
    private static int prefillLeft(Sequence s) {
        return s.request.prompt().length - 1 - s.prefilled;
    }

    /** A joined sequence's prompt is in its cache: its policy sees the prompt, and it generates from the next step. */
    private static void finishPrefill(Sequence s, long t0) {
        int[] prompt = s.request.prompt();
        try {
            s.request.policy().prefill(prompt, prompt.length);
        } catch (RuntimeException e) {
            s.fail(e);
            return;
        }
        s.prefilling = false;
        s.stats.recordPrompt(prompt.length, s.prefillSeconds + (System.nanoTime() - t0) / 1e9);
    }

    /**
     * One step over the given sequences (any number: the logits buffer grows to fit; inactive ones are skipped):
     * plan (each sequence's tree size: its budget's choice, then the planner's), draft, forward, verify, accept.
     * A sequence whose policy, filters, sink or forward throws fails alone ({@link Sequence#failure()}); the
     * others take their step.
     */
    public synchronized void step(List<Sequence> sequences, StepPlanner planner) {
        step(sequences, planner, Integer.MAX_VALUE);
    }

    /**
     * One step, as above, of at most stepTokens rows in all. Sequences still prefilling ({@link #join}) take
     * prompt chunks, in order, from what the decoding sequences' roots leave of the budget (at least one row a
     * step); the decoding sequences' drafts get what the chunks leave, so the planner's allowances are lowered,
     * largest first, to fit. The chunks run in the same forward call as the trees and are committed with them.
     */
    public synchronized void step(List<Sequence> sequences, StepPlanner planner, int stepTokens) {
        long s0 = System.nanoTime();
        List<Sequence> filling = new ArrayList<>(), decoding = new ArrayList<>();
        for (Sequence s : sequences) if (s.active()) (s.prefilling ? filling : decoding).add(s);
        List<Sequence> active = plan(decoding, planner);
        if (!filling.isEmpty()) {
            int room = Math.max(1, stepTokens - active.size()), prefillRows = 0;
            for (Sequence s : filling) {
                s.chunk = Math.min(prefillLeft(s), room - prefillRows);
                prefillRows += s.chunk;
            }
            filling.removeIf(s -> s.chunk == 0);
            fitDrafts(active, Math.max(0, stepTokens - active.size() - prefillRows));
        }
        active = draft(active);
        if (active.isEmpty() && filling.isEmpty()) return;
        if (!active.isEmpty()) ensureLogits(active.size());
        active = forward(active, filling);
        VerifyResult[] results = active.isEmpty() ? new VerifyResult[0] : verify(active);
        commit(active, results, filling);
        long c0 = System.nanoTime();
        for (Sequence s : filling) if (s.active() && prefillLeft(s) == 0) finishPrefill(s, c0);
        if (active.isEmpty()) return;
        accept(active, results);
        int prefillRows = 0;
        for (Sequence s : filling) prefillRows += s.chunk;
        planner.observe(outcome(active, results, prefillRows, (System.nanoTime() - s0) / 1e9));
    }

    /** Lowers the largest allowances, one node at a time, until the drafts (nodes past the roots) fit in room. */
    private static void fitDrafts(List<Sequence> active, int room) {
        int drafts = 0;
        for (Sequence s : active) drafts += s.allowed - 1;
        while (drafts > room) {
            Sequence largest = active.get(0);
            for (Sequence s : active) if (s.allowed >= largest.allowed) largest = s;
            largest.allowed--;
            drafts--;
        }
    }

    /** Each sequence's allowance: its budget's wish (capped by its KV room), then trimmed by the planner. */
    private List<Sequence> plan(List<Sequence> sequences, StepPlanner planner) {
        List<Sequence> active = new ArrayList<>();
        for (Sequence s : sequences) {
            if (!s.active()) continue;
            try {
                KvCache kv = s.request.kv();
                SpeculationBudget.Decision d = s.budget.decide(s.request.policy().name(), s.request.policy().observedStepsBeforeDrafting());
                s.allowed = Math.max(1, Math.min(d.treeNodes(), kv.capacity() - kv.length()));
                s.attends = d.attends();
                active.add(s);
            } catch (RuntimeException e) {
                s.fail(e);
            }
        }
        if (active.isEmpty()) return active;
        String[] names = new String[active.size()];
        int[] allowed = new int[active.size()];
        boolean[] adaptive = new boolean[active.size()];
        for (int b = 0; b < names.length; b++) {
            names[b] = active.get(b).request.policy().name();
            allowed[b] = active.get(b).allowed;
            adaptive[b] = active.get(b).budget.adaptive();
        }
        planner.plan(names, allowed, adaptive);
        for (int b = 0; b < names.length; b++) active.get(b).allowed = Math.max(1, Math.min(allowed[b], active.get(b).allowed));
        return active;
    }

    /** Each policy proposes its tree; a policy that throws or breaks the rules fails its sequence alone. */
    private List<Sequence> draft(List<Sequence> planned) {
        List<Sequence> active = new ArrayList<>();
        for (Sequence s : planned) {
            try {
                KvCache kv = s.request.kv();
                long t0 = System.nanoTime();
                // A policy held plain between probes is not asked: the step is plain decoding, nothing of its upkeep.
                DraftTree tree = s.attends ? s.request.policy().propose(s.history, s.length, s.allowed, kv) : DraftTree.rootOnly(s.history[s.length - 1]);
                s.draftSeconds = (System.nanoTime() - t0) / 1e9;
                if (tree.size() > s.allowed)
                    throw new IllegalStateException("policy " + s.request.policy().name() + " proposed " + tree.size() + " nodes, more than the " + s.allowed + " allowed");
                if (kv.length() != s.length - 1)
                    throw new IllegalStateException("policy " + s.request.policy().name() + " left the KV cache at " + kv.length() + " positions, not " + (s.length - 1));
                if (tree.tokens()[0] != s.history[s.length - 1])
                    throw new IllegalStateException("policy " + s.request.policy().name() + " rooted its tree at " + tree.tokens()[0] + ", not the last token " + s.history[s.length - 1]);
                s.tree = tree;
                active.add(s);
            } catch (RuntimeException e) {
                s.fail(e);
            }
        }
        return active;
    }

    /**
     * Runs every tree, and every prefilling sequence's chunk, through the target in one {@link BatchForward} call,
     * sequence b's logits at row b * maxTreeNodes (chunks keep no logits). If that call fails, each sequence is run
     * alone, so only the ones that fail alone fail. Returns the decoding sequences still active.
     */
    private List<Sequence> forward(List<Sequence> active, List<Sequence> filling) {
        int batch = active.size(), calls = batch + filling.size();
        KvCache[] kvs = new KvCache[calls];
        ForwardArgs[] args = new ForwardArgs[calls];
        List<Sequence> all = new ArrayList<>(active);
        all.addAll(filling);
        int treeRows = 0, prefillRows = 0;
        for (int b = 0; b < calls; b++) {
            Sequence s = all.get(b);
            kvs[b] = s.request.kv();
            if (b < batch) {
                args[b] = treeArgs(s, b, batch);
                treeRows += s.tree.size();
            } else {
                int[] chunk = Arrays.copyOfRange(s.request.prompt(), s.prefilled, s.prefilled + s.chunk);
                args[b] = new ForwardArgs(chunk, null, null, ForwardArgs.LogitsMode.NONE, null, 0, null, null, false, 0);
                prefillRows += s.chunk;
            }
        }
        long t0 = System.nanoTime();
        try {
            batchForward.forward(target, kvs, args);
        } catch (RuntimeException batchFailure) {
            for (int b = 0; b < calls; b++) {
                try {
                    target.forward(kvs[b], args[b]);
                } catch (RuntimeException e) {
                    all.get(b).fail(e);
                }
            }
        }
        // The forward's cost is shared by rows between trees and chunks; the trees' part is shared equally by the
        // decoding sequences (a lone sequence pays all of it), a chunk's is its prompt's.
        double seconds = (System.nanoTime() - t0) / 1e9, perRow = seconds / Math.max(1, treeRows + prefillRows);
        for (Sequence s : active) s.forwardSeconds = perRow * treeRows / batch;
        for (Sequence s : filling) s.prefillSeconds += perRow * s.chunk;
        boolean anyFailed = false;
        for (Sequence s : active) anyFailed |= !s.active();
        if (!anyFailed) return active;
        // Failed sequences leave the step; the survivors' logits move to their new batch rows.
        List<Sequence> kept = new ArrayList<>();
        for (int b = 0; b < batch; b++) {
            Sequence s = active.get(b);
            if (!s.active()) continue;
            int to = kept.size();
            if (to != b) target.forward(s.request.kv(), treeArgs(s, to, batch));
            kept.add(s);
        }
        return kept;
    }

    /** Sequence s's tree as batch row b: its logits, and its final hidden rows where its policy reads them. */
    private ForwardArgs treeArgs(Sequence s, int b, int batch) {
        long rowBytes = (long) vocab * Float.BYTES;
        ForwardArgs args = ForwardArgs.tree(s.tree.tokens(), s.tree.parents(), logits, b * maxTreeNodes * rowBytes);
        if (s.attends && s.request.policy().readsFinalHidden()) args = args.withFinalHidden(finalHidden(batch), hiddenOffset(b, 0));
        return args;
    }

    /**
     * Chooses each sequence's tokens. A lone root that must be sampled on the host (host sampling, repetition
     * penalty, min-p, filters) is sampled there as plain decoding does; relaxed requests are verified on the
     * host; the rest take one verification call for the batch, so only its small results cross to the host.
     */
    private VerifyResult[] verify(List<Sequence> active) {
        int batch = active.size();
        long v0 = System.nanoTime();
        int[][] tokens = new int[batch][], parents = new int[batch][];
        SamplingParams[] params = new SamplingParams[batch];
        float[][][] rows = new float[batch][][];
        boolean[] onHost = new boolean[batch];
        boolean anyNative = false;
        for (int b = 0; b < batch; b++) {
            Sequence s = active.get(b);
            tokens[b] = s.tree.tokens();
            parents[b] = s.tree.parents();
            params[b] = s.params;
            // A plain step sampled on the host costs what "speculation off" costs, so backing off can reach it. In
            // a batch, a greedy plain step takes the batch's one verification call instead of copying its row over
            // the vocabulary to the host: the same argmax (ties by lower id), without the per-sequence copies.
            boolean nativeStep = deviceSampling || (batch > 1 && s.request.sampling().greedy());
            onHost[b] = s.tree.size() == 1 && !(nativeStep && s.request.deviceSamplable());
            try {
                if (onHost[b] || s.request.needsHostRows()) rows[b] = hostRows(s, b);
            } catch (RuntimeException e) {
                s.fail(e);
            }
            anyNative |= !onHost[b] && s.request.relaxed() == null;
        }
        VerifyResult[] results = new VerifyResult[batch];
        for (int b = 0; b < batch; b++) params[b] = randomStream(params[b], active.get(b).length);
        if (anyNative) {
            try {
                results = TreeVerifier.verify(target.context(), maxTreeNodes, vocab, tokens, parents, params, logits, null, 0);
            } catch (RuntimeException e) { // not one sequence's fault that can be told apart: all verified here fail
                for (int b = 0; b < batch; b++) if (!onHost[b] && active.get(b).request.relaxed() == null) active.get(b).fail(e);
            }
        }
        for (int b = 0; b < batch; b++) {
            Sequence s = active.get(b);
            if (!s.active() || (!onHost[b] && s.request.relaxed() == null)) continue;
            try {
                if (onHost[b]) {
                    int token = s.sampler.sample(rows[b][0], s.history, s.length);
                    results[b] = new VerifyResult(0, 0, token, new int[] {0}, new int[] {1});
                } else if (s.request.relaxed() != null) {
                    results[b] = s.request.relaxed().verify(s.tree.tokens(), s.tree.parents(), rows[b]);
                }
            } catch (RuntimeException e) {
                s.fail(e);
            }
        }
        double verifySeconds = (System.nanoTime() - v0) / 1e9 / batch;
        for (Sequence s : active) s.forwardSeconds += verifySeconds;
        return results;
    }

    /**
     * The random stream of a sequence's verification at this position: a key made of its seed and its text's
     * length (prompt and tokens so far), so that the same request with the same seed draws the same numbers at
     * the same place whatever else is in the batch, and whenever it runs. spec_verify's own step counter is then
     * left at 0: it is one number for the whole batch.
     */
    static SamplingParams randomStream(SamplingParams p, int position) {
        long key = SplitMix64.next(SplitMix64.next(p.seed()) + position);
        return new SamplingParams(key, p.temperature(), p.topP(), p.topK());
    }

    /**
     * Keeps each decoding sequence's accepted path and each prefilling sequence's chunk in its KV cache, all in
     * one call (spec_kv_commit_batch). That call changes nothing when it refuses one cache, so then each is
     * committed alone and only the ones refused alone fail.
     */
    private void commit(List<Sequence> decoding, VerifyResult[] results, List<Sequence> filling) {
        List<Sequence> seqs = new ArrayList<>();
        List<KvCache> kvs = new ArrayList<>();
        List<int[]> paths = new ArrayList<>();
        for (int b = 0; b < decoding.size(); b++) {
            Sequence s = decoding.get(b);
            if (!s.active() || results[b] == null) continue;
            seqs.add(s);
            kvs.add(s.request.kv());
            paths.add(results[b].path());
        }
        for (Sequence s : filling) {
            if (!s.active()) continue;
            int[] chain = new int[s.chunk];
            for (int i = 0; i < chain.length; i++) chain[i] = i;
            seqs.add(s);
            kvs.add(s.request.kv());
            paths.add(chain);
        }
        if (seqs.isEmpty()) return;
        long t0 = System.nanoTime();
        try {
            target.commitBatch(kvs, paths);
        } catch (RuntimeException batchFailure) {
            for (int i = 0; i < seqs.size(); i++) {
                try {
                    if (seqs.size() == 1) throw batchFailure;
                    kvs.get(i).commit(paths.get(i));
                } catch (RuntimeException e) {
                    seqs.get(i).fail(e);
                }
            }
        }
        // Storing the accepted path is part of the step: a longer path costs more than a plain step's one row.
        double perSequence = (System.nanoTime() - t0) / 1e9 / seqs.size();
        for (Sequence s : seqs) {
            if (s.prefilling) s.prefillSeconds += perSequence;
            else s.forwardSeconds += perSequence;
        }
        for (Sequence s : filling) {
            if (!s.active()) continue;
            // The policy's own cache (a draft model's) takes the same chunk, timed as prompt processing.
            long fillStart = System.nanoTime();
            try {
                s.request.policy().prefillChunk(s.request.prompt(), s.prefilled, s.prefilled + s.chunk);
            } catch (RuntimeException e) {
                s.fail(e);
                continue;
            }
            s.prefillSeconds += (System.nanoTime() - fillStart) / 1e9;
            s.prefilled += s.chunk;
        }
    }

    /** Streams each committed sequence's tokens and lets the policies learn. */
    private void accept(List<Sequence> active, VerifyResult[] results) {
        int batch = active.size();
        DraftTree[] trees = new DraftTree[batch];
        Map<DraftPolicy, List<Sequence>> policies = new IdentityHashMap<>();
        double[] stepSeconds = new double[batch], observeSeconds = new double[batch];
        boolean[] learns = new boolean[batch];
        for (int b = 0; b < batch; b++) {
            Sequence s = active.get(b);
            trees[b] = s.tree;
            s.verified = null;
            if (!s.active()) continue;
            VerifyResult r = results[b];
            try {
                long o0 = System.nanoTime();
                s.verified = r;
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
                long p0 = System.nanoTime();
                if (s.attends) s.request.policy().observe(s.tree, r);
                if (s.attends && s.request.policy().readsFinalHidden()) {
                    s.request.policy().observeFinalHidden(finalHidden, hiddenOffset(b, r.path()[r.path().length - 1]));
                    s.request.policy().observeFinalHiddenPath(finalHidden, hiddenOffset(b, 0), r.path());
                }
                long o1 = System.nanoTime();
                observeSeconds[b] = (o1 - p0) / 1e9;
                double other = (o1 - o0) / 1e9;
                s.stats.addTimes(s.draftSeconds, s.forwardSeconds, other);
                stepSeconds[b] = s.draftSeconds + s.forwardSeconds + other;
                // A policy the budget holds to plain decoding learns only now and then: learning costs too.
                learns[b] = s.allowed > 1 || s.budget.learnsWhilePlain(s.request.policy().name());
                if (learns[b]) policies.computeIfAbsent(s.request.policy(), p -> new ArrayList<>()).add(s);
            } catch (RuntimeException e) {
                s.fail(e);
            }
        }
        long l0 = System.nanoTime();
        for (var p : policies.entrySet()) {
            try {
                p.getKey().observeBatch(trees, logits, maxTreeNodes);
            } catch (RuntimeException e) {
                for (Sequence s : p.getValue()) s.fail(e);
            }
        }
        // Learning is part of what a step costs: the budget and the figures count it, shared by the batch.
        double learn = (System.nanoTime() - l0) / 1e9 / batch;
        for (int b = 0; b < batch; b++) {
            Sequence s = active.get(b);
            if (s.verified != null && s.failure == null) {
                s.stats.addTimes(0, 0, learn);
                // The policy's own work (drafting, observing, learning) is told apart from the target's: it is what
                // the policy costs beyond plain decoding, whether or not the step speculated.
                s.budget.record(s.request.policy().name(), s.allowed, s.tree.size(), s.draftSeconds,
                        observeSeconds[b] + (learns[b] ? learn : 0), stepSeconds[b] + learn, results[b].nAccepted() + 1);
            }
        }
    }

    /** The step as the planner sees it: its rows are the trees' and the prompt chunks'. */
    private static StepPlanner.Outcome outcome(List<Sequence> active, VerifyResult[] results, int prefillRows, double seconds) {
        int n = active.size(), rows = prefillRows;
        String[] names = new String[n];
        int[] allowed = new int[n], nodes = new int[n], accepted = new int[n];
        for (int b = 0; b < n; b++) {
            Sequence s = active.get(b);
            names[b] = s.request.policy().name();
            allowed[b] = s.allowed;
            nodes[b] = s.tree.size();
            rows += nodes[b];
            accepted[b] = s.verified == null ? -1 : s.verified.nAccepted();
        }
        return new StepPlanner.Outcome(seconds, rows, names, allowed, nodes, accepted);
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

    /**
     * Makes the tree logits buffer hold batch trees now (what the memory budget counted for the batch), so that a
     * batch growing to that size does not stop a step to allocate and zero a larger one.
     */
    public synchronized void reserve(int batch) {
        ensureLogits(batch);
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
