package dev.specula.chat;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import com.google.gson.JsonPrimitive;
import com.google.gson.Strictness;
import com.google.gson.stream.JsonReader;
import java.io.StringReader;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Conversations and tool definitions in OpenAI's JSON message format, read strictly with clear errors. */
public final class ChatJson {
    private ChatJson() {}

    static JsonElement parse(String json, String what) {
        try {
            JsonReader reader = new JsonReader(new StringReader(json));
            reader.setStrictness(Strictness.STRICT);
            JsonElement e = JsonParser.parseReader(reader);
            if (reader.peek() != com.google.gson.stream.JsonToken.END_DOCUMENT)
                throw new ChatTemplateException(what + ": malformed JSON: text after the value");
            return e;
        } catch (JsonParseException | java.io.IOException | IllegalStateException e) {
            String m = e.getMessage();
            if (e.getCause() != null && e.getCause().getMessage() != null) m = e.getCause().getMessage();
            throw new ChatTemplateException(what + ": malformed JSON: " + m);
        }
    }

    /**
     * A conversation: a JSON array of messages ({"role", "content" as text or parts, "tool_calls",
     * "tool_call_id", "name"}), or an object with such an array under "messages".
     */
    public static List<ChatMessage> parseMessages(String json) {
        JsonElement root = parse(json, "messages");
        if (root.isJsonObject() && root.getAsJsonObject().has("messages")) root = root.getAsJsonObject().get("messages");
        if (!root.isJsonArray()) throw new ChatTemplateException("messages: expected a JSON array of messages");
        List<ChatMessage> out = new ArrayList<>();
        JsonArray array = root.getAsJsonArray();
        for (int i = 0; i < array.size(); i++) {
            String where = "messages[" + i + "]";
            JsonElement e = array.get(i);
            if (!e.isJsonObject()) throw new ChatTemplateException(where + ": expected an object with a role");
            JsonObject o = e.getAsJsonObject();
            String role = string(o, "role", where);
            if (role == null) throw new ChatTemplateException(where + ": missing \"role\"");
            if (!ChatMessage.ROLES.contains(role))
                throw new ChatTemplateException(where + ": unknown role '" + role + "'; a role is one of " + new java.util.TreeSet<>(ChatMessage.ROLES));
            String content = null;
            List<ChatMessage.Part> parts = new ArrayList<>();
            JsonElement c = o.get("content");
            if (c != null && !c.isJsonNull()) {
                if (c.isJsonPrimitive() && c.getAsJsonPrimitive().isString()) {
                    content = c.getAsString();
                } else if (c.isJsonArray()) {
                    for (JsonElement p : c.getAsJsonArray()) {
                        if (!p.isJsonObject()) throw new ChatTemplateException(where + ": a content part must be an object");
                        String type = string(p.getAsJsonObject(), "type", where + ".content");
                        if (type == null) throw new ChatTemplateException(where + ": a content part needs a \"type\"");
                        parts.add(new ChatMessage.Part(type, string(p.getAsJsonObject(), "text", where + ".content")));
                    }
                } else {
                    throw new ChatTemplateException(where + ": \"content\" must be a string, a list of parts or null");
                }
            }
            List<ChatMessage.ToolCall> calls = new ArrayList<>();
            JsonElement tc = o.get("tool_calls");
            if (tc != null && !tc.isJsonNull()) {
                if (!tc.isJsonArray()) throw new ChatTemplateException(where + ": \"tool_calls\" must be a list");
                for (JsonElement t : tc.getAsJsonArray()) {
                    if (!t.isJsonObject()) throw new ChatTemplateException(where + ": a tool call must be an object");
                    JsonObject call = t.getAsJsonObject();
                    JsonObject fn = call.has("function") && call.get("function").isJsonObject() ? call.getAsJsonObject("function") : call;
                    String name = string(fn, "name", where + ".tool_calls");
                    if (name == null) throw new ChatTemplateException(where + ": a tool call needs a function name");
                    JsonElement args = fn.get("arguments");
                    String argsJson = args == null || args.isJsonNull() ? "{}" : args.isJsonPrimitive() ? args.getAsString() : args.toString();
                    calls.add(new ChatMessage.ToolCall(string(call, "id", where), name, argsJson));
                }
            }
            out.add(new ChatMessage(role, content, parts, calls, string(o, "tool_call_id", where), string(o, "name", where)));
        }
        return out;
    }

    /** Tool definitions: a JSON array of OpenAI tool objects ({"type": "function", "function": {...}}), as template values. */
    public static List<Object> parseTools(String json) {
        JsonElement root = parse(json, "tools");
        if (root.isJsonObject() && root.getAsJsonObject().has("tools")) root = root.getAsJsonObject().get("tools");
        if (!root.isJsonArray()) throw new ChatTemplateException("tools: expected a JSON array of tool definitions");
        List<Object> out = new ArrayList<>();
        for (JsonElement e : root.getAsJsonArray()) {
            if (!e.isJsonObject()) throw new ChatTemplateException("tools: each tool must be an object");
            out.add(value(e));
        }
        return out;
    }

    private static String string(JsonObject o, String key, String where) {
        JsonElement e = o.get(key);
        if (e == null || e.isJsonNull()) return null;
        if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isString())
            throw new ChatTemplateException(where + ": \"" + key + "\" must be a string");
        return e.getAsString();
    }

    /** A JSON value as a template value: objects as ordered maps, integers as Long, other numbers as Double. */
    public static Object value(JsonElement e) {
        if (e == null || e.isJsonNull()) return null;
        if (e.isJsonObject()) {
            Map<String, Object> m = new LinkedHashMap<>();
            for (Map.Entry<String, JsonElement> x : e.getAsJsonObject().entrySet()) m.put(x.getKey(), value(x.getValue()));
            return m;
        }
        if (e.isJsonArray()) {
            List<Object> l = new ArrayList<>();
            for (JsonElement x : e.getAsJsonArray()) l.add(value(x));
            return l;
        }
        JsonPrimitive p = e.getAsJsonPrimitive();
        if (p.isBoolean()) return p.getAsBoolean();
        if (p.isString()) return p.getAsString();
        String n = p.getAsString();
        if (n.matches("-?\\d+")) {
            try {
                return Long.parseLong(n);
            } catch (NumberFormatException big) {
                return p.getAsDouble();
            }
        }
        return p.getAsDouble();
    }

    /**
     * Tool-call arguments as templates expect them: a dict when the text is a JSON object (Hugging Face's
     * convention), else the text itself.
     */
    static Object argumentsValue(String json) {
        try {
            JsonElement e = JsonParser.parseString(json);
            if (e.isJsonObject()) return value(e);
        } catch (JsonParseException e) {
            // not JSON: templates get the text
        }
        return json;
    }

    /** A template value as JSON text (compact), for tool-call arguments. */
    static String toJson(Object v) {
        Py.MarkedBuilder out = new Py.MarkedBuilder();
        Py.dumpJson(ChatTemplate.markAll(v), false, null, ",", ":", false, 0, out);
        return out.text.toString();
    }
}
