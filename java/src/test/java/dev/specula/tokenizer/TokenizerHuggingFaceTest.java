package dev.specula.tokenizer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;


import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link HuggingFaceTokenizer} on a Llama 3 style {@code tokenizer.json} built from the same
 * trained vocabulary as a gpt2-style GGUF: the Rust tokenizers library and the Java port of
 * llama.cpp must then agree token for token.
 */
class TokenizerHuggingFaceTest {

    @TempDir
    static Path dir;

    private static HuggingFaceTokenizer hf;
    private static Tokenizer gguf;

    @BeforeAll
    static void load() throws Exception {
        Map<String, Object> md = VocabTrainer.ggufMetadata("gpt2", 2048, 11);
        gguf = Tokenizer.fromGgufMetadata(md);
        Path json = dir.resolve("tokenizer.json");
        Files.writeString(json, HuggingFaceTokenizerWriter.tokenizerJson(md), StandardCharsets.UTF_8);
        Files.writeString(dir.resolve("tokenizer_config.json"),
                "{\"bos_token\": \"<|endoftext|>\", \"eos_token\": {\"content\": \"<|endoftext|>\"}}");
        hf = (HuggingFaceTokenizer) Tokenizer.fromHuggingFace(json);
    }

    @AfterAll
    static void close() {
        if (hf != null) {
            hf.close();
        }
    }

    @Test
    void readsVocabularyAndSpecialTokens() {
        assertEquals(gguf.vocabSize(), hf.vocabSize());
        assertEquals(gguf.eos(), hf.eos());
        assertEquals(gguf.bos(), hf.bos());
        assertTrue(hf.isControl(hf.eos()));
        assertFalse(hf.isControl(100));
        assertEquals("<|endoftext|>", hf.tokenText(hf.eos()));
        assertTrue(hf.stopTokens().contains(hf.eos()));
        assertFalse(hf.addBos());
        for (int id = 0; id < gguf.vocabSize(); id++) {
            assertArrayEquals(gguf.tokenBytes(id), hf.tokenBytes(id), "token " + id);
        }
    }

    @Test
    void encodesLikeTheGgufTokenizer() {
        // Hugging Face always matches added tokens in the text: compare with parse_special.
        List<String> mismatches = new ArrayList<>();
        List<String> samples = TokenizerSamples.all();
        for (String text : samples) {
            int[] expected = gguf.encode(text, false, true);
            int[] actual = hf.encode(text, false);
            if (!Arrays.equals(expected, actual)) {
                mismatches.add(text.replace("\n", "\\n") + "\n  gguf " + Arrays.toString(expected)
                        + "\n  hf   " + Arrays.toString(actual));
            }
        }
        System.out.printf("Hugging Face tokenizers vs GGUF BPE: %d strings, %d mismatches%n",
                samples.size(), mismatches.size());
        assertTrue(mismatches.isEmpty(), mismatches.size() + " mismatches:\n"
                + String.join("\n", mismatches.subList(0, Math.min(10, mismatches.size()))));
    }

    @Test
    void roundTripsAndAddsBosOnRequest() {
        for (String text : TokenizerSamples.edgeCases()) {
            if (text.contains("<|endoftext|>")) {
                continue; // always parsed as the special token by Hugging Face, which decodes to nothing
            }
            int[] ids = hf.encode(text, true);
            assertEquals(hf.bos(), ids[0]);
            assertEquals(text, hf.decode(ids));
        }
        String text = "Hello world, the keeper's log 🐈 日本語";
        int[] ids = hf.encode(text, false);
        assertEquals(text, hf.decodeWithLibrary(ids));
    }

    @Test
    void encodesLongTextsWithoutTruncation() {
        String text = "the lighthouse keeper wrote in his log ".repeat(200);
        int[] ids = hf.encode(text, false);
        assertTrue(ids.length > 1000, "got " + ids.length + " tokens");
        assertEquals(text, hf.decode(ids));
    }

    @Test
    void readsSentencePieceStyleJson(@TempDir Path tmp) throws Exception {
        // Llama 2 style: '▁' for spaces, <0xXX> byte fallback, a leading space stripped on decode.
        String json = """
                {
                  "version": "1.0",
                  "added_tokens": [
                    {"id": 0, "content": "<unk>", "special": true, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false},
                    {"id": 1, "content": "<s>", "special": true, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false},
                    {"id": 2, "content": "</s>", "special": true, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false}
                  ],
                  "normalizer": {"type": "Sequence", "normalizers": [
                    {"type": "Prepend", "prepend": "▁"},
                    {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
                  "pre_tokenizer": null,
                  "post_processor": {"type": "TemplateProcessing",
                    "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                    "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                    "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
                  "decoder": {"type": "Sequence", "decoders": [
                    {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                    {"type": "ByteFallback"}, {"type": "Fuse"},
                    {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
                  "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": null,
                    "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                    "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "<0xC3>": 3, "<0xA9>": 4, "▁": 5, "h": 6, "i": 7,
                              "▁h": 8, "▁hi": 9, "c": 10, "a": 11, "f": 12},
                    "merges": ["▁ h", "▁h i"]}
                }
                """;
        Path file = tmp.resolve("tokenizer.json");
        Files.writeString(file, json, StandardCharsets.UTF_8);
        try (HuggingFaceTokenizer spm = (HuggingFaceTokenizer) Tokenizer.fromHuggingFace(file)) {
            assertEquals(13, spm.vocabSize());
            assertEquals(1, spm.bos());
            assertEquals(2, spm.eos());
            assertTrue(spm.addBos());
            assertTrue(spm.stripsLeadingSpace());
            int[] ids = spm.encode("hi café");
            assertArrayEquals(new int[] {1, 9, 5, 10, 11, 12, 3, 4}, ids);
            assertEquals("hi café", spm.decode(ids));
            assertEquals("hi café", spm.decodeWithLibrary(ids));
            assertArrayEquals(new byte[] {(byte) 0xC3}, spm.tokenBytes(3));
            assertArrayEquals(" hi".getBytes(StandardCharsets.UTF_8), spm.tokenBytes(9));
            assertArrayEquals(new byte[0], spm.tokenBytes(1));
            assertArrayEquals("<s>".getBytes(StandardCharsets.UTF_8), spm.tokenBytes(1, true));
        }
    }
}
