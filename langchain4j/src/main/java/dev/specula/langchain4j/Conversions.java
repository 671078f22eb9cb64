package dev.specula.langchain4j;

import dev.specula.Drafter;
import dev.langchain4j.agent.tool.ToolExecutionRequest;
import dev.langchain4j.agent.tool.ToolSpecification;
import dev.langchain4j.data.message.AiMessage;
import dev.langchain4j.data.message.Content;
import dev.langchain4j.data.message.SystemMessage;
import dev.langchain4j.data.message.TextContent;
import dev.langchain4j.data.message.ToolExecutionResultMessage;
import dev.langchain4j.data.message.UserMessage;
import dev.langchain4j.internal.JsonSchemaElementUtils;
import dev.langchain4j.model.chat.request.ChatRequest;
import dev.langchain4j.model.chat.response.ChatResponse;
import dev.langchain4j.model.output.FinishReason;
import dev.langchain4j.model.output.TokenUsage;
import dev.specula.chat.ChatMessage;
import dev.specula.chat.ChatOptions;
import dev.specula.chat.ChatResult;
import dev.specula.chat.ToolCallParser;
import dev.specula.sampling.SamplingOptions;
import dev.specula.StopReason;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/** Between LangChain4j's requests and responses and Specula's chat: messages, tool specifications, options, stats. */
final class Conversions {
    private Conversions() {}

    static List<ChatMessage> messages(List<dev.langchain4j.data.message.ChatMessage> in) {
        List<ChatMessage> out = new ArrayList<>();
        for (dev.langchain4j.data.message.ChatMessage m : in) {
            switch (m) {
                case SystemMessage s -> out.add(ChatMessage.system(s.text()));
                case UserMessage u -> {
                    if (u.hasSingleText()) {
                        out.add(ChatMessage.user(u.singleText()));
                    } else {
                        List<ChatMessage.Part> parts = new ArrayList<>();
                        for (Content c : u.contents()) {
                            parts.add(c instanceof TextContent t ? ChatMessage.Part.text(t.text())
                                    : new ChatMessage.Part(c.type().name().toLowerCase(Locale.ROOT), null));
                        }
                        out.add(ChatMessage.user(parts));
                    }
                }
                case AiMessage a -> {
                    List<ChatMessage.ToolCall> calls = new ArrayList<>();
                    if (a.hasToolExecutionRequests()) {
                        for (ToolExecutionRequest r : a.toolExecutionRequests()) calls.add(new ChatMessage.ToolCall(r.id(), r.name(), r.arguments()));
                    }
                    out.add(ChatMessage.assistant(a.text() == null ? (calls.isEmpty() ? "" : null) : a.text(), calls));
                }
                case ToolExecutionResultMessage t -> out.add(ChatMessage.toolResult(t.id(), t.toolName(), t.text()));
                default -> throw new IllegalArgumentException("Specula cannot render a " + m.type() + " message");
            }
        }
        return out;
    }

    /** Tool specifications as the OpenAI-style tool objects chat templates render. */
    static List<Object> tools(List<ToolSpecification> specs) {
        List<Object> out = new ArrayList<>();
        if (specs == null) return out;
        for (ToolSpecification s : specs) {
            Map<String, Object> function = new LinkedHashMap<>();
            function.put("name", s.name());
            if (s.description() != null) function.put("description", s.description());
            Map<String, Object> parameters = s.parameters() != null ? JsonSchemaElementUtils.toMap(s.parameters())
                    : new LinkedHashMap<>(Map.of("type", "object", "properties", Map.of()));
            function.put("parameters", parameters);
            Map<String, Object> tool = new LinkedHashMap<>();
            tool.put("type", "function");
            tool.put("function", function);
            out.add(tool);
        }
        return out;
    }

    static ChatOptions options(ChatRequest request, int defaultMaxTokens, Drafter drafter, long seed) {
        int maxTokens = request.maxOutputTokens() != null ? request.maxOutputTokens() : defaultMaxTokens;
        Double temperature = request.temperature();
        SamplingOptions sampling = SamplingOptions.GREEDY;
        if (temperature != null && temperature > 0) {
            sampling = SamplingOptions.sampled(temperature.floatValue(), seed);
            if (request.topK() != null) sampling = sampling.withTopK(request.topK());
            if (request.topP() != null) sampling = sampling.withTopP(request.topP().floatValue());
        }
        return ChatOptions.defaults().withMaxTokens(maxTokens).withSampling(sampling).withDrafter(drafter)
                .withTools(tools(request.toolSpecifications()))
                .withStopStrings(request.stopSequences() == null ? List.of() : request.stopSequences());
    }

    /** The answer as LangChain4j's response: tool calls (in the common formats) as tool execution requests. */
    static ChatResponse response(ChatResult r, boolean withTools, String modelName, Drafter drafter) {
        ToolCallParser.Parsed parsed = withTools ? ToolCallParser.parse(r.rawText()) : new ToolCallParser.Parsed(r.rawText(), List.of());
        List<ToolExecutionRequest> requests = new ArrayList<>();
        for (ChatMessage.ToolCall c : parsed.calls())
            requests.add(ToolExecutionRequest.builder().id(c.id()).name(c.name()).arguments(c.argumentsJson()).build());
        AiMessage message = requests.isEmpty() ? AiMessage.from(parsed.text())
                : parsed.text().isEmpty() ? AiMessage.from(requests) : AiMessage.from(parsed.text(), requests);
        FinishReason finish = !requests.isEmpty() ? FinishReason.TOOL_EXECUTION : r.stopReason() == StopReason.MAX_TOKENS
                || r.stopReason() == StopReason.CONTEXT_FULL ? FinishReason.LENGTH : r.stopReason() == StopReason.CANCELLED
                ? FinishReason.OTHER : FinishReason.STOP;
        var stats = r.generation().stats();
        SpeculaChatResponseMetadata.Builder meta = SpeculaChatResponseMetadata.speculaBuilder()
                .modelName(modelName).finishReason(finish)
                .tokenUsage(new TokenUsage(stats.promptTokens(), stats.generatedTokens()))
                .generatedTokensPerSecond(stats.generatedTokensPerSecond())
                .drafter(r.speculation() == null ? "none" : drafter == null ? "engine default" : drafter.toString());
        if (r.speculation() != null) {
            meta.steps(r.speculation().steps()).meanAcceptedTokens(r.speculation().meanAccepted())
                    .acceptedLengthHistogram(r.speculation().acceptedLengthHistogram());
        }
        return ChatResponse.builder().aiMessage(message).metadata(meta.build()).build();
    }
}
