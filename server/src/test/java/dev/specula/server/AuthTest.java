package dev.specula.server;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** With an API key, /v1/ needs {@code Authorization: Bearer KEY}; /health and /metrics stay open (for probes and scrapers). */
class AuthTest {
    static final String KEY = "sk-right-key";
    static DemoServer demo;

    @BeforeAll
    static void start() throws Exception {
        demo = new DemoServer(KEY, 1, b -> b);
    }

    @AfterAll
    static void stop() {
        if (demo != null) demo.close();
    }

    static HttpResponse<String> send(String path, String authorization) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(demo.uri(path));
        if (authorization != null) b.header("Authorization", authorization);
        return demo.http.send(b.GET().build(), HttpResponse.BodyHandlers.ofString());
    }

    @Test
    void aMissingOrWrongKeyIs401() throws Exception {
        for (String auth : new String[] {null, "Bearer sk-wrong-key", "Bearer " + KEY + "x", "Bearer ", "Basic " + KEY, KEY}) {
            HttpResponse<String> r = send("/v1/models", auth);
            assertEquals(401, r.statusCode(), String.valueOf(auth));
            assertEquals("invalid_api_key", DemoServer.json(r).getAsJsonObject("error").get("code").getAsString());
            assertEquals("Bearer", r.headers().firstValue("WWW-Authenticate").orElse(""));
        }
        HttpResponse<String> post = demo.http.send(HttpRequest.newBuilder(demo.uri("/v1/completions"))
                .POST(HttpRequest.BodyPublishers.ofString("{\"prompt\": \"x\"}")).build(), HttpResponse.BodyHandlers.ofString());
        assertEquals(401, post.statusCode());
        assertEquals(401, send("/v1/anything", null).statusCode(), "unknown /v1 paths do not answer before the key is checked");
    }

    @Test
    void theRightKeyPasses() throws Exception {
        assertEquals(200, send("/v1/models", "Bearer " + KEY).statusCode());
        assertEquals(200, send("/v1/models", "bearer " + KEY).statusCode());
        assertEquals(200, demo.post("/v1/completions", "{\"prompt\": \"int x\", \"max_tokens\": 2}").statusCode());
    }

    @Test
    void probesNeedNoKey() throws Exception {
        assertEquals(200, send("/health", null).statusCode());
        assertEquals(200, send("/metrics", null).statusCode());
    }
}
