package dev.specula;

import dev.specula.chat.Chat;
import dev.specula.chat.ChatMessage;
import dev.specula.chat.ChatOptions;
import dev.specula.chat.ChatResult;
import dev.specula.chat.ChatTemplateException;
import dev.specula.engine.GenerationRequest;
import dev.specula.engine.GenerationResult;
import dev.specula.engine.Generator;
import dev.specula.engine.LoadedModel;
import dev.specula.engine.MemoryBudget;
import dev.specula.engine.MemoryBudgetException;
import dev.specula.engine.MemoryPolicy;
import dev.specula.engine.SamplingOptions;
import dev.specula.engine.TextListener;
import dev.specula.model.ModelFile;
import dev.specula.nativeapi.Context;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import java.util.concurrent.Semaphore;
import java.util.function.BooleanSupplier;

/**
 * The front door for embedding Specula: a model on a backend with a default drafter, built once and shared.
 * Thread-safe: {@link #generate} may run on many threads at once, each call with its own KV cache, up to the
 * batch at a time (further calls wait their turn); state that learns across requests (the recycling matrix, the
 * draft model's acceptance predictor) is shared by all.
 *
 * <p>Before any weight reaches the backend, the engine checks its {@link MemoryBudget} (weights, KV caches for
 * the whole context times the batch, scratch, the recycling matrix, the draft model, the step buffers) against
 * the memory available; what does not fit is refused or shrunk, as the {@link MemoryPolicy} says, so a run never
 * fails midway for memory. A shrink is logged and reported by {@link #memoryBudget()}.
 *
 * <pre>{@code
 * try (SpeculaEngine engine = SpeculaEngine.builder().model(Path.of("model.gguf")).drafter("recycling").build()) {
 *     engine.generate("public static int max(int a, int b) {\n", 128, System.out::print);
 * }
 * }</pre>
 */
public final class SpeculaEngine implements AutoCloseable {
    private final Context context;
    private final LoadedModel model;
    private final Drafters drafters;
    private final Generator generator;
    private final String drafter;

    private final MemoryBudget.Fit memory;
    private final Semaphore turns;

    private SpeculaEngine(Builder b) {
        if (b.model == null) throw new IllegalArgumentException("SpeculaEngine.builder() needs a model");
        if (!Drafters.NAMES.contains(b.drafter))
            throw new IllegalArgumentException("unknown drafter '" + b.drafter + "'; choose one of " + Drafters.NAMES);
        Context ctx = Context.open(b.backend, b.device);
        LoadedModel loaded = null;
        Drafters made = null;
        try {
            ctx.setThreads(b.threads);
            ModelFile file = ModelFile.open(b.model); // mapped, nothing allocated yet
            MemoryBudget.Request request;
            try {
                request = Drafters.budgetRequest(b.backend, file, b.drafter, b.draftModel, b.contextLength, b.batch, b.maxTreeNodes);
                this.memory = MemoryBudget.fit(request, b.memoryPolicy, MemoryBudget.available(ctx, b.memoryLimit, MemoryBudget.DEFAULT_SAFETY_MARGIN));
            } catch (RuntimeException e) {
                file.close();
                throw e;
            }
            if (memory.shrunk()) System.getLogger(SpeculaEngine.class.getName()).log(System.Logger.Level.WARNING, memory.describe());
            MemoryBudget.Request chosen = memory.budget().request();
            loaded = LoadedModel.open(ctx, file, request.kvType());
            this.model = loaded;
            made = new Drafters(model, chosen.maxTreeNodes(), b.adaptive, b.draftModel, chosen.contextLength());
            this.drafters = made;
            this.generator = model.generator(chosen.contextLength());
            this.drafter = b.drafter;
            drafters.speculation(drafter); // fails now, not on the first request, if the drafter cannot be made
            // The verification and recycling scratch at its final size now, so no step allocates it later.
            ctx.reserve(chosen.batch(), chosen.maxTreeNodes(), model.model().shape().nVocab(), chosen.drafting().recyclerK());
            this.turns = new Semaphore(chosen.batch(), true);
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
        return generate(new GenerationRequest(prompt, maxTokens, SamplingOptions.GREEDY, List.of(), null, null), listener, () -> false);
    }

    /**
     * One request with its own options; when it names no speculation, the engine's drafter is used ("none"
     * decodes plainly). Cancel by making cancelled return true.
     */
    public GenerationResult generate(GenerationRequest request, TextListener listener, BooleanSupplier cancelled) {
        GenerationRequest r = request.speculation() == null ? request.withSpeculation(drafters.speculation(drafter)) : request;
        turns.acquireUninterruptibly(); // at most the budgeted batch of KV caches and step buffers at once
        try {
            return generator.generate(r, listener, cancelled);
        } finally {
            turns.release();
        }
    }

    /**
     * Generation from a prompt already tokenized (a chat template's special tokens parsed), with the named drafter
     * (null: the engine's; "none" decodes plainly); the request's prompt text and speculation are not read.
     * extraStopTokens end it as EOS does.
     */
    public GenerationResult generate(int[] promptTokens, Set<Integer> extraStopTokens, GenerationRequest request, String drafterName,
                                     TextListener listener, BooleanSupplier cancelled) {
        GenerationRequest r = request.withSpeculation(drafters.speculation(drafterName == null ? drafter : drafterName));
        turns.acquireUninterruptibly();
        try {
            return generator.generate(promptTokens, extraStopTokens, r, listener, cancelled);
        } finally {
            turns.release();
        }
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

    /** Makes the per-request speculation of a named drafter, sharing this engine's learned state. */
    public GenerationRequest.Speculation speculation(String drafterName) {
        return drafters.speculation(drafterName);
    }

    @Override
    public void close() {
        drafters.close();
        model.close();
        context.close();
    }

    /** Options for {@link SpeculaEngine}; every one has a default but the model. */
    public static final class Builder {
        private Path model;
        private String backend = "cpu";
        private int device;
        private int threads;
        private int contextLength = 4096;
        private String drafter = "recycling";
        private Path draftModel;
        private int maxTreeNodes = 81;
        private boolean adaptive = true;
        private int batch = 4;
        private MemoryPolicy memoryPolicy = MemoryPolicy.REFUSE;
        private long memoryLimit;

        private Builder() {}

        /** A GGUF file or a Hugging Face checkpoint folder. */
        public Builder model(Path path) {
            this.model = path;
            return this;
        }

        /** "cpu" (default) or "cuda", and the device index. */
        public Builder backend(String name, int deviceIndex) {
            this.backend = name;
            this.device = deviceIndex;
            return this;
        }

        /** CPU threads; 0 (default) uses all cores. */
        public Builder threads(int n) {
            this.threads = n;
            return this;
        }

        /** KV cache positions per request (default 4096, at most the model's training context). */
        public Builder contextLength(int n) {
            this.contextLength = n;
            return this;
        }

        /** none, pld, recycling (default), draft-model or early-exit. */
        public Builder drafter(String name) {
            this.drafter = name;
            return this;
        }

        /** The draft model for the draft-model drafter. */
        public Builder draftModel(Path path) {
            this.draftModel = path;
            return this;
        }

        /** The largest draft tree, root included (default 81). */
        public Builder maxTreeNodes(int n) {
            this.maxTreeNodes = n;
            return this;
        }

        /** Whether measured step costs may shrink trees down to plain decoding (default true). */
        public Builder adaptive(boolean on) {
            this.adaptive = on;
            return this;
        }

        /** Requests generating at once, each with its own KV cache (default 4); more wait their turn. */
        public Builder batch(int n) {
            this.batch = n;
            return this;
        }

        /** What to do when the memory budget does not fit: refuse (default), shrink the tree or shrink the batch. */
        public Builder memoryPolicy(MemoryPolicy policy) {
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
         * Builds the engine; throws {@link MemoryBudgetException}, before loading anything, when the memory budget
         * does not fit and the policy cannot shrink it enough.
         */
        public SpeculaEngine build() {
            return new SpeculaEngine(this);
        }
    }
}
