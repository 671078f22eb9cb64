package dev.specula.chat;

import com.google.gson.JsonElement;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import dev.specula.model.ModelFile;
import dev.specula.model.gguf.GgufFile;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.LocalDateTime;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.function.Supplier;

/**
 * A model's chat template, rendered exactly as Hugging Face's {@code apply_chat_template} renders it (see
 * {@link JinjaParser} and {@link JinjaRenderer} for the environment). Parsed once; {@link #render} is
 * thread-safe. Rendering is bounded in time and output size, so a template that loops forever fails with a
 * clear {@link ChatTemplateException} instead of hanging.
 */
public final class ChatTemplate {
    /** Default bounds on one render. */
    public static final long DEFAULT_TIME_LIMIT_MILLIS = 2_000;
    public static final long DEFAULT_MAX_OUTPUT_CHARS = 8L << 20;

    /** Formats a user may choose for a model without a template (--chat-format). */
    public static final Map<String, String> BUILTIN_FORMATS = Map.of(
            "chatml", "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
                    + "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
            "llama3", "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
                    + " + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
                    + "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}");

    private final String source;
    private final JinjaNode.Template parsed;
    private final long timeLimitMillis;
    private final long maxOutputChars;
    private final Supplier<LocalDateTime> clock;

    private ChatTemplate(String source, long timeLimitMillis, long maxOutputChars, Supplier<LocalDateTime> clock) {
        this.source = source;
        this.parsed = JinjaParser.parse(source);
        this.timeLimitMillis = timeLimitMillis;
        this.maxOutputChars = maxOutputChars;
        this.clock = clock;
    }

    /** Parses a template; a syntax error is a {@link ChatTemplateException} naming the line. */
    public static ChatTemplate of(String source) {
        return new ChatTemplate(source, DEFAULT_TIME_LIMIT_MILLIS, DEFAULT_MAX_OUTPUT_CHARS, LocalDateTime::now);
    }

    /** This template with other render bounds. */
    public ChatTemplate withLimits(long timeLimitMillis, long maxOutputChars) {
        return new ChatTemplate(source, timeLimitMillis, maxOutputChars, clock);
    }

    /** This template with the clock strftime_now reads (tests fix it). */
    public ChatTemplate withClock(Supplier<LocalDateTime> now) {
        return new ChatTemplate(source, timeLimitMillis, maxOutputChars, now);
    }

    /** A built-in format by name ({@link #BUILTIN_FORMATS}). */
    public static ChatTemplate builtin(String format) {
        String s = BUILTIN_FORMATS.get(format);
        if (s == null) throw new ChatTemplateException("unknown chat format '" + format + "'; choose one of " + new java.util.TreeSet<>(BUILTIN_FORMATS.keySet()));
        return of(s);
    }

    public String source() {
        return source;
    }

    /**
     * The template a model carries: GGUF {@code tokenizer.chat_template} (or {@code tokenizer.chat_template.tool_use}
     * when there are tools and it exists), or a Hugging Face folder's {@code chat_template.jinja} or
     * {@code tokenizer_config.json} {@code chat_template} (a string, or a list of named templates). Empty when the
     * model has none.
     */
    public static Optional<String> sourceOf(ModelFile file, boolean withTools) {
        Optional<GgufFile> gguf = file.gguf();
        if (gguf.isPresent()) {
            if (withTools) {
                Optional<String> toolUse = gguf.get().findString("tokenizer.chat_template.tool_use");
                if (toolUse.isPresent()) return toolUse;
            }
            return gguf.get().findString("tokenizer.chat_template");
        }
        Path dir = Files.isDirectory(file.path()) ? file.path() : file.path().toAbsolutePath().getParent();
        return sourceOfHuggingFaceFolder(dir, withTools);
    }

    /** The template in a Hugging Face folder; see {@link #sourceOf(ModelFile, boolean)}. */
    public static Optional<String> sourceOfHuggingFaceFolder(Path dir, boolean withTools) {
        try {
            Path jinja = dir.resolve("chat_template.jinja");
            if (Files.isRegularFile(jinja)) return Optional.of(Files.readString(jinja, StandardCharsets.UTF_8));
            Path config = dir.resolve("tokenizer_config.json");
            if (!Files.isRegularFile(config)) return Optional.empty();
            JsonElement json = JsonParser.parseString(Files.readString(config, StandardCharsets.UTF_8));
            if (!json.isJsonObject() || !json.getAsJsonObject().has("chat_template")) return Optional.empty();
            return Optional.of(selectTemplate(json.getAsJsonObject().get("chat_template"), withTools, config.toString()));
        } catch (IOException e) {
            throw new ChatTemplateException(dir + ": cannot read the chat template: " + e.getMessage());
        } catch (JsonParseException | IllegalStateException e) {
            throw new ChatTemplateException(dir.resolve("tokenizer_config.json") + ": malformed JSON: " + e.getMessage());
        }
    }

    /** A chat_template value: a string, or a list of {"name", "template"} as Hugging Face picks from it. */
    static String selectTemplate(JsonElement value, boolean withTools, String where) {
        if (value.isJsonPrimitive() && value.getAsJsonPrimitive().isString()) return value.getAsString();
        if (!value.isJsonArray()) throw new ChatTemplateException(where + ": chat_template is neither a string nor a list of named templates");
        Map<String, String> named = new LinkedHashMap<>();
        for (JsonElement e : value.getAsJsonArray()) {
            if (!e.isJsonObject() || !e.getAsJsonObject().has("name") || !e.getAsJsonObject().has("template"))
                throw new ChatTemplateException(where + ": each named chat template needs a name and a template");
            named.put(e.getAsJsonObject().get("name").getAsString(), e.getAsJsonObject().get("template").getAsString());
        }
        if (withTools && named.containsKey("tool_use")) return named.get("tool_use");
        if (named.containsKey("default")) return named.get("default");
        throw new ChatTemplateException(where + ": no 'default' among the named chat templates " + named.keySet());
    }

    /**
     * Renders a conversation.
     *
     * @param tools               tool definitions (JSON schemas as maps and lists, as {@link ChatJson#parseTools} gives); empty for none
     * @param addGenerationPrompt whether to end with the start of an assistant turn
     * @param bosToken            the model's BOS text (for bos_token), or "" if it has none
     * @param eosToken            the model's EOS text (for eos_token), or ""
     */
    public RenderedPrompt render(List<ChatMessage> messages, List<?> tools, boolean addGenerationPrompt, String bosToken, String eosToken) {
        List<Object> values = new ArrayList<>();
        for (ChatMessage m : messages) values.add(toTemplateValue(m));
        return renderValues(values, tools, addGenerationPrompt, bosToken, eosToken);
    }

    /** Renders messages already in template form (maps, as {@link ChatJson#parseMessageValues} gives). */
    public RenderedPrompt renderValues(List<?> messages, List<?> tools, boolean addGenerationPrompt, String bosToken, String eosToken) {
        Map<String, Object> vars = new LinkedHashMap<>();
        vars.put("messages", markAll(messages));
        vars.put("tools", tools == null || tools.isEmpty() ? null : markAll(tools));
        vars.put("documents", null);
        vars.put("add_generation_prompt", addGenerationPrompt);
        vars.put("bos_token", bosToken == null ? "" : bosToken);
        vars.put("eos_token", eosToken == null ? "" : eosToken);
        Object out = new JinjaRenderer(timeLimitMillis, maxOutputChars, clock).render(parsed, vars);
        return new RenderedPrompt(out.toString(), MarkedText.marks(out));
    }

    /** The template value of a message: Hugging Face's dict form. */
    static Map<String, Object> toTemplateValue(ChatMessage m) {
        Map<String, Object> v = new LinkedHashMap<>();
        v.put("role", m.role());
        if (m.content() != null) {
            v.put("content", m.content());
        } else if (!m.parts().isEmpty()) {
            List<Object> parts = new ArrayList<>();
            for (ChatMessage.Part p : m.parts()) {
                Map<String, Object> part = new LinkedHashMap<>();
                part.put("type", p.type());
                if (p.text() != null) part.put("text", p.text());
                parts.add(part);
            }
            v.put("content", parts);
        } else {
            v.put("content", null);
        }
        if (!m.toolCalls().isEmpty()) {
            List<Object> calls = new ArrayList<>();
            for (ChatMessage.ToolCall c : m.toolCalls()) {
                Map<String, Object> call = new LinkedHashMap<>();
                if (c.id() != null) call.put("id", c.id());
                call.put("type", "function");
                Map<String, Object> function = new LinkedHashMap<>();
                function.put("name", c.name());
                function.put("arguments", ChatJson.argumentsValue(c.argumentsJson()));
                call.put("function", function);
                calls.add(call);
            }
            v.put("tool_calls", calls);
        }
        if (m.toolCallId() != null) v.put("tool_call_id", m.toolCallId());
        if (m.name() != null) v.put("name", m.name());
        return v;
    }

    /** A deep copy whose strings are marked as conversation text, but for roles and part types. */
    static Object markAll(Object v) {
        if (v instanceof MarkedText) return v;
        if (v instanceof String s) return MarkedText.user(s);
        if (v instanceof Py.Tuple t) {
            List<Object> out = new ArrayList<>();
            for (Object x : t) out.add(markAll(x));
            return new Py.Tuple(out);
        }
        if (v instanceof List<?> l) {
            List<Object> out = new ArrayList<>();
            for (Object x : l) out.add(markAll(x));
            return out;
        }
        if (v instanceof Map<?, ?> m) {
            Map<Object, Object> out = new LinkedHashMap<>();
            // roles and part types are names the template dispatches on, never free text (and Phi-style templates
            // build special tokens from them: '<|' + role + '|>'), so they stay template text
            m.forEach((k, x) -> out.put(Py.key(k), ("role".equals(Py.key(k)) || "type".equals(Py.key(k))) && x instanceof String ? x : markAll(x)));
            return out;
        }
        if (v instanceof Integer i) return (long) i;
        if (v instanceof Float f) return (double) f;
        return v;
    }
}
