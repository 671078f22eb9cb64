package dev.specula;

import dev.specula.engine.GenerationRequest;
import dev.specula.engine.GenerationResult;
import dev.specula.engine.Generator;
import dev.specula.engine.LoadedModel;
import dev.specula.engine.SamplingOptions;
import dev.specula.engine.TextListener;
import dev.specula.nativeapi.Context;
import java.nio.file.Path;
import java.util.List;
import java.util.function.BooleanSupplier;

/**
 * The front door for embedding Specula: a model on a backend with a default drafter, built once and shared.
 * Thread-safe: {@link #generate} may run on many threads at once, each call with its own KV cache; state that
 * learns across requests (the recycling matrix, the draft model's acceptance predictor) is shared by all.
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

    private SpeculaEngine(Builder b) {
        if (b.model == null) throw new IllegalArgumentException("SpeculaEngine.builder() needs a model");
        if (!Drafters.NAMES.contains(b.drafter))
            throw new IllegalArgumentException("unknown drafter '" + b.drafter + "'; choose one of " + Drafters.NAMES);
        Context ctx = Context.open(b.backend, b.device);
        try {
            ctx.setThreads(b.threads);
            this.model = LoadedModel.open(ctx, b.model);
            this.drafters = new Drafters(model, b.maxTreeNodes, b.adaptive, b.draftModel, b.contextLength);
            this.generator = model.generator(b.contextLength);
            this.drafter = b.drafter;
            drafters.speculation(drafter); // fails now, not on the first request, if the drafter cannot be made
        } catch (RuntimeException e) {
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
        return generator.generate(r, listener, cancelled);
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

        public SpeculaEngine build() {
            return new SpeculaEngine(this);
        }
    }
}
