package dev.specula.langchain4j;

import dev.specula.Drafter;
import dev.langchain4j.model.chat.StreamingChatModel;
import dev.langchain4j.model.chat.request.ChatRequest;
import dev.langchain4j.model.chat.response.PartialResponse;
import dev.langchain4j.model.chat.response.PartialResponseContext;
import dev.langchain4j.model.chat.response.StreamingChatResponseHandler;
import dev.langchain4j.model.chat.response.StreamingHandle;
import dev.specula.chat.ChatResult;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * A LangChain4j {@link StreamingChatModel} on a Specula engine: the answer streams to
 * {@code onPartialResponse} as the engine verifies it, then {@code onCompleteResponse} brings the whole answer,
 * tool execution requests and speculation statistics ({@link SpeculaChatResponseMetadata}); failures go to
 * {@code onError}. Each request runs on its own thread; cancelling through the {@link StreamingHandle} in the
 * partial-response context stops generation at the next step. When the request offers tools the answer is
 * not streamed piece by piece (it may be tool-call markup): it arrives as one partial response, unless it
 * called tools.
 */
public final class SpeculaStreamingChatModel implements StreamingChatModel {
    private final ChatBackend backend;
    private final int maxTokens;
    private final Drafter drafter;
    private final long seed;
    private final String modelName;

    private SpeculaStreamingChatModel(Builder b) {
        this.backend = Objects.requireNonNull(b.backend, "SpeculaStreamingChatModel.builder() needs an engine, a chat or a backend");
        this.maxTokens = b.maxTokens;
        this.drafter = b.drafter;
        this.seed = b.seed;
        this.modelName = b.modelName;
    }

    public static Builder builder() {
        return new Builder();
    }

    private static final class Handle implements StreamingHandle {
        final AtomicBoolean cancelled = new AtomicBoolean();

        @Override
        public void cancel() {
            cancelled.set(true);
        }

        @Override
        public boolean isCancelled() {
            return cancelled.get();
        }
    }

    @Override
    public void doChat(ChatRequest request, StreamingChatResponseHandler handler) {
        Handle handle = new Handle();
        boolean withTools = request.toolSpecifications() != null && !request.toolSpecifications().isEmpty();
        Thread.ofVirtual().name("specula-chat").start(() -> {
            try {
                PartialResponseContext context = new PartialResponseContext(handle);
                ChatResult r = backend.chat(Conversions.messages(request.messages()), Conversions.options(request, maxTokens, drafter, seed),
                        text -> {
                            if (!withTools && !handle.isCancelled()) handler.onPartialResponse(new PartialResponse(text), context);
                        }, handle::isCancelled);
                var response = Conversions.response(r, withTools, modelName, drafter);
                if (withTools && !response.aiMessage().hasToolExecutionRequests() && response.aiMessage().text() != null
                        && !response.aiMessage().text().isEmpty()) {
                    handler.onPartialResponse(new PartialResponse(response.aiMessage().text()), context);
                }
                handler.onCompleteResponse(response);
            } catch (Throwable e) {
                handler.onError(e);
            }
        });
    }

    public static final class Builder extends SpeculaChatModel.AdapterBuilder<Builder> {
        public SpeculaStreamingChatModel build() {
            return new SpeculaStreamingChatModel(this);
        }
    }
}
