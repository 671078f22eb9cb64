package dev.specula.server;

import static org.junit.jupiter.api.Assertions.*;

import com.google.gson.JsonObject;
import dev.specula.GenerationRequest;
import dev.specula.GenerationResult;
import dev.specula.StopReason;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.Socket;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * {@link SpeculaServer.Builder#disconnectProbe}: a non-streaming client that hangs up cancels its generation, and a
 * client that stays gets an ordinary JSON answer (a few spaces before it).
 */
class DisconnectProbeTest {
    static final String SLOW_PROMPT = "slow: ";
    static DemoServer demo;
    static final List<GenerationResult> results = new CopyOnWriteArrayList<>();

    @BeforeAll
    static void start() throws Exception {
        demo = new DemoServer(null, 2, b -> b.disconnectProbe(Duration.ofMillis(40)).generator((request, listener, cancelled) -> {
            boolean slow = request.prompt().startsWith(SLOW_PROMPT);
            GenerationResult r = demo.engine.generate(request, text -> {
                listener.onText(text);
                if (slow) BadRequestTest.sleep(5);
            }, slow ? BadRequestTest.pacedUntilCancelled(cancelled) : cancelled); // slow: every step waits 50 ms unless cancelled
            results.add(r);
            return r;
        }));
    }

    @AfterAll
    static void stop() {
        if (demo != null) demo.close();
    }

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void aNonStreamingClientThatHangsUpCancelsItsGeneration() throws Exception {
        String body = "{\"prompt\": \"" + SLOW_PROMPT + "public void run() {\\n\", \"max_tokens\": 400, \"temperature\": 0}";
        int before = results.size();
        try (Socket socket = new Socket(demo.server.uri().getHost(), demo.server.port())) {
            OutputStream out = socket.getOutputStream();
            byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
            out.write(("POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: " + bytes.length
                    + "\r\n\r\n").getBytes(StandardCharsets.US_ASCII));
            out.write(bytes);
            out.flush();
            BufferedReader in = new BufferedReader(new InputStreamReader(socket.getInputStream(), StandardCharsets.UTF_8));
            assertTrue(in.readLine().startsWith("HTTP/1.1 200"), "the probe sent the headers while the generation runs");
        } // hangs up long before the 400 tokens are done
        while (results.size() == before) BadRequestTest.sleep(10); // the generation leaves the engine
        GenerationResult r = results.get(before);
        assertEquals(StopReason.CANCELLED, r.stopReason());
        assertTrue(r.tokens().length < 400, r.tokens().length + " tokens");
        // The server goes on serving, probe and all.
        assertEquals(200, demo.post("/v1/completions", "{\"prompt\": \"int x\", \"max_tokens\": 4, \"temperature\": 0}").statusCode());
    }

    @Test
    @Timeout(value = 60, unit = TimeUnit.SECONDS)
    void aClientThatStaysGetsTheSameAnswerAfterTheProbesSpaces() throws Exception {
        String prompt = SLOW_PROMPT + "class Point {";
        HttpResponse<String> r = demo.post("/v1/completions", "{\"prompt\": \"" + prompt + "\", \"max_tokens\": 40, \"temperature\": 0}");
        assertEquals(200, r.statusCode());
        assertTrue(r.body().startsWith(" "), "40 slow tokens outlast the 40 ms probe: spaces come first");
        JsonObject answer = DemoServer.json(r);
        GenerationResult alone = demo.engine.generate(GenerationRequest.builder(prompt).maxTokens(40).build(), t -> {}, () -> false);
        assertEquals(alone.text(), DemoServer.text(answer));
        assertEquals(alone.tokens().length, answer.getAsJsonObject("usage").get("completion_tokens").getAsInt());
    }
}
