package dev.specula.tokenizer;

import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

/**
 * The vocabulary part of GGUF metadata ({@code tokenizer.ggml.*}), read the way llama.cpp's
 * {@code llama_vocab::impl::load} reads it: default special ids per tokenizer family, overrides
 * from the metadata, EOT/EOM and end-of-generation tokens found by their text.
 */
final class GgufVocabulary {

    // Token types as stored in tokenizer.ggml.token_type (llama_token_type).
    static final int TYPE_NORMAL = 1;
    static final int TYPE_UNKNOWN = 2;
    static final int TYPE_CONTROL = 3;
    static final int TYPE_USER_DEFINED = 4;
    static final int TYPE_UNUSED = 5;
    static final int TYPE_BYTE = 6;

    // Token attributes (llama_token_attr bits); a token's type becomes one of them, and llama.cpp
    // adds CONTROL to end-of-generation tokens that were not typed control.
    static final int ATTR_UNDEFINED = 0;
    static final int ATTR_UNKNOWN = 1 << 0;
    static final int ATTR_UNUSED = 1 << 1;
    static final int ATTR_NORMAL = 1 << 2;
    static final int ATTR_CONTROL = 1 << 3;
    static final int ATTR_USER_DEFINED = 1 << 4;
    static final int ATTR_BYTE = 1 << 5;

    private static final String KEY = "tokenizer.ggml.";

    /** Texts llama.cpp takes as the EOT token when tokenizer.ggml.eot_token_id is absent. */
    private static final List<String> EOT_TEXTS = List.of(
            "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
            "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>",
            "<end_of_utterance>");

    /** Texts llama.cpp puts in its end-of-generation set (special_eog_ids). */
    private static final Set<String> EOG_TEXTS = Set.of(
            "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>",
            "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>",
            "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>",
            "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~[");

    private final String model;
    private final String pre;
    private final String[] texts;
    private final float[] scores;
    private final int[] attrs;
    private final Map<String, Integer> ids;
    private final int bos;
    private final int eos;
    private final int eot;
    private final int eom;
    private final int unk;
    private final boolean addBos;
    private final boolean addEos;
    private final boolean addSpacePrefix;
    private final Set<Integer> stopTokens;
    /** Control, user-defined and unknown tokens, longest text first (cache_special_tokens). */
    private final int[] specialTokens;

    private GgufVocabulary(String model, String pre, String[] texts, float[] scores, int[] attrs,
            Map<String, Integer> ids, int bos, int eos, int eot, int eom, int unk, boolean addBos,
            boolean addEos, boolean addSpacePrefix, Set<Integer> stopTokens, int[] specialTokens) {
        this.model = model;
        this.pre = pre;
        this.texts = texts;
        this.scores = scores;
        this.attrs = attrs;
        this.ids = ids;
        this.bos = bos;
        this.eos = eos;
        this.eot = eot;
        this.eom = eom;
        this.unk = unk;
        this.addBos = addBos;
        this.addEos = addEos;
        this.addSpacePrefix = addSpacePrefix;
        this.stopTokens = stopTokens;
        this.specialTokens = specialTokens;
    }

    static GgufVocabulary fromMetadata(Map<String, Object> md) {
        String model = string(md, "model", null);
        if (model == null) {
            throw new IllegalArgumentException("GGUF metadata has no tokenizer.ggml.model");
        }
        String pre = string(md, "pre", "");
        List<String> tokenList = stringList(md, "tokens");
        if (tokenList == null || tokenList.isEmpty()) {
            throw new IllegalArgumentException("GGUF metadata has no tokenizer.ggml.tokens");
        }
        int n = tokenList.size();
        float[] scores = floats(md, "scores", n);
        int[] types = ints(md, "token_type", n);

        String[] texts = new String[n];
        int[] attrs = new int[n];
        Map<String, Integer> ids = new HashMap<>(n * 2);
        for (int i = 0; i < n; i++) {
            String text = tokenList.get(i);
            if (text == null || text.isEmpty()) {
                text = "[EMPTY_" + i + "]";
            }
            Integer previous = ids.putIfAbsent(text, i);
            if (previous != null) {
                throw new IllegalArgumentException("duplicate token in vocabulary: '" + text
                        + "' has ids " + previous + " and " + i);
            }
            texts[i] = text;
            attrs[i] = types == null ? ATTR_NORMAL : attrOfType(types[i]);
            if (attrs[i] == ATTR_BYTE && !GgufTokenizer.isByteToken(text)) {
                // Decoding it would fail later; say so now.
                throw new IllegalArgumentException("token " + i + " is typed as a byte but its text '" + text
                        + "' is not of the form <0xXX>");
            }
        }

        boolean spm = model.equals("llama");
        // Family defaults, as llama.cpp sets them before reading the metadata.
        int bos = spm ? 1 : 11;
        int eos = spm ? 2 : 11;
        int unk = spm ? 0 : -1;
        boolean addBos = spm || PreTokenizer.addsBosByDefault(pre);
        boolean addSpacePrefix = spm;
        bos = inRange(bos, n);
        eos = inRange(eos, n);
        unk = inRange(unk, n);

        bos = id(md, "bos_token_id", bos, n);
        eos = id(md, "eos_token_id", eos, n);
        unk = id(md, "unknown_token_id", unk, n);
        int eot = id(md, "eot_token_id", -1, n);
        int eom = id(md, "eom_token_id", -1, n);
        addBos = bool(md, "add_bos_token", addBos);
        boolean addEos = bool(md, "add_eos_token", false);
        addSpacePrefix = bool(md, "add_space_prefix", addSpacePrefix);

        // EOT / EOM by text (lowest id wins when several match); they become control tokens.
        if (eot < 0) {
            for (int i = 0; i < n && eot < 0; i++) {
                if (EOT_TEXTS.contains(texts[i])) {
                    eot = i;
                    attrs[i] |= ATTR_CONTROL;
                }
            }
        }
        if (eom < 0) {
            Integer found = ids.get("<|eom_id|>");
            if (found != null) {
                eom = found;
                attrs[eom] |= ATTR_CONTROL;
            }
        }

        Set<Integer> stop = new TreeSet<>();
        for (int i = 0; i < n; i++) {
            if (EOG_TEXTS.contains(texts[i])) {
                stop.add(i);
                attrs[i] |= ATTR_CONTROL;
            }
        }
        for (int id : new int[] {eos, eot, eom}) {
            if (id >= 0) {
                stop.add(id);
            }
        }

        List<Integer> special = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            if ((attrs[i] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN)) != 0) {
                special.add(i);
            }
        }
        special.sort((a, b) -> Integer.compare(texts[b].length(), texts[a].length()));
        int[] specialTokens = special.stream().mapToInt(Integer::intValue).toArray();

        return new GgufVocabulary(model, pre, texts, scores, attrs, ids, bos, eos, eot, eom, unk,
                addBos, addEos, addSpacePrefix, Collections.unmodifiableSet(stop), specialTokens);
    }

    private static int attrOfType(int type) {
        return switch (type) {
            case TYPE_NORMAL -> ATTR_NORMAL;
            case TYPE_UNKNOWN -> ATTR_UNKNOWN;
            case TYPE_CONTROL -> ATTR_CONTROL;
            case TYPE_USER_DEFINED -> ATTR_USER_DEFINED;
            case TYPE_UNUSED -> ATTR_UNUSED;
            case TYPE_BYTE -> ATTR_BYTE;
            default -> ATTR_UNDEFINED;
        };
    }

    private static int inRange(int id, int n) {
        return id >= 0 && id < n ? id : -1;
    }

    private static Object get(Map<String, Object> md, String key) {
        return md.get(KEY + key);
    }

    private static String string(Map<String, Object> md, String key, String fallback) {
        Object value = get(md, key);
        if (value == null) {
            return fallback;
        }
        if (value instanceof String s) {
            return s;
        }
        throw new IllegalArgumentException(KEY + key + " should be a string, not " + value.getClass().getSimpleName());
    }

    static List<String> stringList(Map<String, Object> md, String key) {
        Object value = get(md, key);
        if (value == null) {
            return null;
        }
        if (value instanceof List<?> list) {
            List<String> out = new ArrayList<>(list.size());
            for (Object o : list) {
                if (!(o instanceof String text)) {
                    throw new IllegalArgumentException(KEY + key + " should be a list of strings, but holds "
                            + (o == null ? "null" : o.getClass().getSimpleName()));
                }
                out.add(text);
            }
            return out;
        }
        if (value instanceof String[] array) {
            return List.of(array);
        }
        throw new IllegalArgumentException(KEY + key + " should be a list of strings");
    }

    private static float[] floats(Map<String, Object> md, String key, int n) {
        Object value = get(md, key);
        float[] out;
        if (value == null) {
            return new float[n];
        } else if (value instanceof float[] f) {
            out = f;
        } else if (value instanceof int[] ints) {
            out = new float[ints.length];
            for (int i = 0; i < ints.length; i++) {
                out[i] = ints[i];
            }
        } else if (value instanceof double[] d) {
            out = new float[d.length];
            for (int i = 0; i < d.length; i++) {
                out[i] = (float) d[i];
            }
        } else {
            throw new IllegalArgumentException(KEY + key + " should be a float array");
        }
        if (out.length < n) {
            throw new IllegalArgumentException("Index out of array bounds for scores (" + out.length + " < " + n + ")");
        }
        return out;
    }

    private static int[] ints(Map<String, Object> md, String key, int n) {
        Object value = get(md, key);
        if (value == null) {
            return null;
        }
        if (!(value instanceof int[] out)) {
            throw new IllegalArgumentException(KEY + key + " should be an int array");
        }
        if (out.length < n) {
            throw new IllegalArgumentException("Index out of array bounds for " + key + " (" + out.length + " < " + n + ")");
        }
        return out;
    }

    private static int id(Map<String, Object> md, String key, int fallback, int n) {
        Object value = get(md, key);
        if (value == null) {
            return fallback;
        }
        if (!(value instanceof Number number)) {
            throw new IllegalArgumentException(KEY + key + " should be an integer");
        }
        long id = number.longValue();
        return id >= 0 && id < n ? (int) id : fallback;
    }

    private static boolean bool(Map<String, Object> md, String key, boolean fallback) {
        Object value = get(md, key);
        if (value == null) {
            return fallback;
        }
        if (value instanceof Boolean b) {
            return b;
        }
        if (value instanceof Number number) {
            return number.intValue() != 0;
        }
        throw new IllegalArgumentException(KEY + key + " should be a boolean");
    }

    String model() {
        return model;
    }

    String pre() {
        return pre;
    }

    int size() {
        return texts.length;
    }

    String text(int id) {
        return texts[id];
    }

    float score(int id) {
        return scores[id];
    }

    int attr(int id) {
        return attrs[id];
    }

    boolean hasAttr(int id, int attr) {
        return (attrs[id] & attr) != 0;
    }

    /** The id of the token whose text is exactly {@code text}, or -1. */
    int idOf(String text) {
        Integer id = ids.get(text);
        return id == null ? -1 : id;
    }

    int bos() {
        return bos;
    }

    int eos() {
        return eos;
    }

    int eot() {
        return eot;
    }

    int eom() {
        return eom;
    }

    int unk() {
        return unk;
    }

    boolean addBos() {
        return addBos;
    }

    boolean addEos() {
        return addEos;
    }

    boolean addSpacePrefix() {
        return addSpacePrefix;
    }

    Set<Integer> stopTokens() {
        return stopTokens;
    }

    int[] specialTokens() {
        return specialTokens;
    }

    void checkId(int id) {
        if (id < 0 || id >= texts.length) {
            throw new IllegalArgumentException("token id " + id + " out of range [0, " + texts.length + ")");
        }
    }
}
