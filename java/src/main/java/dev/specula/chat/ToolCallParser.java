package dev.specula.chat;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import java.util.ArrayList;
import java.util.List;

/**
 * Finds tool calls in a model's answer, in the formats common templates ask for: JSON objects in
 * {@code <tool_call>...</tool_call>} tags (Qwen, Hermes), or an answer that is nothing but a JSON function call
 * or a list of them ({@code {"name": ..., "arguments"|"parameters": {...}}}, Llama 3.1).
 */
public final class ToolCallParser {
    private ToolCallParser() {}

    /** The answer's text without tool-call markup, and the calls. */
    public record Parsed(String text, List<ChatMessage.ToolCall> calls) {}

    private static final String OPEN = "<tool_call>";
    private static final String CLOSE = "</tool_call>";

    public static Parsed parse(String answer) {
        List<ChatMessage.ToolCall> calls = new ArrayList<>();
        StringBuilder rest = new StringBuilder();
        int last = 0;
        // Each tag pair is the first "</tool_call>" after a "<tool_call>". Scanned with indexOf, which is linear:
        // a lazy regex rescans the rest of the answer from every unclosed "<tool_call>", quadratic in the answer.
        for (int open = answer.indexOf(OPEN); open >= 0; ) {
            int close = answer.indexOf(CLOSE, open + OPEN.length());
            if (close < 0) break;
            ChatMessage.ToolCall call = callOf(answer.substring(open + OPEN.length(), close).strip(), calls.size());
            int end = close + CLOSE.length();
            if (call != null) {
                calls.add(call);
                rest.append(answer, last, open);
                last = end;
            }
            open = answer.indexOf(OPEN, end);
        }
        if (!calls.isEmpty()) {
            rest.append(answer.substring(last));
            return new Parsed(rest.toString().strip(), calls);
        }
        String trimmed = answer.strip();
        if (trimmed.startsWith("{") || trimmed.startsWith("[")) {
            try {
                JsonElement e = JsonParser.parseString(trimmed);
                List<JsonElement> items = new ArrayList<>();
                if (e.isJsonArray()) e.getAsJsonArray().forEach(items::add);
                else items.add(e);
                for (JsonElement item : items) {
                    ChatMessage.ToolCall call = callOf(item, calls.size());
                    if (call == null) return new Parsed(answer, List.of());
                    calls.add(call);
                }
                return new Parsed("", calls);
            } catch (JsonParseException | IllegalStateException notJson) {
                return new Parsed(answer, List.of());
            }
        }
        return new Parsed(answer, List.of());
    }

    private static ChatMessage.ToolCall callOf(String json, int index) {
        try {
            return callOf(JsonParser.parseString(json), index);
        } catch (JsonParseException | IllegalStateException e) {
            return null;
        }
    }

    private static ChatMessage.ToolCall callOf(JsonElement e, int index) {
        if (!e.isJsonObject()) return null;
        JsonObject o = e.getAsJsonObject();
        if (o.has("function") && o.get("function").isJsonObject()) o = o.getAsJsonObject("function");
        if (!o.has("name") || !o.get("name").isJsonPrimitive()) return null;
        JsonElement args = o.has("arguments") ? o.get("arguments") : o.get("parameters");
        String argsJson;
        if (args == null || args.isJsonNull()) argsJson = "{}";
        else if (args.isJsonPrimitive() && args.getAsJsonPrimitive().isString()) argsJson = args.getAsString();
        else argsJson = args.toString();
        return new ChatMessage.ToolCall("call_" + index, o.get("name").getAsString(), argsJson);
    }
}
