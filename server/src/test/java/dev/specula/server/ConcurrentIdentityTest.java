package dev.specula.server;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.net.http.HttpResponse;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.Test;

/**
 * 24 greedy requests with different prompts sent at once, half of them streamed, each answer exactly the text the
 * same request gets when it is alone in the server.
 */
class ConcurrentIdentityTest {
    static final int REQUESTS = 24;
    static final int TOKENS = 32;

    static List<String> prompts() {
        String[] heads = {"public static int max(int a, int b) {\n", "/** Returns the sum of the array. */\n", "import java.util.List;\n",
                "for (int i = 0; i < n; i++) {\n", "public String toString() {\n", "if (x == null) {\n", "try {\n", "private final Map<String, Integer> "};
        List<String> out = new ArrayList<>();
        for (int i = 0; i < REQUESTS; i++) out.add(heads[i % heads.length] + "// case " + i + "\n");
        return out;
    }

    static String body(String prompt, boolean stream) {
        JsonObject o = new JsonObject();
        o.addProperty("prompt", prompt);
        o.addProperty("max_tokens", TOKENS);
        o.addProperty("temperature", 0);
        o.addProperty("stream", stream);
        return o.toString();
    }

    /** The text of a completion, streamed (SSE, to [DONE]) or not. */
    static String complete(DemoServer demo, String prompt, boolean stream) throws Exception {
        HttpResponse<String> r = demo.post("/v1/completions", body(prompt, stream));
        assertEquals(200, r.statusCode(), r.body());
        if (!stream) return DemoServer.text(DemoServer.json(r));
        StringBuilder text = new StringBuilder();
        boolean done = false;
        for (String line : r.body().split("\n")) {
            if (!line.startsWith("data: ")) continue;
            String data = line.substring(6);
            if (data.equals("[DONE]")) {
                done = true;
                continue;
            }
            JsonObject chunk = JsonParser.parseString(data).getAsJsonObject();
            for (var c : chunk.getAsJsonArray("choices")) text.append(c.getAsJsonObject().get("text").getAsString());
        }
        assertEquals(true, done, "the stream ends with data: [DONE]");
        return text.toString();
    }

    @Test
    void concurrentGreedyAnswersEqualLoneAnswers() throws Exception {
        try (DemoServer demo = new DemoServer(null, 8, b -> b)) {
            List<String> prompts = prompts();
            List<String> alone = new ArrayList<>();
            for (String p : prompts) alone.add(complete(demo, p, false));

            CountDownLatch go = new CountDownLatch(1);
            List<Future<String>> together = new ArrayList<>();
            try (ExecutorService clients = Executors.newVirtualThreadPerTaskExecutor()) {
                for (int i = 0; i < REQUESTS; i++) {
                    String p = prompts.get(i);
                    boolean stream = i % 2 == 1;
                    together.add(clients.submit(() -> {
                        go.await();
                        return complete(demo, p, stream);
                    }));
                }
                go.countDown();
                for (int i = 0; i < REQUESTS; i++) assertEquals(alone.get(i), together.get(i).get(), "request " + i + ": " + prompts.get(i));
            }
        }
    }
}
