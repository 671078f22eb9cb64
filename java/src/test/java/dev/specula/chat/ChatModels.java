package dev.specula.chat;

import dev.specula.model.TestModelMaker;
import dev.specula.model.gguf.GgmlType;
import dev.specula.tokenizer.VocabTrainer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Small random-weight chat models for tests: a GPT-2-style vocabulary trained on the test corpus, with chat
 * markers added as control tokens, and the given chat template in {@code tokenizer.chat_template}.
 */
final class ChatModels {
    private ChatModels() {}

    static final List<String> MARKERS = List.of("<|im_start|>", "<|im_end|>", "<|turn_start|>", "<|turn_end|>");

    /** The tokenizer metadata with the chat markers appended as control tokens, and the template (null: none). */
    static Map<String, Object> tokenizer(String template) {
        Map<String, Object> md = new LinkedHashMap<>(VocabTrainer.ggufMetadata("gpt2", 400, 7));
        List<String> tokens = new ArrayList<>(castList(md.get("tokenizer.ggml.tokens")));
        int[] types = (int[]) md.get("tokenizer.ggml.token_type");
        int[] more = Arrays.copyOf(types, types.length + MARKERS.size());
        for (int i = 0; i < MARKERS.size(); i++) {
            tokens.add(MARKERS.get(i));
            more[types.length + i] = 3; // control
        }
        md.put("tokenizer.ggml.tokens", List.copyOf(tokens));
        md.put("tokenizer.ggml.token_type", more);
        if (template != null) md.put("tokenizer.chat_template", template);
        return md;
    }

    @SuppressWarnings("unchecked")
    private static List<String> castList(Object o) {
        return (List<String>) o;
    }

    static Path write(Path file, String template, int layers, long seed) {
        Map<String, Object> md = tokenizer(template);
        int vocab = castList(md.get("tokenizer.ggml.tokens")).size();
        new TestModelMaker().arch("qwen2").dim(64).layers(layers).heads(4).kvHeads(2).ff(160).vocab(vocab).context(1024)
                .type(GgmlType.F32).seed(seed).tokenizer(md).write(file);
        return file;
    }

    /** A ChatML template ending turns with the marker that the tokenizer does not know by its text. */
    static final String TURN_TEMPLATE = "{% for m in messages %}<|turn_start|>{{ m.role }}\n{{ m.content }}<|turn_end|>\n{% endfor %}"
            + "{% if add_generation_prompt %}<|turn_start|>assistant\n{% endif %}";
}
