package dev.specula;

import dev.specula.chat.Chat;
import dev.specula.chat.ChatMessage;
import dev.specula.chat.ChatOptions;
import dev.specula.chat.ChatResult;
import dev.specula.chat.ChatTemplateException;
import dev.specula.engine.BatchScheduler;
import dev.specula.engine.DecodeLoop;
import dev.specula.engine.SpecStats;
import dev.specula.engine.SpeculationBudget;
import dev.specula.engine.StepCostModel;
import dev.specula.engine.TokenSink;
import dev.specula.memory.MemoryBudget;
import dev.specula.memory.MemoryBudgetException;
import dev.specula.memory.MemoryPolicy;
import dev.specula.model.LoadedModel;
import dev.specula.model.ModelFile;
import dev.specula.nativeapi.Backend;
import dev.specula.nativeapi.Context;
import dev.specula.nativeapi.KvCache;
import dev.specula.nativeapi.Specula;
import dev.specula.nativeapi.SpeculaException;
import dev.specula.tokenizer.StreamingDecoder;
import dev.specula.tokenizer.Tokenizer;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.BooleanSupplier;

/**
 * The front door for embedding Specula: a model on a backend with a default drafter, built once and shared.
 * Thread-safe: {@link #generate} may run on many threads at once. The engine batches them continuously: one
 * scheduler thread runs decoding steps over up to {@link Builder#batch} sequences (each with its own KV cache,
 * drafter and sampling), requests join and leave between steps, further requests wait in a bounded FIFO queue,
 * and beyond it are refused with {@link EngineBusyException}. Each step's tree sizes come from a cost model
 * ({@link StepCostModel}): drafts only where they pay, so a large enough batch decodes plainly. Greedy output is
 * the same whatever else is in the batch. State that learns across requests (the recycling matrix, the draft
 * model's acceptance predictor) is shared by all. {@link #stats()} shows the batch, the queue and the speculative
 * counters. {@link #close} refuses new requests, stops the running ones at their next step (they end
 * {@link StopReason#CANCELLED}) and frees native memory only after they left.
 *
 * <p>Before any weight reaches the backend, the engine checks its {@link MemoryBudget} (weights, KV caches for
 * the whole context times the batch, scratch, the recycling matrix, the draft model, the step buffers) against
 * the memory available; what does not fit is refused or shrunk, as the {@link MemoryPolicy} says, so a run never
 * fails midway for memory. A shrink is logged and reported by {@link #memoryBudget()}.
 *
 * <pre>{@code
 * try (SpeculaEngine engine = SpeculaEngine.builder().model(Path.of("model.gguf")).drafter(Drafter.RECYCLING).build()) {
 *     engine.generate("public static int max(int a, int b) {\n", 128, System.out::print);
 * }
 * }</pre>
 */
public final class SpeculaEngine implements AutoCloseable {
    /** KV positions per request unless told otherwise (at most the model's training context). */
    public static final int DEFAULT_CONTEXT_LENGTH = 4096;
    /** The largest draft tree, root included, unless told otherwise. */
    public static final int DEFAULT_MAX_TREE_NODES = 81;
    /** Requests generating at once unless told otherwise. */
    public static final int DEFAULT_BATCH = 4;
    /** Requests that may wait for a place in the batch unless told otherwise; more are refused. */
    public static final int DEFAULT_MAX_QUEUED = 256;

    private final Context context;
    private final LoadedModel model;
    private final Drafters drafters;
    private final Drafter drafter;
    private final int contextLength;
    private final MemoryBudget.Fit memory;
    private final int maxTreeNodes;
    private final DecodeLoop loop;
    private final BatchScheduler scheduler;
    /** Budgets outlive requests: what one measured (step costs, acceptance per policy) serves the next. */
    private final Map<String, SpeculationBudget> budgets = new ConcurrentHashMap<>();

    private final Object lifecycle = new Object();
    private int running; // requests inside generate, guarded by lifecycle
    private volatile boolean closing;
    private boolean closed; // native memory freed, guarded by lifecycle
    /** A close came from inside a request (a callback): the last request to leave frees. Guarded by lifecycle. */
    private boolean closeDeferred;
    /** How many generate calls the current thread is inside (a listener may start another): 0 outside. */
    private final ThreadLocal<int[]> generateDepth = ThreadLocal.withInitial(() -> new int[1]);

    private SpeculaEngine(Builder b) {
        Context ctx = Context.open(b.backend, b.device);
        LoadedModel loaded = null;
        Drafters made = null;
        try {
            ctx.setThreads(b.threads);
            ModelFile file = ModelFile.open(b.model); // mapped, nothing allocated yet
            try {
                this.memory = MemoryBudget.fit(b.request(file), b.memoryPolicy, b.limit(ctx));
            } catch (RuntimeException e) {
                file.close();
                throw e;
            }
            if (memory.shrunk()) System.getLogger(SpeculaEngine.class.getName()).log(System.Logger.Level.WARNING, memory.describe());
            MemoryBudget.Request chosen = memory.budget().request();
            loaded = LoadedModel.open(ctx, file, chosen.kvType());
            Tokenizer tokenizer = loaded.tokenizer();
            if (tokenizer.vocabSize() > loaded.model().shape().nVocab())
                throw new IllegalArgumentException(b.model + ": the tokenizer has " + tokenizer.vocabSize() + " tokens, the model only "
                        + loaded.model().shape().nVocab());
            this.model = loaded;
            this.contextLength = chosen.contextLength();
            made = new Drafters(model, chosen.maxTreeNodes(), b.adaptive, b.draftModel, contextLength, b.heads);
            this.drafters = made;
            this.drafter = b.drafter;
            drafters.source(drafter); // fails now, not on the first request, if the drafter cannot be made
            // The verification and recycling scratch at its final size now, so no step allocates it later.
            ctx.reserve(chosen.batch(), chosen.maxTreeNodes(), model.model().shape().nVocab(), chosen.drafting().recyclerK());
            this.maxTreeNodes = chosen.maxTreeNodes();
            // One loop for the batch: its logits hold batch trees of the largest size (what the budget counted).
            DecodeLoop decodeLoop = new DecodeLoop(model.model(), new SpeculationBudget(maxTreeNodes, b.adaptive));
            try {
                decodeLoop.reserve(chosen.batch());
            } catch (RuntimeException e) {
                decodeLoop.close();
                throw e;
            }
            this.loop = decodeLoop;
            int stepTokens = b.stepTokens > 0 ? Math.max(b.stepTokens, chosen.batch()) : chosen.batch() * maxTreeNodes;
            LoadedModel m = loaded;
            int positions = contextLength;
            this.scheduler = new BatchScheduler(loop, () -> m.model().newKvCache(positions), chosen.batch(), b.maxQueued,
                    new StepCostModel(stepTokens), "specula-scheduler");
        } catch (RuntimeException e) {
            if (made != null) made.close();
            if (loaded != null) loaded.close();
            ctx.close();
            throw e;
        }
        this.context = ctx;
    }

    public static Builder builder() {
        return new Builder();
    }

    /** Greedy generation with the engine's drafter, streaming text to listener. */
    public GenerationResult generate(String prompt, int maxTokens, TextListener listener) {
        return generate(GenerationRequest.builder(prompt).maxTokens(maxTokens).build(), listener, () -> false);
    }

    /**
     * One request with its own options; when it names no drafter or speculation, the engine's drafter is used.
     * Blocks until the request ends; the listener is called on this thread, as the text comes.
     *
     * <p>Cancel by making cancelled return true: the request stops at its next step (or leaves the queue) and
     * ends {@link StopReason#CANCELLED}. cancelled is called on the engine's scheduler thread before every step,
     * so it must be cheap and thread-safe (reading a flag). Interrupting the calling thread cancels too. The listener
     * may close the engine ({@link #close} then returns at once); the cancel check may too, but it may not start a
     * request (IllegalStateException: it would wait for the thread that runs it).
     *
     * @throws EngineBusyException   when the queue is full (nothing was started; retry later)
     * @throws IllegalStateException ("engine closed") once the engine is closing
     * @throws IllegalArgumentException for a request the engine cannot run (an empty prompt, one longer than the
     *                                  context, options that do not go together)
     */
    public GenerationResult generate(GenerationRequest request, TextListener listener, BooleanSupplier cancelled) {
        synchronized (lifecycle) {
            if (closing) throw new IllegalStateException("engine closed");
            running++;
        }
        int[] depth = generateDepth.get();
        depth[0]++;
        try {
            return run(request, listener, cancelled);
        } finally {
            if (--depth[0] == 0) generateDepth.remove();
            boolean lastOutOfADeferredClose;
            synchronized (lifecycle) {
                running--;
                lifecycle.notifyAll();
                lastOutOfADeferredClose = running == 0 && closeDeferred && !closed;
            }
            if (lastOutOfADeferredClose) close(); // outside every request now: frees
        }
    }

    /**
     * Tokenizes, queues the request for the scheduler and streams its text: the scheduler thread decodes tokens to
     * text (whole characters, never part of a stop string) and this thread hands it to the listener.
     */
    private GenerationResult run(GenerationRequest request, TextListener listener, BooleanSupplier cancelled) {
        Tokenizer tokenizer = model.tokenizer();
        int[] prompt = request.promptTokens().orElseGet(() -> tokenizer.encode(request.prompt(), request.addBos().orElse(tokenizer.addBos())));
        if (prompt.length == 0) throw new IllegalArgumentException("the prompt is empty and the model adds no BOS token");
        if (prompt.length >= contextLength)
            throw new IllegalArgumentException("the prompt's " + prompt.length + " tokens do not fit a context of " + contextLength);
        Drafter named = request.drafter() != null ? request.drafter() : drafter;
        GenerationRequest.Speculation own = request.speculation();
        Drafters.Source source = own != null ? new Drafters.Source(own::policy, own.maxTreeNodes(), own.adaptive()) : drafters.source(named);
        boolean plain = own == null && named == Drafter.NONE;
        // A policy of the caller's own may ask for larger trees than the engine's logits hold: it gets the engine's.
        SpeculationBudget budget = budget(Math.min(source.maxTreeNodes(), maxTreeNodes), source.adaptive());
        StreamingDecoder decoder = new StreamingDecoder(tokenizer);
        StopStrings stops = new StopStrings(request.stopStrings());
        Set<Integer> stopTokens = new HashSet<>(tokenizer.stopTokens());
        stopTokens.addAll(request.stopTokens());
        BatchScheduler.Ticket ticket = scheduler.submit(new BatchScheduler.Job() {
            @Override
            public DecodeLoop.Request start(KvCache kv, BatchScheduler.Ticket t) {
                TokenSink sink = token -> {
                    String shown = stops.accept(decoder.accept(token));
                    if (!shown.isEmpty()) t.post(shown);
                    return !stops.isStopped();
                };
                return new DecodeLoop.Request(kv, prompt, request.maxTokens(), request.sampling(), source.policies().get(), stopTokens::contains,
                        sink, () -> closing || t.cancelled() || cancelled.getAsBoolean(), request.filters(), request.relaxed());
            }

            @Override
            public SpeculationBudget budget() {
                return budget;
            }

            @Override
            public BooleanSupplier cancelled() {
                return cancelled;
            }
        });
        StringBuilder text = new StringBuilder();
        boolean interrupted = false;
        try {
            while (true) {
                String piece;
                try {
                    piece = ticket.nextText();
                } catch (InterruptedException e) {
                    interrupted = true; // cancel, and wait for the request to leave the batch
                    ticket.cancel();
                    continue;
                }
                if (piece == null) break;
                text.append(piece);
                listener.onText(piece);
            }
        } catch (RuntimeException | Error e) {
            ticket.cancel(); // the listener failed: the request stops at its next step
            throw e;
        } finally {
            if (interrupted) Thread.currentThread().interrupt();
        }
        DecodeLoop.Result r = ticket.result();
        String tail = stops.accept(decoder.flush()) + stops.flush();
        if (!tail.isEmpty()) {
            text.append(tail);
            listener.onText(tail);
        }
        SpecStats spec = r.stats();
        GenerationStats stats = new GenerationStats(prompt.length, r.tokens().length, spec.promptSeconds(), spec.generateSeconds());
        return new GenerationResult(prompt, r.tokens(), text.toString(), r.reason(), stats, plain ? null : spec);
    }

    private SpeculationBudget budget(int treeNodes, boolean adaptive) {
        return budgets.computeIfAbsent(treeNodes + (adaptive ? "a" : "f"), k -> new SpeculationBudget(treeNodes, adaptive));
    }

    /**
     * A snapshot of the scheduler: batch size, queue depth, totals, and the speculative counters per drafter
     * (vLLM's definitions; see {@link EngineStats}). Cheap; for a metrics endpoint.
     */
    public EngineStats stats() {
        return scheduler.stats();
    }

    /**
     * Answers a conversation with the model's chat template (see {@link Chat}): streams the answer's text to
     * listener, stops at the model's end-of-turn tokens. Bad conversations and templates throw
     * {@link ChatTemplateException}.
     */
    public ChatResult chat(List<ChatMessage> messages, ChatOptions options, TextListener listener) {
        return chat().chat(messages, options, listener, () -> false);
    }

    private volatile Chat chat;

    /** The chat service on this engine's model and its own template (made on first use). */
    public Chat chat() {
        Chat c = chat;
        if (c == null) {
            synchronized (this) {
                if (chat == null) chat = Chat.of(this);
                c = chat;
            }
        }
        return c;
    }

    /**
     * The memory budget the engine was built with: its items, the limit it was checked against, and what the
     * memory policy shrank (if anything). Requests naming a drafter other than the engine's may need that
     * drafter's own buffers beyond it.
     */
    public MemoryBudget.Fit memoryBudget() {
        return memory;
    }

    public LoadedModel model() {
        return model;
    }

    /** How often the draft model was opened (once at most): for the tests. */
    int draftModelOpens() {
        return drafters.draftModelOpens();
    }

    /** The engine's drafter: what requests naming none use. */
    public Drafter drafter() {
        return drafter;
    }

    /** KV positions per request (the builder's, capped to the model's training context and the memory budget). */
    public int contextLength() {
        return contextLength;
    }

    /**
     * Refuses new requests, stops the running ones at their next step and waits for them, then frees the drafters,
     * the model and the context. Idempotent.
     *
     * <p>Called from inside a request (its text listener, its cancel check or its draft policy), it cannot wait for
     * the requests to leave, its own among them: it refuses new requests, stops the running ones at their next step
     * and returns at once; the last request to leave the engine frees it, before its generate returns.
     */
    @Override
    public void close() {
        synchronized (lifecycle) {
            if (closed) return;
            closing = true;
        }
        if (insideGenerate() || scheduler.onSchedulerThread()) {
            closeFromInsideARequest();
            return;
        }
        // Refuses new requests, fails the queued ones ("engine closed"); the running ones see closing at their next
        // step and end cancelled. Returns once the scheduler has stopped.
        scheduler.close();
        synchronized (lifecycle) {
            boolean interrupted = false;
            while (running > 0) {
                try {
                    lifecycle.wait();
                } catch (InterruptedException e) {
                    interrupted = true; // keep waiting: freeing memory under a running request would crash
                }
            }
            if (interrupted) Thread.currentThread().interrupt();
            if (closed) return; // another close freed everything while this one waited
            closed = true;
            loop.close();
            drafters.close();
            model.close();
            context.close();
        }
    }

    /** Whether the calling thread is inside generate (in a text listener), leaving no trace when it is not. */
    private boolean insideGenerate() {
        int[] depth = generateDepth.get();
        if (depth[0] > 0) return true;
        generateDepth.remove();
        return false;
    }

    /** close, from a callback of a request: stops without waiting, and leaves the freeing to the last one out. */
    private void closeFromInsideARequest() {
        scheduler.stopAccepting(); // the running requests see closing at their next step
        synchronized (lifecycle) {
            closeDeferred = true;
            if (running > 0) return; // the last generate to return calls close again, from outside
        }
        // Only the scheduler thread gets here, in a request whose caller already left (its listener threw): no
        // generate is left to free, and this thread cannot wait for itself.
        Thread.ofPlatform().name("specula-close").daemon(true).start(this::close);
    }

    /** Options for {@link SpeculaEngine}; every one has a default but the model. */
    public static final class Builder {
        private Path model;
        private Backend backend = Backend.CPU;
        private int device;
        private int threads;
        private int contextLength = DEFAULT_CONTEXT_LENGTH;
        private Drafter drafter = Drafter.parse(Drafter.DEFAULT_NAME);
        private Path draftModel;
        private Path heads;
        private int maxTreeNodes = DEFAULT_MAX_TREE_NODES;
        private boolean adaptive = true;
        private int batch = DEFAULT_BATCH;
        private int maxQueued = DEFAULT_MAX_QUEUED;
        private int stepTokens;
        private MemoryPolicy memoryPolicy = MemoryPolicy.REFUSE;
        private long memoryLimit;

        private Builder() {}

        /** A GGUF file or a Hugging Face checkpoint folder. */
        public Builder model(Path path) {
            this.model = path;
            return this;
        }

        /** The backend (default cpu) and the device index on it (default 0). */
        public Builder backend(Backend b, int deviceIndex) {
            if (b == null) throw new IllegalArgumentException("backend is null");
            if (deviceIndex < 0) throw new IllegalArgumentException("the device index must be >= 0, got " + deviceIndex);
            this.backend = b;
            this.device = deviceIndex;
            return this;
        }

        /** CPU threads; 0 (default) uses all cores. */
        public Builder threads(int n) {
            if (n < 0) throw new IllegalArgumentException("threads must be >= 0 (0: all cores), got " + n);
            this.threads = n;
            return this;
        }

        /** KV cache positions per request (default {@value SpeculaEngine#DEFAULT_CONTEXT_LENGTH}, at most the model's training context). */
        public Builder contextLength(int n) {
            this.contextLength = n;
            return this;
        }

        /** The drafter of requests that name none (default recycling). */
        public Builder drafter(Drafter d) {
            if (d == null) throw new IllegalArgumentException("drafter is null");
            this.drafter = d;
            return this;
        }

        /** The draft model for the draft-model drafter. */
        public Builder draftModel(Path path) {
            this.draftModel = path;
            return this;
        }

        /**
         * The draft heads for the medusa and hydra drafters: a folder with config.json and medusa_lm_head.safetensors
         * or hydra_lm_head.safetensors, or that safetensors file (config.json beside it); for the eagle drafter, the EAGLE
         * layer's folder (config.json and model.safetensors, or an eagle subfolder) or its safetensors file.
         */
        public Builder heads(Path path) {
            this.heads = path;
            return this;
        }

        /** The largest draft tree, root included (default {@value SpeculaEngine#DEFAULT_MAX_TREE_NODES}). */
        public Builder maxTreeNodes(int n) {
            this.maxTreeNodes = n;
            return this;
        }

        /** Whether measured step costs may shrink trees down to plain decoding (default true). */
        public Builder adaptive(boolean on) {
            this.adaptive = on;
            return this;
        }

        /**
         * Sequences generating at once, each with its own KV cache (default {@value SpeculaEngine#DEFAULT_BATCH}): the
         * batch the scheduler steps and the memory budget counts. More wait in the queue.
         */
        public Builder batch(int n) {
            this.batch = n;
            return this;
        }

        /**
         * Requests that may wait for a place in the batch (default {@value SpeculaEngine#DEFAULT_MAX_QUEUED}); beyond
         * it {@link SpeculaEngine#generate} throws {@link EngineBusyException}. 0: refuse whenever the batch is full.
         */
        public Builder maxQueued(int n) {
            if (n < 0) throw new IllegalArgumentException("maxQueued must be >= 0, got " + n);
            this.maxQueued = n;
            return this;
        }

        /**
         * The most tree rows one step runs, all sequences together (default 0: batch times the largest tree, all the
         * logits buffer holds; at least the batch, one root each). Drafts beyond it are handed out round-robin.
         */
        public Builder stepTokens(int n) {
            if (n < 0) throw new IllegalArgumentException("stepTokens must be >= 0 (0: batch x tree nodes), got " + n);
            this.stepTokens = n;
            return this;
        }

        /** What to do when the memory budget does not fit: refuse (default), shrink the tree or shrink the batch. */
        public Builder memoryPolicy(MemoryPolicy policy) {
            if (policy == null) throw new IllegalArgumentException("memory policy is null");
            this.memoryPolicy = policy;
            return this;
        }

        /**
         * The most memory the engine may take of the backend's, in bytes; 0 (default) measures it: the device's
         * free memory for cuda, the host's available memory for cpu, less a safety margin.
         */
        public Builder memoryLimit(long bytes) {
            if (bytes < 0) throw new IllegalArgumentException("memory limit must be >= 0 bytes, got " + bytes);
            this.memoryLimit = bytes;
            return this;
        }

        /**
         * The memory budget of this configuration checked against the memory available, without loading anything
         * (the model file is only mapped; on a machine without the backend the limit is unknown). Throws
         * {@link MemoryBudgetException} where {@link #build} would.
         */
        public MemoryBudget.Fit plan() {
            requireModel();
            try (ModelFile file = ModelFile.open(model)) {
                return MemoryBudget.fit(request(file), memoryPolicy, limit(null));
            }
        }

        /**
         * Builds the engine; throws {@link MemoryBudgetException}, before loading anything, when the memory budget
         * does not fit and the policy cannot shrink it enough.
         */
        public SpeculaEngine build() {
            requireModel();
            return new SpeculaEngine(this);
        }

        private void requireModel() {
            if (model == null) throw new IllegalArgumentException("SpeculaEngine.builder() needs a model");
        }

        /** The budget request of the target file (opened, nothing loaded): KV positions capped to its training context. */
        private MemoryBudget.Request request(ModelFile file) {
            int positions = Math.min(contextLength, file.config().nCtxTrain());
            MemoryBudget.Drafting drafting = drafter.parts().budget().apply(new Drafter.BudgetInputs(file.config(), draftModel, positions, heads, file.weights(), backend));
            return new MemoryBudget.Request(backend, LoadedModel.DEFAULT_KV_TYPE, file.config(), LoadedModel.weightBytes(file),
                    positions, batch, maxTreeNodes, drafting, backend == Backend.CPU ? LoadedModel.cpuPrepackedBytes(file) : 0);
        }

        /** The memory to fit: the explicit limit, else what ctx (or, without one, the backend here) has available. */
        private MemoryBudget.Limit limit(Context ctx) {
            double margin = MemoryBudget.DEFAULT_SAFETY_MARGIN;
            if (memoryLimit > 0) return MemoryBudget.Limit.explicit(memoryLimit);
            if (ctx != null) return MemoryBudget.available(ctx, 0, margin);
            if (backend == Backend.CPU) return MemoryBudget.hostAvailable(margin);
            if (!Specula.backendsCompiled().contains(backend.id())) return MemoryBudget.Limit.unknown(backend + " is not compiled into this library");
            try {
                if (Specula.deviceCount(backend.id()) <= device) return MemoryBudget.Limit.unknown(backend + " has no device " + device + " here");
                try (Context probe = Context.open(backend, device)) {
                    return MemoryBudget.available(probe, 0, margin);
                }
            } catch (SpeculaException e) {
                return MemoryBudget.Limit.unknown(backend + " unavailable here (" + e.getMessage() + ")");
            }
        }
    }
}
