package dev.specula.engine;

import dev.specula.EngineBusyException;
import dev.specula.EngineStats;
import dev.specula.StopReason;
import dev.specula.nativeapi.KvCache;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.function.BooleanSupplier;
import java.util.function.Supplier;

/**
 * Continuous batching: one scheduler thread runs {@link DecodeLoop} steps over the sequences in the batch while
 * callers wait on their {@link Ticket}s. Requests join (FIFO) and leave (finished, cancelled, failed) between
 * steps; a joining request's prompt is prefilled in chunks, inside the steps' token budget and the same forward
 * calls as the others' trees, so a long prompt does not stall the batch; each keeps its own policy, tree budget and sampling. Each step's tree sizes come from
 * the {@link StepCostModel} (token budget, round-robin, drafts only where they pay). A bounded queue holds the
 * requests waiting for a place; beyond it {@link #submit} refuses with {@link EngineBusyException}.
 *
 * <p>KV caches are pooled: at most maxSequences exist, each reused after a truncate, so the memory stays what the
 * budget counted. What a request's {@link Job} does (making its policy and request) runs on the scheduler thread;
 * its cancel check is called there before every step (and while it waits in the queue), so it must be cheap.
 * Callers see a step's text as soon as the step ends; a slow caller does not hold the batch up.
 */
public final class BatchScheduler implements AutoCloseable {
    /** What the scheduler needs of one request; its methods run on the scheduler thread. */
    public interface Job {
        /** The request, on kv (an empty KV cache of the loop's target); a policy it makes belongs to it. */
        DecodeLoop.Request start(KvCache kv, Ticket ticket);

        /** The tree budget of its policy (null: the loop's own). */
        SpeculationBudget budget();

        /** The caller's cancel check, consulted while the request still waits in the queue. */
        BooleanSupplier cancelled();
    }

    private final DecodeLoop loop;
    private final Supplier<KvCache> newKv;
    private final int maxSequences;
    private final int maxQueued;
    private final StepCostModel costs;
    private final Thread thread;

    private final Object lock = new Object();
    private final ArrayDeque<Entry> queue = new ArrayDeque<>(); // guarded by lock
    private final ArrayDeque<KvCache> freeKv = new ArrayDeque<>(); // scheduler thread only (and close, after it ended)
    private final List<KvCache> allKv = new ArrayList<>();
    private boolean closing; // guarded by lock
    private int running; // guarded by lock: sequences admitted and not yet retired

    // Statistics, guarded by lock.
    private long steps, stepSequences, stepRows, finished, failed, refused;
    private final Map<String, long[]> speculative = new TreeMap<>(); // drafts, draftTokens, accepted, then per position

    /**
     * @param newKv        makes an empty KV cache for one sequence (called at most maxSequences times)
     * @param maxSequences sequences generating at once (the batch)
     * @param maxQueued    requests that may wait for a place; more are refused
     */
    public BatchScheduler(DecodeLoop loop, Supplier<KvCache> newKv, int maxSequences, int maxQueued, StepCostModel costs, String threadName) {
        if (maxSequences < 1) throw new IllegalArgumentException("the batch must be >= 1 sequence, got " + maxSequences);
        if (maxQueued < 0) throw new IllegalArgumentException("the queue's limit must be >= 0, got " + maxQueued);
        this.loop = loop;
        this.newKv = newKv;
        this.maxSequences = maxSequences;
        this.maxQueued = maxQueued;
        this.costs = costs;
        this.thread = Thread.ofPlatform().name(threadName).daemon(true).unstarted(this::run);
        thread.start();
    }

    /**
     * Queues a request; it starts when a place in the batch is free (at once if one is). Throws
     * {@link EngineBusyException} when the queue is full and IllegalStateException ("engine closed") once closing.
     */
    public Ticket submit(Job job) {
        if (onSchedulerThread())
            throw new IllegalStateException("a request was started from the engine's scheduler thread (a cancel check or a draft policy): "
                    + "it would wait for the thread that has to run it; start requests from another thread");
        Ticket ticket = new Ticket();
        synchronized (lock) {
            if (closing) throw new IllegalStateException("engine closed");
            if (running + queue.size() >= maxSequences + maxQueued) {
                refused++;
                throw new EngineBusyException(queue.size(), running);
            }
            queue.add(new Entry(job, ticket));
            lock.notifyAll();
        }
        return ticket;
    }

    /** The batch and queue now, and the totals so far. */
    public EngineStats stats() {
        synchronized (lock) {
            Map<String, EngineStats.Speculative> spec = new TreeMap<>();
            for (var e : speculative.entrySet()) {
                long[] c = e.getValue();
                int last = c.length;
                while (last > 3 && c[last - 1] == 0) last--;
                spec.put(e.getKey(), new EngineStats.Speculative(c[0], c[1], c[2], Arrays.copyOfRange(c, 3, last)));
            }
            return new EngineStats(maxSequences, running, queue.size(), maxQueued, steps, stepSequences, stepRows, finished, failed, refused, spec);
        }
    }

    /** Whether the calling thread is the scheduler's own (running a job's callback: a cancel check, a policy). */
    public boolean onSchedulerThread() {
        return Thread.currentThread() == thread;
    }

    /**
     * Refuses new requests from now on and fails the queued ones ("engine closed") at the next step, without
     * waiting: the first half of {@link #close}, safe on any thread.
     */
    public void stopAccepting() {
        synchronized (lock) {
            closing = true;
            lock.notifyAll();
        }
    }

    /**
     * Refuses new requests, fails the queued ones ("engine closed") and waits until the running ones have left:
     * their jobs' cancel checks must turn true for that. Then frees the KV caches. Idempotent. On the scheduler
     * thread itself it would wait for itself: it throws IllegalStateException there (use {@link #stopAccepting}).
     */
    @Override
    public void close() {
        if (onSchedulerThread())
            throw new IllegalStateException("the scheduler was closed from its own thread (a cancel check or a draft policy): "
                    + "it would wait for itself; close it from another thread");
        stopAccepting();
        boolean interrupted = false;
        while (thread.isAlive()) {
            try {
                thread.join();
            } catch (InterruptedException e) {
                interrupted = true; // keep waiting: freeing KV caches under a running step would crash
            }
        }
        if (interrupted) Thread.currentThread().interrupt();
        synchronized (lock) {
            for (KvCache kv : allKv) kv.close();
            allKv.clear();
            freeKv.clear();
        }
    }

    private static final class Entry {
        final Job job;
        final Ticket ticket;
        DecodeLoop.Sequence sequence;

        Entry(Job job, Ticket ticket) {
            this.job = job;
            this.ticket = ticket;
        }
    }

    private void run() {
        List<Entry> active = new ArrayList<>();
        while (true) {
            List<Entry> joining = new ArrayList<>();
            List<Entry> refusedNow = new ArrayList<>();
            List<Entry> waiting;
            synchronized (lock) {
                while (active.isEmpty() && queue.isEmpty() && !closing) {
                    try {
                        lock.wait();
                    } catch (InterruptedException e) {
                        // the scheduler stops only through close
                    }
                }
                if (closing) {
                    refusedNow.addAll(queue);
                    queue.clear();
                    if (active.isEmpty() && refusedNow.isEmpty()) return;
                }
                waiting = new ArrayList<>(queue);
            }
            for (Entry e : refusedNow) e.ticket.fail(new IllegalStateException("engine closed"));
            // Requests cancelled while they wait leave the queue now, so a disconnected client frees its place.
            List<Entry> cancelledWaiting = new ArrayList<>();
            for (Entry e : waiting) {
                try {
                    if (e.job.cancelled().getAsBoolean()) cancelledWaiting.add(e);
                } catch (RuntimeException ex) {
                    cancelledWaiting.add(e);
                }
            }
            synchronized (lock) {
                queue.removeAll(cancelledWaiting);
                finished += cancelledWaiting.size();
                while (!queue.isEmpty() && running < maxSequences) {
                    joining.add(queue.poll());
                    running++;
                }
            }
            for (Entry e : cancelledWaiting) e.ticket.complete(new DecodeLoop.Result(new int[0], StopReason.CANCELLED, new SpecStats()));
            for (Entry e : joining) if (admit(e)) active.add(e);
            List<DecodeLoop.Sequence> stepping = new ArrayList<>();
            for (Entry e : active) if (e.sequence.refresh()) stepping.add(e.sequence);
            if (!stepping.isEmpty()) {
                try {
                    loop.step(stepping, planner, costs.stepTokens());
                } catch (Throwable t) { // a fault of the step itself, not of one sequence: those in it fail
                    for (DecodeLoop.Sequence s : stepping) s.fail(t);
                }
            }
            List<Entry> leaving = new ArrayList<>();
            for (Iterator<Entry> it = active.iterator(); it.hasNext(); ) {
                Entry e = it.next();
                if (e.sequence.active()) continue;
                it.remove();
                leaving.add(e);
            }
            if (!leaving.isEmpty()) retire(leaving);
        }
    }

    /** Makes the request, whose prompt the steps then prefill in chunks; false (the ticket failed) when that throws. */
    private boolean admit(Entry e) {
        KvCache kv = null;
        DecodeLoop.Request request = null;
        try {
            kv = freeKv.isEmpty() ? newKvCache() : freeKv.poll();
            request = e.job.start(kv, e.ticket);
            e.sequence = loop.join(request, e.job.budget());
            return true;
        } catch (Throwable t) {
            Throwable failure = closePolicy(request, t);
            if (kv != null) release(kv);
            synchronized (lock) {
                running--;
                failed++;
            }
            e.ticket.fail(failure);
            return false;
        }
    }

    private KvCache newKvCache() {
        KvCache kv = newKv.get();
        synchronized (lock) {
            allKv.add(kv);
        }
        return kv;
    }

    /** The sequences that left in a step: their policies closed, their KV caches emptied in one call, their tickets ended. */
    private void retire(List<Entry> leaving) {
        Throwable[] failures = new Throwable[leaving.size()];
        List<KvCache> kvs = new ArrayList<>();
        for (int i = 0; i < failures.length; i++) {
            DecodeLoop.Sequence s = leaving.get(i).sequence;
            failures[i] = closePolicy(s.request(), s.failure());
            kvs.add(s.request().kv());
        }
        releaseAll(kvs);
        synchronized (lock) {
            for (Throwable failure : failures) {
                running--;
                if (failure != null) failed++;
                else finished++;
            }
        }
        for (int i = 0; i < failures.length; i++) {
            Entry e = leaving.get(i);
            if (failures[i] != null) e.ticket.fail(failures[i]);
            else e.ticket.complete(e.sequence.result());
        }
    }

    /**
     * Returns KV caches to the pool, emptied in one call (spec_kv_truncate_batch); if that call refuses, each is
     * released alone, so one cache that cannot be emptied is freed without the others.
     */
    private void releaseAll(List<KvCache> kvs) {
        if (kvs.size() == 1) {
            release(kvs.get(0));
            return;
        }
        try {
            loop.target().truncateBatch(kvs, new int[kvs.size()]);
            freeKv.addAll(kvs);
        } catch (RuntimeException e) {
            for (KvCache kv : kvs) release(kv);
        }
    }

    /** Closes a policy that belongs to its request; returns the request's failure, or the close's. */
    private static Throwable closePolicy(DecodeLoop.Request request, Throwable failure) {
        if (request != null && request.policy() instanceof AutoCloseable c) {
            try {
                c.close();
            } catch (Exception ex) {
                if (failure == null) return new IllegalStateException("closing the request's draft policy failed: " + ex.getMessage(), ex);
                failure.addSuppressed(ex);
            }
        }
        return failure;
    }

    /** Returns a KV cache to the pool, empty; one that cannot be emptied is freed instead. */
    private void release(KvCache kv) {
        try {
            kv.truncate(0);
            freeKv.add(kv);
        } catch (RuntimeException ex) {
            synchronized (lock) {
                allKv.remove(kv);
            }
            kv.close();
        }
    }

    /** The cost model plans; the outcome also feeds the statistics. */
    private final StepPlanner planner = new StepPlanner() {
        @Override
        public void plan(String[] policies, int[] allowed, boolean[] adaptive) {
            costs.plan(policies, allowed, adaptive);
        }

        @Override
        public void observe(Outcome o) {
            costs.observe(o);
            synchronized (lock) {
                steps++;
                stepSequences += o.sequences();
                stepRows += o.rows();
                for (int b = 0; b < o.sequences(); b++) {
                    int drafted = o.nodes()[b] - 1;
                    if (drafted <= 0 || o.accepted()[b] < 0) continue;
                    int accepted = o.accepted()[b];
                    long[] c = speculative.get(o.policies()[b]);
                    if (c == null || c.length < 3 + accepted) {
                        long[] grown = new long[3 + Math.max(accepted, 16)];
                        if (c != null) System.arraycopy(c, 0, grown, 0, c.length);
                        c = grown;
                        speculative.put(o.policies()[b], c);
                    }
                    c[0]++;
                    c[1] += drafted;
                    c[2] += accepted;
                    for (int i = 0; i < accepted; i++) c[3 + i]++;
                }
            }
        }
    };

    /**
     * A caller's side of one request: the text as it is produced, then the result or the failure. The text is
     * posted by the request's token sink on the scheduler thread.
     */
    public static final class Ticket {
        private final ArrayDeque<String> texts = new ArrayDeque<>();
        private DecodeLoop.Result result;
        private Throwable failure;
        private boolean done;
        private volatile boolean cancelled;

        /** Posts text for the caller (from the request's sink). */
        public synchronized void post(String text) {
            texts.add(text);
            notifyAll();
        }

        synchronized void complete(DecodeLoop.Result r) {
            result = r;
            done = true;
            notifyAll();
        }

        synchronized void fail(Throwable t) {
            failure = t;
            done = true;
            notifyAll();
        }

        /** The next piece of text, waiting for it; null once the request has ended and all its text was taken. */
        public synchronized String nextText() throws InterruptedException {
            while (texts.isEmpty() && !done) wait();
            return texts.poll();
        }

        /** The result once ended (after {@link #nextText} returned null); rethrows what made the request fail. */
        public synchronized DecodeLoop.Result result() {
            if (!done) throw new IllegalStateException("the request has not ended");
            if (failure instanceof RuntimeException e) throw e;
            if (failure instanceof Error e) throw e;
            if (failure != null) throw new IllegalStateException(failure.getMessage(), failure);
            return result;
        }

        /** Asks the request to stop at its next step (for a caller that gives up waiting). */
        public void cancel() {
            cancelled = true;
        }

        /** Whether {@link #cancel} was called. */
        public boolean cancelled() {
            return cancelled;
        }
    }
}
