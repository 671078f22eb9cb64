package dev.specula.engine;

import dev.specula.nativeapi.KvCache;
import dev.specula.nativeapi.NativeModel;
import dev.specula.tokenizer.StreamingDecoder;
import dev.specula.tokenizer.Tokenizer;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.BooleanSupplier;

/**
 * Plain text generation: tokenize, decode token by token, stream text, stop on EOS/EOT, a stop string,
 * the token budget or cancellation. One Generator per model; {@link #generate} may run on several threads at
 * once (each call gets its own KV cache), their forward passes taking turns on the model.
 */
public final class Generator {
    private final NativeModel model;
    private final Tokenizer tokenizer;
    private final int contextLength;

    public Generator(NativeModel model, Tokenizer tokenizer, int contextLength) {
        if (tokenizer.vocabSize() > model.shape().nVocab())
            throw new IllegalArgumentException("the tokenizer has " + tokenizer.vocabSize() + " tokens, the model only "
                    + model.shape().nVocab());
        this.model = model;
        this.tokenizer = tokenizer;
        this.contextLength = contextLength;
    }

    /** Budgets outlive requests: what one measured (step costs, acceptance per policy) serves the next. */
    private final Map<String, SpeculationBudget> budgets = new ConcurrentHashMap<>();

    private SpeculationBudget budget(GenerationRequest.Speculation s) {
        return budgets.computeIfAbsent(s.maxNodes() + (s.adaptive() ? "a" : "f"), k -> new SpeculationBudget(s.maxNodes(), s.adaptive()));
    }

    /** The positions of each request's KV cache: the prompt and the generated tokens together. */
    public int contextLength() {
        return contextLength;
    }

    public Tokenizer tokenizer() {
        return tokenizer;
    }

    public NativeModel model() {
        return model;
    }

    public int[] tokenize(GenerationRequest request) {
        boolean bos = request.addBos() != null ? request.addBos() : tokenizer.addBos();
        int[] ids = tokenizer.encode(request.prompt(), bos);
        if (ids.length == 0) throw new IllegalArgumentException("the prompt is empty and the model adds no BOS token");
        return ids;
    }

    public GenerationResult generate(GenerationRequest request, TextListener listener, BooleanSupplier cancelled) {
        int[] prompt = tokenize(request);
        StreamingDecoder decoder = new StreamingDecoder(tokenizer);
        StopStrings stops = new StopStrings(request.stopStrings());
        StringBuilder text = new StringBuilder();
        Set<Integer> stopTokens = tokenizer.stopTokens();
        TokenSink sink = token -> {
            String shown = stops.accept(decoder.accept(token));
            if (!shown.isEmpty()) {
                text.append(shown);
                listener.onText(shown);
            }
            return !stops.isStopped();
        };
        try (KvCache kv = model.newKvCache(contextLength)) {
            int[] tokens;
            StopReason reason;
            GenerationStats stats;
            SpecStats spec = null;
            GenerationRequest.Speculation s = request.speculation();
            if (s == null) {
                try (PlainDecoder plain = new PlainDecoder(model)) {
                    PlainDecoder.Result r = plain.generate(kv, prompt, request.maxTokens(), request.sampling(), stopTokens::contains, sink, cancelled, request.filters());
                    tokens = r.tokens();
                    reason = r.reason();
                    stats = r.stats();
                }
            } else {
                try (SpeculativeEngine engine = new SpeculativeEngine(model, budget(s));
                     AutoCloseable owned = s.policy() instanceof AutoCloseable c ? c : () -> {}) {
                    SpeculativeEngine.Result r = engine.generate(new SpeculativeEngine.Request(kv, prompt, request.maxTokens(),
                            request.sampling(), s.policy(), stopTokens::contains, sink, cancelled, request.filters(), request.relaxed()));
                    tokens = r.tokens();
                    reason = r.reason();
                    spec = r.stats();
                    stats = new GenerationStats(prompt.length, tokens.length, spec.promptSeconds(), spec.generateSeconds());
                } catch (RuntimeException e) {
                    throw e;
                } catch (Exception e) {
                    throw new IllegalStateException("closing the request's draft policy failed: " + e.getMessage(), e);
                }
            }
            String tail = stops.accept(decoder.flush()) + stops.flush();
            if (!tail.isEmpty()) {
                text.append(tail);
                listener.onText(tail);
            }
            return new GenerationResult(prompt, tokens, text.toString(), reason, stats, spec);
        }
    }
}
