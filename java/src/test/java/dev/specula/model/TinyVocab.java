package dev.specula.model;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** A tiny SentencePiece-style vocabulary as tokenizer.ggml.* metadata, for tests. */
public final class TinyVocab {
    public static final List<String> PIECES = List.of("\u2581a", "\u2581the", "ing", "\u2581hello", "\u2581world");

    private TinyVocab() {}

    public static int size() {
        return 3 + 256 + PIECES.size();
    }

    public static Map<String, Object> metadata() {
        List<String> tokens = new ArrayList<>(List.of("<unk>", "<s>", "</s>"));
        for (int b = 0; b < 256; b++) tokens.add(String.format("<0x%02X>", b));
        tokens.addAll(PIECES);
        float[] scores = new float[tokens.size()];
        int[] types = new int[tokens.size()];
        types[0] = 2;
        types[1] = 3;
        types[2] = 3;
        for (int i = 3; i < 259; i++) types[i] = 6;
        for (int i = 259; i < tokens.size(); i++) {
            types[i] = 1;
            scores[i] = -(i - 258);
        }
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("tokenizer.ggml.model", "llama");
        m.put("tokenizer.ggml.tokens", tokens);
        m.put("tokenizer.ggml.scores", scores);
        m.put("tokenizer.ggml.token_type", types);
        m.put("tokenizer.ggml.unknown_token_id", 0);
        m.put("tokenizer.ggml.bos_token_id", 1);
        m.put("tokenizer.ggml.eos_token_id", 2);
        m.put("tokenizer.ggml.add_bos_token", true);
        return m;
    }
}
