package dev.specula.server;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.specula.GenerationResult;
import dev.specula.StopReason;
import java.io.BufferedReader;
import java.net.Socket;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Closing under a streaming request: the server's cancel path (an interrupted exchange cancels its generation) and
 * the engine's (close stops the running requests) end the generation CANCELLED, and neither close hangs. The
 * timeouts run on their own thread, so a hang fails the test instead of stalling the run.
 */
@Timeout(value = 60, unit = TimeUnit.SECONDS, threadMode = Timeout.ThreadMode.SEPARATE_THREAD)
class ServerCloseTest {
    static final String BODY = "{\"prompt\": \"public void run() {\\n\", \"max_tokens\": 400, \"stream\": true, \"temperature\": 0}";

    /**
     * Starts a demo server whose generations are kept in results. Each engine step waits 50 ms in the cancel check
     * (on the scheduler thread), so that 400 tokens take seconds and the generation is still running when the
     * server's close (which first gives exchanges a second) or the engine's reaches it.
     */
    static DemoServer start(List<GenerationResult> results) throws Exception {
        DemoServer[] demo = new DemoServer[1];
        demo[0] = new DemoServer(null, 2, b -> b.generator((request, listener, cancelled) -> {
            GenerationResult r = demo[0].engine.generate(request, listener, () -> {
                BadRequestTest.sleep(50);
                return cancelled.getAsBoolean();
            });
            results.add(r);
            return r;
        }));
        return demo[0];
    }

    @Test
    void closingTheServerThenTheEngineUnderAStreamEndsItsGenerationCancelled() throws Exception {
        List<GenerationResult> results = new CopyOnWriteArrayList<>();
        DemoServer demo = start(results);
        try (Socket socket = new Socket(demo.server.uri().getHost(), demo.server.port())) {
            DemoServer.streamCompletion(socket, BODY);
            demo.server.close(); // interrupts the exchange: it cancels its generation
            demo.engine.close(); // waits for the generation to leave
        } finally {
            demo.close();
        }
        while (results.isEmpty()) Thread.sleep(10); // the generation's thread records its end after the engine let it go
        assertEquals(StopReason.CANCELLED, results.get(0).stopReason());
    }

    @Test
    void closingTheEngineUnderAStreamEndsTheStream() throws Exception {
        List<GenerationResult> results = new CopyOnWriteArrayList<>();
        DemoServer demo = start(results);
        try (Socket socket = new Socket(demo.server.uri().getHost(), demo.server.port())) {
            BufferedReader in = DemoServer.streamCompletion(socket, BODY);
            demo.engine.close(); // stops the generation at its next step; the server ends the stream
            boolean done = false;
            for (String line = in.readLine(); line != null && !done; line = in.readLine()) done = line.equals("data: [DONE]");
            assertTrue(done, "the stream ended with [DONE]");
        } finally {
            demo.close();
        }
        assertEquals(StopReason.CANCELLED, results.get(0).stopReason());
    }
}
