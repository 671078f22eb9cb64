package dev.specula.tokenizer;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import com.google.gson.Strictness;
import com.google.gson.stream.JsonReader;
import com.google.gson.stream.JsonToken;

import java.io.IOException;
import java.io.StringReader;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

/**
 * A Hugging Face {@code tokenizer.json} run by DJL's wrapper of the Rust {@code tokenizers}
 * library (its native library for linux-x86_64, macOS and Windows ships inside the DJL jar and is
 * unpacked to DJL's cache folder, {@code ~/.djl.ai} or {@code DJL_CACHE_DIR}; nothing is
 * downloaded).
 *
 * <p>Encoding is done by the Rust library (normalizer, pre-tokenizer, model, post-processor).
 * The vocabulary, special tokens and decoder are read from the JSON here, so that
 * {@link #tokenBytes(int)} gives each token's raw bytes (byte-level or {@code <0xXX>} byte
 * fallback, {@code '▁'} as space) and decoding is the lossless concatenation of those bytes.
 * HF's added tokens are always matched in the input, so {@code parseSpecial = false} cannot keep
 * them as plain text; it is ignored.
 *
 * <p>BOS/EOS come from {@code tokenizer_config.json} next to the JSON when present, else from
 * well-known texts ({@code <s>}, {@code <|begin_of_text|>}, {@code </s>}, {@code <|end_of_text|>},
 * {@code <|endoftext|>}...). Whether BOS is added by default is what the post-processor does.
 */
public final class HuggingFaceTokenizer implements Tokenizer, AutoCloseable {

    private static final List<String> BOS_TEXTS = List.of("<|begin_of_text|>", "<s>", "<bos>", "<|startoftext|>");
    private static final List<String> EOS_TEXTS = List.of("<|end_of_text|>", "</s>", "<eos>", "<|endoftext|>", "<|im_end|>");
    private static final Set<String> STOP_TEXTS = Set.of(
            "<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
            "<|end_of_text|>", "</s>", "<eos>");

    /** The largest vocabulary taken, as the native core's model config (spec_model_config n_vocab). */
    private static final int MAX_VOCAB = 1 << 22;
    /** Deeper than any real decoder; bounds recursion over a crafted file's nested Sequence decoders. */
    private static final int MAX_DECODER_NESTING = 16;
    /** Deeper than any real tokenizer.json, and well inside serde_json's limit of 128. */
    private static final int MAX_JSON_NESTING = 64;

    private final ai.djl.huggingface.tokenizers.HuggingFaceTokenizer djl;
    private final Path file;
    private final String[] texts;
    private final boolean[] special;
    private final boolean[] added;
    private final boolean byteLevel;
    private final boolean byteFallback;
    private final boolean stripsLeadingSpace;
    private final int bos;
    private final int eos;
    private final boolean addBos;
    private final Set<Integer> stopTokens;

    private HuggingFaceTokenizer(ai.djl.huggingface.tokenizers.HuggingFaceTokenizer djl, Path file, JsonObject json,
            JsonObject config) {
        this.djl = djl;
        this.file = file;
        Map<Integer, String> byId = new HashMap<>();
        JsonObject model = optObject(file, json, "model");
        JsonElement vocab = model == null ? null : model.get("vocab");
        if (vocab != null && vocab.isJsonObject()) { // BPE, WordPiece, WordLevel
            for (Map.Entry<String, JsonElement> e : vocab.getAsJsonObject().entrySet()) {
                byId.put(id(file, e.getValue(), "the id of vocabulary entry '" + e.getKey() + "'"), e.getKey());
            }
        } else if (vocab != null && vocab.isJsonArray()) { // Unigram: [[piece, score], ...]
            JsonArray pieces = vocab.getAsJsonArray();
            if (pieces.size() > MAX_VOCAB) throw bad(file, "its vocabulary has " + pieces.size() + " entries, more than " + MAX_VOCAB);
            for (int i = 0; i < pieces.size(); i++) {
                JsonElement piece = pieces.get(i);
                if (!piece.isJsonArray() || piece.getAsJsonArray().isEmpty()) {
                    throw bad(file, "vocabulary entry " + i + " is not [piece, score]: " + shorten(piece));
                }
                byId.put(i, string(file, piece.getAsJsonArray().get(0), "the piece of vocabulary entry " + i));
            }
        } else if (vocab != null && !vocab.isJsonNull()) {
            throw bad(file, "model.vocab is neither an object nor an array");
        }
        Map<Integer, Boolean> addedSpecial = new HashMap<>();
        JsonElement addedTokens = json.get("added_tokens");
        if (addedTokens != null && !addedTokens.isJsonNull()) {
            if (!addedTokens.isJsonArray()) throw bad(file, "added_tokens is not an array");
            for (JsonElement element : addedTokens.getAsJsonArray()) {
                if (!element.isJsonObject()) throw bad(file, "an entry of added_tokens is not an object: " + shorten(element));
                JsonObject token = element.getAsJsonObject();
                int id = id(file, token.get("id"), "the id of an added token");
                byId.put(id, string(file, token.get("content"), "the content of added token " + id));
                addedSpecial.put(id, optBoolean(file, token, "special"));
            }
        }
        int size = byId.keySet().stream().mapToInt(Integer::intValue).max().orElse(-1) + 1;
        texts = new String[size];
        special = new boolean[size];
        added = new boolean[size];
        Map<String, Integer> idOf = new HashMap<>();
        for (Map.Entry<Integer, String> e : byId.entrySet()) {
            texts[e.getKey()] = e.getValue();
            idOf.putIfAbsent(e.getValue(), e.getKey());
        }
        for (Map.Entry<Integer, Boolean> e : addedSpecial.entrySet()) {
            added[e.getKey()] = true;
            special[e.getKey()] = e.getValue();
        }

        JsonObject decoder = json.has("decoder") && json.get("decoder").isJsonObject() ? json.getAsJsonObject("decoder") : null;
        byteLevel = usesDecoder(file, decoder, "ByteLevel", 0);
        byteFallback = usesDecoder(file, decoder, "ByteFallback", 0) || (model != null && optBoolean(file, model, "byte_fallback"));
        stripsLeadingSpace = stripsSpace(file, decoder, 0);

        bos = specialId(config, "bos_token", BOS_TEXTS, idOf);
        eos = specialId(config, "eos_token", EOS_TEXTS, idOf);
        long[] withSpecial = encodeWithLibrary("a", true);
        addBos = bos >= 0 && withSpecial.length > 0 && withSpecial[0] == bos;

        Set<Integer> stop = new TreeSet<>();
        if (eos >= 0) {
            stop.add(eos);
        }
        for (int i = 0; i < size; i++) {
            if (special[i] && STOP_TEXTS.contains(texts[i])) {
                stop.add(i);
            }
        }
        stopTokens = Collections.unmodifiableSet(stop);
    }

    /**
     * Reads tokenizer.json (and tokenizer_config.json beside it) and hands it to the native library.
     *
     * @throws IOException when a file cannot be read
     * @throws IllegalArgumentException naming the file when its content is not a tokenizer this class can use
     */
    static HuggingFaceTokenizer load(Path path) throws IOException {
        Path file = Files.isDirectory(path) ? path.resolve("tokenizer.json") : path;
        JsonObject json = readObject(file);
        Path configFile = file.resolveSibling("tokenizer_config.json");
        JsonObject config = Files.isRegularFile(configFile) ? readObject(configFile) : null;
        // DJL sends telemetry when it finds itself on EC2 unless told not to; never let it try.
        if (System.getenv("OPT_OUT_TRACKING") == null && System.getProperty("OPT_OUT_TRACKING") == null) {
            System.setProperty("OPT_OUT_TRACKING", "true");
        }
        // No truncation or padding: DJL otherwise cuts encodings at 512 tokens.
        Map<String, String> options = Map.of("truncation", "false", "padding", "false",
                "addSpecialTokens", "true", "modelMaxLength", String.valueOf(Integer.MAX_VALUE));
        ai.djl.huggingface.tokenizers.HuggingFaceTokenizer djl;
        try {
            djl = ai.djl.huggingface.tokenizers.HuggingFaceTokenizer.newInstance(file, options);
        } catch (RuntimeException e) {
            // The Rust library's own parse: unknown component types, bad merges, a vocabulary it cannot build.
            throw bad(file, "the tokenizers library cannot load it: " + e.getMessage(), e);
        }
        try {
            return new HuggingFaceTokenizer(djl, file, json, config);
        } catch (RuntimeException | Error e) {
            djl.close();
            throw e;
        }
    }

    /**
     * Parses a JSON object as strictly as the Rust library's parser (serde_json) does: the library panics,
     * taking the JVM down, on some JSON it cannot parse (a decoder holding a raw control character, a number
     * beyond double range, a lone surrogate escape, nesting past its limit of 128), so such files are refused here
     * before it sees them.
     */
    private static JsonObject readObject(Path file) throws IOException {
        String text;
        try {
            text = Files.readString(file, StandardCharsets.UTF_8);
        } catch (CharacterCodingException e) {
            throw bad(file, "is not UTF-8 text (" + e.getMessage() + ")", e);
        }
        JsonElement e;
        try (JsonReader reader = new JsonReader(new StringReader(text))) {
            reader.setStrictness(Strictness.STRICT);
            reader.setNestingLimit(MAX_JSON_NESTING);
            e = JsonParser.parseReader(reader);
            if (reader.peek() != JsonToken.END_DOCUMENT) throw bad(file, "bad JSON: text follows the top-level value");
        } catch (JsonParseException | IOException | IllegalStateException ex) {
            throw bad(file, "bad JSON: " + ex.getMessage(), ex);
        }
        if (!e.isJsonObject()) throw bad(file, "bad JSON: the top level is not an object");
        checkValues(file, e);
        return e.getAsJsonObject();
    }

    /** Numbers within double range and strings of whole UTF-16 characters, as serde_json requires. */
    private static void checkValues(Path file, JsonElement e) {
        if (e.isJsonObject()) {
            for (Map.Entry<String, JsonElement> m : e.getAsJsonObject().entrySet()) {
                checkString(file, m.getKey());
                checkValues(file, m.getValue());
            }
        } else if (e.isJsonArray()) {
            for (JsonElement x : e.getAsJsonArray()) checkValues(file, x);
        } else if (e.isJsonPrimitive() && e.getAsJsonPrimitive().isNumber()) {
            String number = e.getAsJsonPrimitive().getAsString();
            if (Double.isInfinite(Double.parseDouble(number))) {
                throw bad(file, "bad JSON: the number " + (number.length() <= 40 ? number : number.substring(0, 37) + "...")
                        + " is beyond double range");
            }
        } else if (e.isJsonPrimitive() && e.getAsJsonPrimitive().isString()) {
            checkString(file, e.getAsString());
        }
    }

    private static void checkString(Path file, String s) {
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (Character.isHighSurrogate(c) && i + 1 < s.length() && Character.isLowSurrogate(s.charAt(i + 1))) {
                i++;
            } else if (Character.isSurrogate(c)) {
                throw bad(file, "bad JSON: a string holds a lone surrogate \\u" + Integer.toHexString(c));
            }
        }
    }

    private static IllegalArgumentException bad(Path file, String problem) {
        return new IllegalArgumentException(file + ": " + problem);
    }

    private static IllegalArgumentException bad(Path file, String problem, Throwable cause) {
        return new IllegalArgumentException(file + ": " + problem, cause);
    }

    /** A token id: a whole number in [0, MAX_VOCAB). */
    private static int id(Path file, JsonElement e, String what) {
        if (e != null && e.isJsonPrimitive() && e.getAsJsonPrimitive().isNumber()) {
            try {
                int id = e.getAsBigDecimal().intValueExact();
                if (id >= 0 && id < MAX_VOCAB) return id;
            } catch (ArithmeticException | NumberFormatException ignored) {
                // reported below
            }
        }
        throw bad(file, what + " is not a token id in [0, " + MAX_VOCAB + "): " + shorten(e));
    }

    private static String string(Path file, JsonElement e, String what) {
        if (e != null && e.isJsonPrimitive() && e.getAsJsonPrimitive().isString()) return e.getAsString();
        throw bad(file, what + " is not a string: " + shorten(e));
    }

    private static JsonObject optObject(Path file, JsonObject o, String key) {
        JsonElement e = o.get(key);
        if (e == null || e.isJsonNull()) return null;
        if (!e.isJsonObject()) throw bad(file, "'" + key + "' is not an object: " + shorten(e));
        return e.getAsJsonObject();
    }

    /** An optional true/false; absent or null is false. */
    private static boolean optBoolean(Path file, JsonObject o, String key) {
        JsonElement e = o.get(key);
        if (e == null || e.isJsonNull()) return false;
        if (e.isJsonPrimitive() && e.getAsJsonPrimitive().isBoolean()) return e.getAsBoolean();
        throw bad(file, "'" + key + "' is not true or false: " + shorten(e));
    }

    private static String shorten(JsonElement e) {
        String s = String.valueOf(e);
        return s.length() <= 80 ? s : s.substring(0, 77) + "...";
    }

    /** The decoder's entries: a Sequence's "decoders", or none. */
    private static List<JsonObject> children(Path file, JsonObject decoder, int depth) {
        JsonElement list = decoder.get("decoders");
        if (list == null || list.isJsonNull()) return List.of();
        if (!list.isJsonArray()) throw bad(file, "decoder.decoders is not an array");
        if (depth >= MAX_DECODER_NESTING) throw bad(file, "decoders nest deeper than " + MAX_DECODER_NESTING + " levels");
        List<JsonObject> out = new ArrayList<>();
        for (JsonElement d : list.getAsJsonArray()) {
            if (!d.isJsonObject()) throw bad(file, "an entry of decoder.decoders is not an object: " + shorten(d));
            out.add(d.getAsJsonObject());
        }
        return out;
    }

    private static boolean usesDecoder(Path file, JsonObject decoder, String type, int depth) {
        if (decoder == null) {
            return false;
        }
        if (type.equals(stringOr(decoder, "type", ""))) {
            return true;
        }
        for (JsonObject d : children(file, decoder, depth)) {
            if (usesDecoder(file, d, type, depth + 1)) {
                return true;
            }
        }
        return false;
    }

    private static boolean stripsSpace(Path file, JsonObject decoder, int depth) {
        if (decoder == null) {
            return false;
        }
        String type = stringOr(decoder, "type", "");
        if (type.equals("Metaspace")) {
            String scheme = stringOr(decoder, "prepend_scheme", "");
            return scheme.equals("first") || scheme.equals("always") || optBoolean(file, decoder, "add_prefix_space");
        }
        if (type.equals("Strip")) {
            JsonElement start = decoder.get("start");
            return " ".equals(stringOr(decoder, "content", "")) && start != null && start.isJsonPrimitive()
                    && start.getAsJsonPrimitive().isNumber() && start.getAsDouble() > 0;
        }
        for (JsonObject d : children(file, decoder, depth)) {
            if (stripsSpace(file, d, depth + 1)) {
                return true;
            }
        }
        return false;
    }

    private static String stringOr(JsonObject o, String key, String fallback) {
        JsonElement e = o.get(key);
        return e != null && e.isJsonPrimitive() ? e.getAsString() : fallback;
    }

    private static int specialId(JsonObject config, String key, List<String> wellKnown, Map<String, Integer> idOf) {
        if (config != null && config.has(key)) {
            JsonElement e = config.get(key);
            if (e.isJsonNull()) {
                return -1; // the model says it has none
            }
            JsonElement content = e.isJsonObject() ? e.getAsJsonObject().get("content") : e;
            String text = content != null && content.isJsonPrimitive() ? content.getAsString() : null;
            if (text != null && idOf.containsKey(text)) {
                return idOf.get(text);
            }
        }
        for (String text : wellKnown) {
            if (idOf.containsKey(text)) {
                return idOf.get(text);
            }
        }
        return -1;
    }

    /** The native library's encoding; a failure there (its own error for this text) is an IllegalArgumentException. */
    private long[] encodeWithLibrary(String text, boolean addSpecialTokens) {
        try {
            return djl.encode(text, addSpecialTokens, false).getIds();
        } catch (RuntimeException e) {
            throw bad(file, "the tokenizers library cannot encode " + (text.length() <= 40 ? "'" + text + "'" : "the text")
                    + ": " + e.getMessage(), e);
        }
    }

    @Override
    public int[] encode(String text) {
        return toInts(encodeWithLibrary(text, true));
    }

    @Override
    public int[] encode(String text, boolean addBos, boolean parseSpecial) {
        int[] ids = toInts(encodeWithLibrary(text, false));
        if (!addBos || bos < 0) {
            return ids;
        }
        int[] withBos = new int[ids.length + 1];
        withBos[0] = bos;
        System.arraycopy(ids, 0, withBos, 1, ids.length);
        return withBos;
    }

    /**
     * The library's ids, each checked against the vocabulary read from the JSON: a post-processor can name ids
     * that no token has, and those must not reach the model.
     */
    private int[] toInts(long[] ids) {
        int[] out = new int[ids.length];
        for (int i = 0; i < ids.length; i++) {
            long id = ids[i];
            if (id < 0 || id >= texts.length || texts[(int) id] == null) {
                throw bad(file, "the tokenizer produced id " + id + ", which no token of its vocabulary has");
            }
            out[i] = (int) id;
        }
        return out;
    }

    @Override
    public byte[] tokenBytes(int id, boolean includeControl) {
        String text = tokenText(id);
        if (special[id]) {
            return includeControl ? text.getBytes(StandardCharsets.UTF_8) : new byte[0];
        }
        if (added[id]) {
            return text.getBytes(StandardCharsets.UTF_8);
        }
        if (byteLevel) {
            return ByteLevel.decode(text);
        }
        if (byteFallback && GgufTokenizer.isByteToken(text)) {
            return new byte[] {GgufTokenizer.byteOfToken(text)};
        }
        return text.replace('\u2581', ' ').getBytes(StandardCharsets.UTF_8);
    }

    /** The Rust library's own decoding (skipping special tokens), for comparison. */
    public String decodeWithLibrary(int[] ids) {
        return djl.decode(Arrays.stream(ids).asLongStream().toArray(), true);
    }

    @Override
    public int vocabSize() {
        return texts.length;
    }

    @Override
    public int bos() {
        return bos;
    }

    @Override
    public int eos() {
        return eos;
    }

    @Override
    public boolean addBos() {
        return addBos;
    }

    @Override
    public Set<Integer> stopTokens() {
        return stopTokens;
    }

    @Override
    public boolean isControl(int id) {
        tokenText(id);
        return special[id];
    }

    @Override
    public String tokenText(int id) {
        if (id < 0 || id >= texts.length || texts[id] == null) {
            throw new IllegalArgumentException("token id " + id + " out of range or unused");
        }
        return texts[id];
    }

    @Override
    public boolean stripsLeadingSpace() {
        return stripsLeadingSpace;
    }

    @Override
    public void close() {
        djl.close();
    }
}
