package dev.specula.langchain4j;

import dev.specula.Drafter;
import dev.langchain4j.model.chat.ChatModel;
import dev.langchain4j.model.chat.request.ChatRequest;
import dev.langchain4j.model.chat.response.ChatResponse;
import dev.specula.SpeculaEngine;
import dev.specula.chat.Chat;
import dev.specula.chat.ChatResult;
import java.util.Objects;

/**
 * A LangChain4j {@link ChatModel} on a Specula engine: conversations are rendered with the model's own chat
 * template (tool specifications included), answered with speculative decoding, and returned with the
 * speculation statistics in {@link SpeculaChatResponseMetadata}. Tool calls in the answer (JSON in
 * {@code <tool_call>} tags, or a bare JSON function call) come back as tool execution requests.
 *
 * <pre>{@code
 * ChatModel model = SpeculaChatModel.builder().engine(engine).build();
 * String answer = model.chat("Hello!");
 * }</pre>
 */
public final class SpeculaChatModel implements ChatModel {
    private final ChatBackend backend;
    private final int maxTokens;
    private final Drafter drafter;
    private final long seed;
    private final String modelName;

    private SpeculaChatModel(Builder b) {
        this.backend = Objects.requireNonNull(b.backend, "SpeculaChatModel.builder() needs an engine, a chat or a backend");
        this.maxTokens = b.maxTokens;
        this.drafter = b.drafter;
        this.seed = b.seed;
        this.modelName = b.modelName;
    }

    public static Builder builder() {
        return new Builder();
    }

    @Override
    public ChatResponse doChat(ChatRequest request) {
        ChatResult r = backend.chat(Conversions.messages(request.messages()), Conversions.options(request, maxTokens, drafter, seed),
                text -> { }, () -> false);
        return Conversions.response(r, request.toolSpecifications() != null && !request.toolSpecifications().isEmpty(), modelName, drafter);
    }

    /** Options for both adapters. */
    public static final class Builder extends AdapterBuilder<Builder> {
        public SpeculaChatModel build() {
            return new SpeculaChatModel(this);
        }
    }

    /** What both adapters are built from. */
    abstract static class AdapterBuilder<B extends AdapterBuilder<B>> {
        ChatBackend backend;
        int maxTokens = dev.specula.chat.ChatOptions.DEFAULT_MAX_TOKENS;
        Drafter drafter;
        long seed;
        String modelName = "specula";

        @SuppressWarnings("unchecked")
        private B self() {
            return (B) this;
        }

        /** Chat with the engine's model and its own chat template. */
        public B engine(SpeculaEngine engine) {
            this.backend = ChatBackend.of(engine.chat());
            this.modelName = engine.model().file().path().getFileName().toString();
            return self();
        }

        /** Chat through a {@link Chat} (for example one with a built-in format for a model without a template). */
        public B chat(Chat chat) {
            this.backend = ChatBackend.of(chat);
            return self();
        }

        /** Any backend answering conversations (tests script one). */
        public B backend(ChatBackend backend) {
            this.backend = backend;
            return self();
        }

        /** Most tokens per answer when the request names none (default 512). */
        public B maxTokens(int n) {
            this.maxTokens = n;
            return self();
        }

        /** The drafter; default: the engine's. */
        public B drafter(Drafter d) {
            this.drafter = d;
            return self();
        }

        /** The sampling seed for requests with a temperature above 0. */
        public B seed(long seed) {
            this.seed = seed;
            return self();
        }

        public B modelName(String name) {
            this.modelName = name;
            return self();
        }
    }
}
