package dev.specula.server;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import dev.specula.GenerationResult;
import dev.specula.StopReason;
import java.net.Socket;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Raw HTTP (java.net.http and a socket): every bad request gets its 4xx with OpenAI's error object, a request that
 * fails in the engine fails alone (500), a client that hangs up cancels its generation, and after all of it the
 * server still answers.
 */
class BadRequestTest {
    static final String FAIL_PROMPT = "please fail inside the engine";
    static final String SLOW_PROMPT = "slow: ";
    static final int BODY_LIMIT = 64 * 1024;

    static DemoServer demo;
    /** Every generation's result, as the engine returned it. */
    static final List<GenerationResult> results = new CopyOnWriteArrayList<>();

    @BeforeAll
    static void start() throws Exception {
        demo = new DemoServer(null, 2, b -> b.maxBodyBytes(BODY_LIMIT).generator((request, listener, cancelled) -> {
            if (request.prompt().equals(FAIL_PROMPT)) throw new IllegalStateException("a failure inside the engine");
            boolean slow = request.prompt().startsWith(SLOW_PROMPT);
            GenerationResult r = demo.engine.generate(request, text -> {
                listener.onText(text);
                if (slow) sleep(5); // keeps a long generation going while the test hangs up
            }, slow ? pacedUntilCancelled(cancelled) : cancelled);
            results.add(r);
            return r;
        }));
    }

    @AfterAll
    static void stop() {
        if (demo != null) demo.close();
    }

    /**
     * The cancel check of a generation that must still run when its client hangs up: each engine step waits up to 50 ms
     * for the cancel (the scheduler goes on producing tokens whatever the listener does), so 400 tokens take seconds
     * however fast the engine runs and however long the server's threads wait for a core; a cancel ends the wait.
     */
    static java.util.function.BooleanSupplier pacedUntilCancelled(java.util.function.BooleanSupplier cancelled) {
        return () -> {
            for (int i = 0; i < 10 && !cancelled.getAsBoolean(); i++) sleep(5);
            return cancelled.getAsBoolean();
        };
    }

    static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** Asserts the status and OpenAI's error shape; returns the error object. */
    static JsonObject error(HttpResponse<String> r, int status) {
        assertEquals(status, r.statusCode(), r.body());
        assertTrue(r.headers().firstValue("Content-Type").orElse("").startsWith("application/json"));
        JsonObject error = DemoServer.json(r).getAsJsonObject("error");
        for (String key : List.of("message", "type", "param", "code")) assertTrue(error.has(key), "no " + key + " in " + r.body());
        assertTrue(!error.get("message").getAsString().isBlank());
        return error;
    }

    static String param(JsonObject error) {
        JsonElement p = error.get("param");
        return p.isJsonNull() ? "" : p.getAsString();
    }

    @ParameterizedTest(name = "{0} {1}")
    @CsvSource(delimiter = '|', quoteCharacter = '`', value = {
            "/v1/completions      | {\"prompt\": \"x\",                                    | -               | invalid_json",
            "/v1/completions      | [1, 2, 3]                                          | -               | invalid_json",
            "/v1/completions      | {\"prompt\": \"x\"} trailing                          | -               | invalid_json",
            "/v1/completions      | {'prompt': 'x'}                                    | -               | invalid_json",
            "/v1/completions      | {\"max_tokens\": 4}                                  | prompt           | -",
            "/v1/completions      | {\"prompt\": 42}                                     | prompt           | -",
            "/v1/completions      | {\"prompt\": \"x\", \"max_tokens\": \"ten\"}            | max_tokens       | -",
            "/v1/completions      | {\"prompt\": \"x\", \"max_tokens\": 2.5}               | max_tokens       | -",
            "/v1/completions      | {\"prompt\": \"x\", \"max_tokens\": -1}                | max_tokens       | -",
            "/v1/completions      | {\"prompt\": \"x\", \"max_tokens\": 0}                 | max_tokens       | -",
            "/v1/completions      | {\"prompt\": \"x\", \"max_tokens\": 1e12}              | max_tokens       | -",
            "/v1/completions      | {\"prompt\": \"x\", \"max_tokens\": 100000}            | max_tokens       | context_length_exceeded",
            "/v1/completions      | {\"prompt\": \"x\", \"temperature\": \"hot\"}           | temperature      | -",
            "/v1/completions      | {\"prompt\": \"x\", \"temperature\": 3}                | temperature      | -",
            "/v1/completions      | {\"prompt\": \"x\", \"top_p\": 0}                      | top_p            | -",
            "/v1/completions      | {\"prompt\": \"x\", \"seed\": 1.5}                     | seed             | -",
            "/v1/completions      | {\"prompt\": \"x\", \"stream\": \"yes\"}                | stream           | -",
            "/v1/completions      | {\"prompt\": \"x\", \"stop\": [1]}                     | stop             | -",
            "/v1/completions      | {\"prompt\": \"x\", \"stop\": [\"a\",\"b\",\"c\",\"d\",\"e\"]} | stop     | -",
            "/v1/completions      | {\"prompt\": \"x\", \"n\": 2}                          | n                | unsupported_parameter",
            "/v1/completions      | {\"prompt\": [\"a\", \"b\"]}                           | prompt           | unsupported_parameter",
            "/v1/completions      | {\"prompt\": \"x\", \"logprobs\": 5}                   | logprobs         | unsupported_parameter",
            "/v1/completions      | {\"prompt\": \"x\", \"echo\": true}                    | echo             | unsupported_parameter",
            "/v1/completions      | {\"prompt\": \"x\", \"presence_penalty\": 0.5}         | presence_penalty | unsupported_parameter",
            "/v1/completions      | {\"prompt\": \"x\", \"frobnicate\": true}              | frobnicate       | unrecognized_parameter",
            "/v1/completions      | {\"prompt\": \"x\", \"stream_options\": {\"include_usage\": true}} | stream_options | -",
            "/v1/completions      | {\"prompt\": [999999]}                               | prompt           | -",
            "/v1/chat/completions | {\"messages\": \"hi\"}                               | messages         | -",
            "/v1/chat/completions | {\"messages\": []}                                   | messages         | -",
            "/v1/chat/completions | {\"messages\": [{\"content\": \"hi\"}]}              | messages         | -",
            "/v1/chat/completions | {\"messages\": [{\"role\": \"wizard\", \"content\": \"hi\"}]} | messages | -",
            "/v1/chat/completions | {\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"tools\": [{\"type\": \"function\"}]} | tools | unsupported_parameter",
            "/v1/chat/completions | {\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_completion_tokens\": -5} | max_completion_tokens | -",
            "/v1/chat/completions | {\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"prompt\": \"x\"} | prompt | unrecognized_parameter",
    })
    void badBodiesAre400(String path, String body, String param, String code) throws Exception {
        JsonObject error = error(demo.post(path, body), 400);
        assertEquals("invalid_request_error", error.get("type").getAsString());
        assertEquals(param.equals("-") ? "" : param, param(error), error.toString());
        if (!code.equals("-")) assertEquals(code, error.get("code").getAsString(), error.toString());
        assertServes();
    }

    @Test
    void promptOverTheContextIs400() throws Exception {
        String prompt = "int x = 1;\n".repeat(DemoServer.CONTEXT);
        JsonObject o = new JsonObject();
        o.addProperty("prompt", prompt);
        JsonObject error = error(demo.post("/v1/completions", o.toString()), 400);
        assertEquals("context_length_exceeded", error.get("code").getAsString());
        assertEquals("prompt", param(error));
        JsonObject chat = new JsonObject();
        chat.add("messages", com.google.gson.JsonParser.parseString("[{\"role\":\"user\",\"content\":" + new com.google.gson.JsonPrimitive(prompt) + "}]"));
        assertEquals("messages", param(error(demo.post("/v1/chat/completions", chat.toString()), 400)));
        assertServes();
    }

    @Test
    void bodyOverTheLimitIs413() throws Exception {
        String body = "{\"prompt\": \"" + "a".repeat(BODY_LIMIT) + "\"}";
        assertEquals("request_too_large", error(demo.post("/v1/completions", body), 413).get("code").getAsString());
        // Without a Content-Length (chunked), the limit holds while reading.
        HttpResponse<String> chunked = demo.http.send(demo.request("/v1/completions").POST(HttpRequest.BodyPublishers.ofInputStream(
                () -> new java.io.ByteArrayInputStream(body.getBytes(StandardCharsets.UTF_8)))).build(), HttpResponse.BodyHandlers.ofString());
        error(chunked, 413);
        assertServes();
    }

    @Test
    void wrongMethodsPathsAndModels() throws Exception {
        error(demo.get("/v1/completions"), 405);
        error(demo.http.send(demo.request("/v1/models").POST(HttpRequest.BodyPublishers.noBody()).build(), HttpResponse.BodyHandlers.ofString()), 405);
        error(demo.get("/v1/embeddings"), 404);
        JsonObject error = error(demo.post("/v1/completions", "{\"model\": \"gpt-4\", \"prompt\": \"x\"}"), 404);
        assertEquals("model_not_found", error.get("code").getAsString());
        assertServes();
    }

    @Test
    void anEngineFailureFailsOnlyItsRequest() throws Exception {
        JsonObject error = error(demo.post("/v1/completions", "{\"prompt\": \"" + FAIL_PROMPT + "\", \"max_tokens\": 4}"), 500);
        assertEquals("server_error", error.get("type").getAsString());
        assertTrue(error.get("message").getAsString().contains("a failure inside the engine"), error.toString());
        HttpResponse<String> streamed = demo.post("/v1/completions", "{\"prompt\": \"" + FAIL_PROMPT + "\", \"stream\": true}");
        error(streamed, 500); // nothing was streamed yet, so the failure is an ordinary answer
        assertServes();
    }

    @Test
    void aClientThatHangsUpCancelsItsGeneration() throws Exception {
        String body = "{\"prompt\": \"" + SLOW_PROMPT + "public void run() {\\n\", \"max_tokens\": 400, \"stream\": true, \"temperature\": 0}";
        int before = results.size();
        try (Socket socket = new Socket(demo.server.uri().getHost(), demo.server.port())) {
            DemoServer.streamCompletion(socket, body); // then hangs up
        }
        while (results.size() == before) sleep(10); // the generation leaves the engine
        GenerationResult r = results.get(before);
        assertEquals(StopReason.CANCELLED, r.stopReason());
        assertTrue(r.tokens().length < 400, r.tokens().length + " tokens");
        assertTrue(metric("specula:request_success_total{finished_reason=\"abort\"}") >= 1);
        assertServes();
    }

    @Test
    void metricsInPrometheusText() throws Exception {
        assertServes();
        // The drafter's counters appear once it drafted, which the engine's adaptive budget decides by measured step
        // times: decode until it has (it probes within a few hundred steps) rather than count on earlier tests.
        for (int i = 0; i < 50 && !demo.engine.stats().speculation().containsKey("recycling"); i++)
            assertEquals(200, demo.post("/v1/completions", "{\"prompt\": \"int x = \", \"max_tokens\": 32, \"temperature\": 0}").statusCode());
        HttpResponse<String> r = demo.get("/metrics");
        assertEquals(200, r.statusCode());
        assertTrue(r.headers().firstValue("Content-Type").orElse("").startsWith("text/plain"));
        for (String name : List.of("specula:time_to_first_token_seconds_bucket", "specula:inter_token_latency_seconds_count",
                "specula:e2e_request_latency_seconds_sum", "specula:num_requests_running", "specula:num_requests_waiting",
                "specula:prompt_tokens_total", "specula:generation_tokens_total", "specula:spec_decode_num_drafts_total{drafter=\"recycling\"}",
                "specula:spec_decode_num_accepted_tokens_total{drafter=\"recycling\"}", "process_resident_memory_bytes")) {
            assertTrue(r.body().contains(name), name + " missing from\n" + r.body());
        }
        assertTrue(metric("specula:generation_tokens_total") > 0);
        assertTrue(metric("specula:http_requests_total{endpoint=\"/v1/completions\",status=\"200\"}") >= 1);
        for (String line : r.body().split("\n")) {
            assertTrue(line.startsWith("# HELP ") || line.startsWith("# TYPE ") || line.matches("[a-z0-9_:]+(\\{[^}]*\\})? -?[0-9.e+-]+"), line);
        }
    }

    @Test
    void healthAndModels() throws Exception {
        assertEquals("ok", DemoServer.json(demo.get("/health")).get("status").getAsString());
        JsonObject models = DemoServer.json(demo.get("/v1/models"));
        assertEquals(demo.server.modelName(), models.getAsJsonArray("data").get(0).getAsJsonObject().get("id").getAsString());
    }

    /** A metric's value in /metrics (0 when absent). */
    static double metric(String series) throws Exception {
        for (String line : demo.get("/metrics").body().split("\n")) {
            if (line.startsWith(series + " ")) return Double.parseDouble(line.substring(series.length() + 1));
        }
        return 0;
    }

    /** The server still answers a real request. */
    static void assertServes() throws Exception {
        HttpResponse<String> r = demo.post("/v1/completions", "{\"prompt\": \"int x = \", \"max_tokens\": 3, \"temperature\": 0}");
        assertEquals(200, r.statusCode(), r.body());
        assertTrue(DemoServer.json(r).getAsJsonObject("usage").get("completion_tokens").getAsInt() >= 1);
    }
}
