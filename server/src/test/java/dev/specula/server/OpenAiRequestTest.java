package dev.specula.server;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.specula.sampling.SamplingOptions;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/** The request reader alone: what it takes, and that no input makes it throw anything but a 400 {@link ApiError}. */
class OpenAiRequestTest {
    @Test
    void readsTheFieldsItKnows() {
        OpenAiRequest r = OpenAiRequest.parse("""
                {"model": "m", "prompt": "hi", "max_tokens": 7, "temperature": 0.5, "top_p": 0.9, "top_k": 40, "seed": 3,
                 "stop": ["\\n\\n", "}"], "stream": true, "stream_options": {"include_usage": true}, "n": 1, "user": "u",
                 "logprobs": null, "echo": false, "presence_penalty": 0.0}""", false);
        assertEquals("m", r.model());
        assertEquals("hi", r.prompt());
        assertEquals(7, r.maxTokens().getAsInt());
        assertEquals(SamplingOptions.sampled(0.5f, 3).withTopP(0.9f).withTopK(40), r.sampling());
        assertEquals(List.of("\n\n", "}"), r.stop());
        assertTrue(r.stream() && r.includeUsage());
        OpenAiRequest greedy = OpenAiRequest.parse("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"temperature\": 0, \"max_completion_tokens\": 5}", true);
        assertTrue(greedy.sampling().greedy());
        assertEquals(5, greedy.maxTokens().getAsInt());
        assertEquals("max_completion_tokens", greedy.maxTokensParam());
        assertFalse(greedy.stream());
        assertEquals(3, OpenAiRequest.parse("{\"prompt\": [1, 2, 3]}", false).promptIds().length);
        assertEquals(2, OpenAiRequest.parse("{\"prompt\": [[5, 6]]}", false).promptIds().length);
    }

    @Test
    void aSampledRequestWithoutASeedGetsARandomOne() {
        long a = OpenAiRequest.parse("{\"prompt\": \"x\"}", false).sampling().seed();
        long b = OpenAiRequest.parse("{\"prompt\": \"x\"}", false).sampling().seed();
        assertTrue(a != b, "two requests without a seed sampled with the same seed");
    }

    /** Seeded mutations of valid bodies: each is read or refused with a 400, nothing else. */
    @Test
    void anyBodyIsReadOrRefusedWith400() {
        List<String> seeds = List.of(
                "{\"prompt\": \"hi\", \"max_tokens\": 7, \"temperature\": 0.5, \"stop\": [\"a\"], \"stream\": true, \"stream_options\": {\"include_usage\": true}}",
                "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"top_p\": 1, \"seed\": -5, \"n\": 1, \"logit_bias\": {}}",
                "{\"prompt\": [[1, 2]], \"max_tokens\": 1e3, \"top_k\": 0}");
        String alphabet = "{}[]\",:0123456789.eE+-truefalsnl \\u00e9\uD83D\uDE00ab";
        Random random = new Random(15);
        for (int i = 0; i < 6_000; i++) {
            StringBuilder s = new StringBuilder(seeds.get(i % seeds.size()));
            for (int edits = 1 + random.nextInt(4); edits > 0; edits--) {
                int at = random.nextInt(s.length() + 1);
                switch (random.nextInt(3)) {
                    case 0 -> s.insert(at, alphabet.charAt(random.nextInt(alphabet.length())));
                    case 1 -> { if (at < s.length()) s.deleteCharAt(at); }
                    default -> { if (at < s.length()) s.setCharAt(at, alphabet.charAt(random.nextInt(alphabet.length()))); }
                }
            }
            for (boolean chat : new boolean[] {false, true}) {
                try {
                    OpenAiRequest.parse(s.toString(), chat);
                } catch (ApiError e) {
                    assertEquals(400, e.status, s.toString());
                    assertFalse(e.getMessage() == null || e.getMessage().isBlank(), s.toString());
                } catch (RuntimeException e) {
                    throw new AssertionError("input " + s + " threw " + e, e);
                }
            }
        }
    }

    @Test
    void deepNestingAndLongNumbersAreRefusedCheaply() {
        String deep = "{\"prompt\": " + "[".repeat(100_000) + "]".repeat(100_000) + "}";
        assertEquals(400, assertRefused(deep).status);
        ApiError longNumber = assertRefused("{\"prompt\": \"x\", \"max_tokens\": " + "9".repeat(100_000) + "}");
        assertEquals(400, longNumber.status, longNumber.getMessage());
    }

    static ApiError assertRefused(String body) {
        try {
            OpenAiRequest.parse(body, false);
        } catch (ApiError e) {
            return e;
        }
        throw new AssertionError("accepted: " + body.substring(0, 60));
    }
}
