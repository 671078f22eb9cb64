package dev.specula.engine;

import dev.specula.nativeapi.DeviceBuffer;
import dev.specula.nativeapi.ForwardArgs;
import dev.specula.nativeapi.KvCache;
import dev.specula.nativeapi.NativeModel;
import dev.specula.nativeapi.SamplingParams;
import dev.specula.nativeapi.TreeVerifier;
import dev.specula.nativeapi.VerifyResult;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.BooleanSupplier;
import java.util.function.IntPredicate;

/**
 * The speculative loop: each step, every active sequence's policy proposes a tree rooted at its last chosen
 * token; the target runs each tree forward (tree attention); one verification call checks the whole batch;
 * each sequence commits its accepted path in its KV cache and streams the accepted tokens and the bonus
 * token; the policies learn from the outcome. A plain decoding step is the same path with a one-node tree.
 *
 * <p>Greedy verification gives exactly the tokens of plain greedy decoding; sampling gives exactly the
 * distribution of plain sampling with the same temperature, top-k and top-p. One engine serves one batch at a
 * time (calls are serialised); make one per thread for parallel batches.
 */
public final class SpeculativeEngine implements AutoCloseable {
    private final NativeModel target;
    private final int maxNodes;
    private final SpeculationBudget budget;
    private final int vocab;
    private DeviceBuffer logits;
    private int logitsBatch;
    private long step;

    /**
     * @param maxNodes the largest tree, root included (at most {@link TreeVerifier#MAX_NODES})
     * @param adaptive let measured step costs shrink trees, down to plain decoding, when speculation does not pay
     */
    public SpeculativeEngine(NativeModel target, int maxNodes, boolean adaptive) {
        if (maxNodes < 1 || maxNodes > TreeVerifier.MAX_NODES)
            throw new IllegalArgumentException("maxNodes must be in 1.." + TreeVerifier.MAX_NODES + ", got " + maxNodes);
        this.target = target;
        this.maxNodes = maxNodes;
        this.budget = new SpeculationBudget(maxNodes, adaptive);
        this.vocab = target.shape().nVocab();
    }

    public NativeModel target() {
        return target;
    }

    /** One sequence of a batch. The KV cache must be empty and belong to the target. */
    public record Request(KvCache kv, int[] prompt, int maxTokens, SamplingOptions sampling, DraftPolicy policy,
                          IntPredicate isStop, TokenSink sink, BooleanSupplier cancelled) {
        public Request {
            if (prompt.length == 0) throw new IllegalArgumentException("the prompt has no tokens");
            if (maxTokens < 0) throw new IllegalArgumentException("maxTokens must be >= 0, got " + maxTokens);
            if (sampling.repetitionPenalty() != 1f || sampling.minP() != 0f)
                throw new IllegalArgumentException("repetition penalty and min-p are not part of speculative verification;"
                        + " use plain decoding (drafter none) for them");
            if (prompt.length >= kv.capacity())
                throw new IllegalArgumentException("the prompt's " + prompt.length + " tokens do not fit a context of " + kv.capacity());
        }
    }

    public record Result(int[] tokens, StopReason reason, SpecStats stats) {}

    public Result generate(Request request) {
        return generateBatch(List.of(request)).get(0);
    }

    private static final class Sequence {
        final Request request;
        final SamplingParams params;
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

    /** Everything but the prompt's last token goes into the cache; that token is the first tree's root. */
    private void prefill(Sequence s) {
        int[] prompt = s.request.prompt();
        long t0 = System.nanoTime();
        for (int start = 0; start < prompt.length - 1; start += PlainDecoder.PROMPT_CHUNK) {
            int[] chunk = Arrays.copyOfRange(prompt, start, Math.min(prompt.length - 1, start + PlainDecoder.PROMPT_CHUNK));
            target.forward(s.request.kv(), new ForwardArgs(chunk, null, null, ForwardArgs.LogitsMode.NONE, null, 0, null, null, false, 0));
            s.request.kv().commitChain(chunk.length);
        }
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
            target.forward(kv, ForwardArgs.tree(tree.tokens(), tree.parents(), logits, b * maxNodes * rowBytes));
            long t2 = System.nanoTime();
            s.tree = tree;
            s.draftSeconds = (t1 - t0) / 1e9;
            s.forwardSeconds = (t2 - t1) / 1e9;
            tokens[b] = tree.tokens();
            parents[b] = tree.parents();
            params[b] = s.params;
        }
        long v0 = System.nanoTime();
        VerifyResult[] results = TreeVerifier.verify(target.context(), maxNodes, vocab, tokens, parents, params, logits, null, step++);
        double verifySeconds = (System.nanoTime() - v0) / 1e9 / batch;

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
            double other = (System.nanoTime() - o0) / 1e9;
            s.stats.addTimes(s.draftSeconds, s.forwardSeconds + verifySeconds, other);
            budget.record(s.request.policy().name(), s.allowed, s.draftSeconds + s.forwardSeconds + verifySeconds + other, r.nAccepted() + 1);
            trees[b] = s.tree;
            policies.put(s.request.policy(), Boolean.TRUE);
        }
        for (DraftPolicy p : policies.keySet()) p.observeBatch(trees, logits, maxNodes);
    }

    private void ensureLogits(int batch) {
        if (logits != null && logitsBatch >= batch) return;
        if (logits != null) logits.close();
        logits = target.context().allocate((long) batch * maxNodes * vocab * Float.BYTES);
        logitsBatch = batch;
    }

    @Override
    public synchronized void close() {
        if (logits != null) logits.close();
    }
}
