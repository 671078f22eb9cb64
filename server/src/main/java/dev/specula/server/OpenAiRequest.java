package dev.specula.server;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import com.google.gson.JsonPrimitive;
import com.google.gson.Strictness;
import com.google.gson.stream.JsonReader;
import com.google.gson.stream.JsonToken;
import dev.specula.sampling.SamplingOptions;
import java.io.IOException;
import java.io.StringReader;
import java.math.BigDecimal;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.OptionalInt;
import java.util.Set;
import java.util.concurrent.ThreadLocalRandom;

/**
 * The body of {@code POST /v1/completions} or {@code /v1/chat/completions}, read strictly: every field's type and
 * range checked, and every field that would change the answer but that the server does not implement refused by
 * name (a client asking for two choices or log-probabilities must not get one choice without them and think it
 * got what it asked for). Fields that change nothing in the answer (user, metadata, ...) are accepted and ignored.
 *
 * @param chat         a chat completion (else a text completion)
 * @param model        the model the client named (null when it named none)
 * @param prompt       the completion's prompt: a string, or token ids (null for chat)
 * @param promptIds    the completion's prompt as token ids when the client sent ids
 * @param messages     the chat's messages, as sent (null for a text completion)
 * @param maxTokens    the most tokens to generate, when the client said
 * @param maxTokensParam the field that said it (max_tokens, or a chat's max_completion_tokens)
 * @param sampling     temperature, top-p, top-k and seed (a random seed when the client sampled without one)
 * @param stop         strings that end the answer (at most {@link #MAX_STOP_STRINGS})
 * @param stream       answer as Server-Sent Events
 * @param includeUsage with stream, send a last chunk carrying the usage
 */
record OpenAiRequest(boolean chat, String model, String prompt, int[] promptIds, JsonArray messages, OptionalInt maxTokens,
                     String maxTokensParam, SamplingOptions sampling, List<String> stop, boolean stream, boolean includeUsage) {
    /** OpenAI's own limit on stop sequences. */
    static final int MAX_STOP_STRINGS = 4;
    /** OpenAI's temperature range. */
    static final float MAX_TEMPERATURE = 2f;

    /** Fields both endpoints read. */
    private static final Set<String> COMMON = Set.of("model", "max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "stream",
            "stream_options", "n");
    /** Fields that change nothing in the answer this server gives: accepted, ignored. */
    private static final Set<String> IGNORED = Set.of("user", "metadata", "store", "service_tier", "parallel_tool_calls", "prediction",
            "reasoning_effort", "modalities");
    /**
     * Fields the server does not implement, with the value each may have because it asks for nothing (null always
     * may): anything else is refused, naming the field.
     */
    private static final Map<String, JsonElement> UNSUPPORTED = Map.ofEntries(
            Map.entry("best_of", new JsonPrimitive(1)),
            Map.entry("echo", new JsonPrimitive(false)),
            Map.entry("logprobs", new JsonPrimitive(false)),
            Map.entry("top_logprobs", new JsonPrimitive(0)),
            Map.entry("suffix", new JsonPrimitive("")),
            Map.entry("presence_penalty", new JsonPrimitive(0)),
            Map.entry("frequency_penalty", new JsonPrimitive(0)),
            Map.entry("logit_bias", new JsonObject()),
            Map.entry("tools", new JsonArray()),
            Map.entry("tool_choice", new JsonPrimitive("none")),
            Map.entry("functions", new JsonArray()),
            Map.entry("function_call", new JsonPrimitive("none")),
            Map.entry("response_format", textFormat()),
            Map.entry("audio", new JsonObject()),
            Map.entry("web_search_options", new JsonObject()));

    private static JsonObject textFormat() {
        JsonObject o = new JsonObject();
        o.addProperty("type", "text");
        return o;
    }

    /** Reads a request body; throws {@link ApiError} (400) naming what is wrong. */
    static OpenAiRequest parse(String body, boolean chat) {
        JsonObject o = parseObject(body);
        for (Map.Entry<String, JsonElement> e : o.entrySet()) {
            String name = e.getKey();
            if (COMMON.contains(name) || IGNORED.contains(name)) continue;
            if (chat ? name.equals("messages") || name.equals("max_completion_tokens") : name.equals("prompt")) continue;
            JsonElement neutral = UNSUPPORTED.get(name);
            if (neutral != null) {
                JsonElement v = e.getValue();
                if (v.isJsonNull() || v.equals(neutral) || numericallyEqual(v, neutral)) continue;
                throw ApiError.invalid(name, "unsupported_parameter", "'" + name + "' is not supported by this server (only " + neutral + " or null)");
            }
            throw ApiError.invalid(name, "unrecognized_parameter", "Unrecognized request argument supplied: " + name);
        }
        String model = optString(o, "model");
        Integer n = optInt(o, "n", 1, Integer.MAX_VALUE);
        if (n != null && n != 1) throw ApiError.invalid("n", "unsupported_parameter", "'n' must be 1: this server answers with one choice");

        String tokensField = chat && o.has("max_completion_tokens") && !o.get("max_completion_tokens").isJsonNull() ? "max_completion_tokens" : "max_tokens";
        Integer maxTokens = optInt(o, tokensField, 1, Integer.MAX_VALUE);
        Double temperature = optNumber(o, "temperature");
        if (temperature != null && !(temperature >= 0 && temperature <= MAX_TEMPERATURE))
            throw ApiError.invalid("temperature", "'temperature' must be from 0 to " + (int) MAX_TEMPERATURE + ", got " + temperature);
        Double topP = optNumber(o, "top_p");
        if (topP != null && !(topP > 0 && topP <= 1)) throw ApiError.invalid("top_p", "'top_p' must be more than 0 and at most 1, got " + topP);
        Integer topK = optInt(o, "top_k", 0, Integer.MAX_VALUE);
        Long seed = optLong(o, "seed");
        float t = temperature == null ? 1f : temperature.floatValue(); // OpenAI's default temperature is 1
        SamplingOptions sampling = t == 0f ? SamplingOptions.GREEDY
                : SamplingOptions.sampled(t, seed != null ? seed : ThreadLocalRandom.current().nextLong());
        if (t != 0f && topP != null) sampling = sampling.withTopP(topP.floatValue());
        if (t != 0f && topK != null) sampling = sampling.withTopK(topK);

        List<String> stop = stops(o.get("stop"));
        Boolean stream = optBool(o, "stream");
        boolean includeUsage = false;
        JsonElement options = o.get("stream_options");
        if (options != null && !options.isJsonNull()) {
            if (!options.isJsonObject()) throw ApiError.invalid("stream_options", "'stream_options' must be an object");
            if (stream == null || !stream) throw ApiError.invalid("stream_options", "'stream_options' is only allowed with 'stream': true");
            for (String key : options.getAsJsonObject().keySet()) {
                if (!key.equals("include_usage") && !key.equals("continuous_usage_stats"))
                    throw ApiError.invalid("stream_options." + key, "unrecognized_parameter", "Unrecognized request argument supplied: stream_options." + key);
            }
            Boolean usage = optBool(options.getAsJsonObject(), "include_usage");
            includeUsage = usage != null && usage;
        }

        String prompt = null;
        int[] promptIds = null;
        JsonArray messages = null;
        if (chat) {
            JsonElement m = o.get("messages");
            if (m == null || m.isJsonNull()) throw ApiError.invalid("messages", "'messages' is required");
            if (!m.isJsonArray()) throw ApiError.invalid("messages", "'messages' must be an array of messages");
            if (m.getAsJsonArray().isEmpty()) throw ApiError.invalid("messages", "'messages' must hold at least one message");
            messages = m.getAsJsonArray();
        } else {
            JsonElement p = o.get("prompt");
            if (p == null || p.isJsonNull()) throw ApiError.invalid("prompt", "'prompt' is required");
            if (p.isJsonPrimitive() && p.getAsJsonPrimitive().isString()) {
                prompt = p.getAsString();
            } else if (p.isJsonArray()) {
                JsonArray a = p.getAsJsonArray();
                if (a.size() == 1 && a.get(0).isJsonPrimitive() && a.get(0).getAsJsonPrimitive().isString()) {
                    prompt = a.get(0).getAsString();
                } else if (a.size() == 1 && a.get(0).isJsonArray()) {
                    promptIds = tokenIds(a.get(0).getAsJsonArray());
                } else if (!a.isEmpty() && a.get(0).isJsonPrimitive() && a.get(0).getAsJsonPrimitive().isNumber()) {
                    promptIds = tokenIds(a);
                } else if (a.size() > 1) {
                    throw ApiError.invalid("prompt", "unsupported_parameter", "'prompt' must be one prompt: this server answers one prompt per request");
                } else {
                    throw ApiError.invalid("prompt", "'prompt' must be a string, or an array of token ids");
                }
            } else {
                throw ApiError.invalid("prompt", "'prompt' must be a string, or an array of token ids");
            }
        }
        return new OpenAiRequest(chat, model, prompt, promptIds, messages,
                maxTokens == null ? OptionalInt.empty() : OptionalInt.of(maxTokens), tokensField, sampling, stop, stream != null && stream, includeUsage);
    }

    /** The body as one JSON object, read strictly (no comments, no trailing text, no single quotes). */
    static JsonObject parseObject(String body) {
        JsonElement root;
        try {
            JsonReader reader = new JsonReader(new StringReader(body));
            reader.setStrictness(Strictness.STRICT);
            reader.setNestingLimit(64);
            root = JsonParser.parseReader(reader);
            if (reader.peek() != JsonToken.END_DOCUMENT) throw new JsonParseException("text after the JSON value");
        } catch (JsonParseException | IOException | IllegalStateException e) {
            String m = e.getCause() != null && e.getCause().getMessage() != null ? e.getCause().getMessage() : e.getMessage();
            throw ApiError.invalid(null, "invalid_json", "The body is not valid JSON: " + m);
        }
        if (!root.isJsonObject()) throw ApiError.invalid(null, "invalid_json", "The body must be a JSON object");
        return root.getAsJsonObject();
    }

    private static boolean numericallyEqual(JsonElement a, JsonElement b) {
        BigDecimal x = number(a, "?");
        BigDecimal y = number(b, "?");
        return x != null && y != null && x.compareTo(y) == 0;
    }

    /** The longest number text read: a megabyte of digits would take BigDecimal seconds to parse. */
    private static final int MAX_NUMBER_CHARS = 64;

    /** The element as a number, or null when it is not one; a number written with too many characters is refused. */
    private static BigDecimal number(JsonElement e, String name) {
        if (e == null || !e.isJsonPrimitive() || !e.getAsJsonPrimitive().isNumber()) return null;
        if (e.getAsJsonPrimitive().getAsString().length() > MAX_NUMBER_CHARS)
            throw ApiError.invalid(name, "'" + name + "' has a number of more than " + MAX_NUMBER_CHARS + " characters");
        return e.getAsBigDecimal();
    }

    private static List<String> stops(JsonElement s) {
        if (s == null || s.isJsonNull()) return List.of();
        if (s.isJsonPrimitive() && s.getAsJsonPrimitive().isString()) return nonEmptyStop(List.of(s.getAsString()));
        if (!s.isJsonArray()) throw ApiError.invalid("stop", "'stop' must be a string or an array of strings");
        JsonArray a = s.getAsJsonArray();
        if (a.size() > MAX_STOP_STRINGS) throw ApiError.invalid("stop", "'stop' may hold at most " + MAX_STOP_STRINGS + " strings, got " + a.size());
        List<String> out = new ArrayList<>();
        for (JsonElement e : a) {
            if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isString()) throw ApiError.invalid("stop", "'stop' must be a string or an array of strings");
            out.add(e.getAsString());
        }
        return nonEmptyStop(out);
    }

    private static List<String> nonEmptyStop(List<String> stops) {
        for (String s : stops) if (s.isEmpty()) throw ApiError.invalid("stop", "a stop string must not be empty");
        return List.copyOf(stops);
    }

    private static int[] tokenIds(JsonArray a) {
        if (a.isEmpty()) throw ApiError.invalid("prompt", "'prompt' has no tokens");
        int[] ids = new int[a.size()];
        for (int i = 0; i < ids.length; i++) {
            JsonElement e = a.get(i);
            BigDecimal v = number(e, "prompt");
            if (v == null || v.signum() < 0 || v.stripTrailingZeros().scale() > 0 || v.compareTo(BigDecimal.valueOf(Integer.MAX_VALUE)) > 0)
                throw ApiError.invalid("prompt", "'prompt' token ids must be integers >= 0");
            ids[i] = v.intValue();
        }
        return ids;
    }

    private static String optString(JsonObject o, String name) {
        JsonElement e = o.get(name);
        if (e == null || e.isJsonNull()) return null;
        if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isString()) throw ApiError.invalid(name, "'" + name + "' must be a string");
        return e.getAsString();
    }

    private static Boolean optBool(JsonObject o, String name) {
        JsonElement e = o.get(name);
        if (e == null || e.isJsonNull()) return null;
        if (!e.isJsonPrimitive() || !e.getAsJsonPrimitive().isBoolean()) throw ApiError.invalid(name, "'" + name + "' must be true or false");
        return e.getAsBoolean();
    }

    private static Double optNumber(JsonObject o, String name) {
        JsonElement e = o.get(name);
        if (e == null || e.isJsonNull()) return null;
        BigDecimal v = number(e, name);
        if (v == null) throw ApiError.invalid(name, "'" + name + "' must be a number");
        return v.doubleValue();
    }

    private static BigDecimal integer(JsonObject o, String name) {
        JsonElement e = o.get(name);
        if (e == null || e.isJsonNull()) return null;
        BigDecimal v = number(e, name);
        if (v == null || v.stripTrailingZeros().scale() > 0) throw ApiError.invalid(name, "'" + name + "' must be an integer");
        return v;
    }

    /** An integer field within [min, max]; null when absent. */
    private static Integer optInt(JsonObject o, String name, int min, int max) {
        BigDecimal v = integer(o, name);
        if (v == null) return null;
        if (v.compareTo(BigDecimal.valueOf(min)) < 0) throw ApiError.invalid(name, "'" + name + "' must be at least " + min + ", got " + v.toPlainString());
        if (v.compareTo(BigDecimal.valueOf(max)) > 0) throw ApiError.invalid(name, "'" + name + "' must be at most " + max + ", got " + v.toPlainString());
        return v.intValueExact();
    }

    private static Long optLong(JsonObject o, String name) {
        BigDecimal v = integer(o, name);
        if (v == null) return null;
        try {
            return v.longValueExact();
        } catch (ArithmeticException e) {
            throw ApiError.invalid(name, "'" + name + "' must be a 64-bit integer, got " + v.toPlainString());
        }
    }
}
