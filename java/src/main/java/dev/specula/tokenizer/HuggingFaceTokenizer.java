package dev.specula.tokenizer;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
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

    private final ai.djl.huggingface.tokenizers.HuggingFaceTokenizer djl;
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

    private HuggingFaceTokenizer(ai.djl.huggingface.tokenizers.HuggingFaceTokenizer djl, JsonObject json,
            JsonObject config) {
        this.djl = djl;
        Map<Integer, String> byId = new HashMap<>();
        JsonObject model = json.getAsJsonObject("model");
        JsonElement vocab = model == null ? null : model.get("vocab");
        if (vocab != null && vocab.isJsonObject()) { // BPE, WordPiece, WordLevel
            for (Map.Entry<String, JsonElement> e : vocab.getAsJsonObject().entrySet()) {
                byId.put(e.getValue().getAsInt(), e.getKey());
            }
        } else if (vocab != null && vocab.isJsonArray()) { // Unigram: [[piece, score], ...]
            JsonArray pieces = vocab.getAsJsonArray();
            for (int i = 0; i < pieces.size(); i++) {
                byId.put(i, pieces.get(i).getAsJsonArray().get(0).getAsString());
            }
        }
        Map<Integer, Boolean> addedSpecial = new HashMap<>();
        JsonArray addedTokens = json.has("added_tokens") ? json.getAsJsonArray("added_tokens") : new JsonArray();
        for (JsonElement element : addedTokens) {
            JsonObject token = element.getAsJsonObject();
            int id = token.get("id").getAsInt();
            byId.put(id, token.get("content").getAsString());
            addedSpecial.put(id, token.has("special") && token.get("special").getAsBoolean());
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
        byteLevel = usesDecoder(decoder, "ByteLevel");
        byteFallback = usesDecoder(decoder, "ByteFallback") || (model != null && model.has("byte_fallback")
                && model.get("byte_fallback").getAsBoolean());
        stripsLeadingSpace = stripsSpace(decoder);

        bos = specialId(config, "bos_token", BOS_TEXTS, idOf);
        eos = specialId(config, "eos_token", EOS_TEXTS, idOf);
        long[] withSpecial = djl.encode("a", true, false).getIds();
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

    static HuggingFaceTokenizer load(Path path) throws IOException {
        Path file = Files.isDirectory(path) ? path.resolve("tokenizer.json") : path;
        JsonObject json = JsonParser.parseString(Files.readString(file, StandardCharsets.UTF_8)).getAsJsonObject();
        Path configFile = file.resolveSibling("tokenizer_config.json");
        JsonObject config = Files.isRegularFile(configFile)
                ? JsonParser.parseString(Files.readString(configFile, StandardCharsets.UTF_8)).getAsJsonObject()
                : null;
        // DJL sends telemetry when it finds itself on EC2 unless told not to; never let it try.
        if (System.getenv("OPT_OUT_TRACKING") == null && System.getProperty("OPT_OUT_TRACKING") == null) {
            System.setProperty("OPT_OUT_TRACKING", "true");
        }
        // No truncation or padding: DJL otherwise cuts encodings at 512 tokens.
        Map<String, String> options = Map.of("truncation", "false", "padding", "false",
                "addSpecialTokens", "true", "modelMaxLength", String.valueOf(Integer.MAX_VALUE));
        var djl = ai.djl.huggingface.tokenizers.HuggingFaceTokenizer.newInstance(file, options);
        return new HuggingFaceTokenizer(djl, json, config);
    }

    private static boolean usesDecoder(JsonObject decoder, String type) {
        if (decoder == null) {
            return false;
        }
        if (type.equals(stringOr(decoder, "type", ""))) {
            return true;
        }
        if (decoder.has("decoders")) {
            for (JsonElement d : decoder.getAsJsonArray("decoders")) {
                if (usesDecoder(d.getAsJsonObject(), type)) {
                    return true;
                }
            }
        }
        return false;
    }

    private static boolean stripsSpace(JsonObject decoder) {
        if (decoder == null) {
            return false;
        }
        String type = stringOr(decoder, "type", "");
        if (type.equals("Metaspace")) {
            String scheme = stringOr(decoder, "prepend_scheme", "");
            return scheme.equals("first") || scheme.equals("always")
                    || (decoder.has("add_prefix_space") && decoder.get("add_prefix_space").getAsBoolean());
        }
        if (type.equals("Strip")) {
            return " ".equals(stringOr(decoder, "content", "")) && decoder.has("start") && decoder.get("start").getAsInt() > 0;
        }
        if (decoder.has("decoders")) {
            for (JsonElement d : decoder.getAsJsonArray("decoders")) {
                if (stripsSpace(d.getAsJsonObject())) {
                    return true;
                }
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
            String text = e.isJsonPrimitive() ? e.getAsString()
                    : e.isJsonObject() && e.getAsJsonObject().has("content") ? e.getAsJsonObject().get("content").getAsString()
                    : null;
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

    @Override
    public int[] encode(String text) {
        return toInts(djl.encode(text, true, false).getIds());
    }

    @Override
    public int[] encode(String text, boolean addBos, boolean parseSpecial) {
        int[] ids = toInts(djl.encode(text, false, false).getIds());
        if (!addBos || bos < 0) {
            return ids;
        }
        int[] withBos = new int[ids.length + 1];
        withBos[0] = bos;
        System.arraycopy(ids, 0, withBos, 1, ids.length);
        return withBos;
    }

    private static int[] toInts(long[] ids) {
        return Arrays.stream(ids).mapToInt(Math::toIntExact).toArray();
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
        if (byteFallback && text.length() == 6 && text.startsWith("<0x") && text.endsWith(">")) {
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
