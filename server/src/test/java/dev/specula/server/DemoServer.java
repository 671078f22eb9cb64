package dev.specula.server;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.specula.Drafter;
import dev.specula.SpeculaEngine;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;

/** The demo target behind a server on a free loopback port, and a raw HTTP client for it. */
final class DemoServer implements AutoCloseable {
    static final int CONTEXT = 512;

    final SpeculaEngine engine;
    final SpeculaServer server;
    final HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).connectTimeout(Duration.ofSeconds(10)).build();
    final String apiKey;

    DemoServer(String apiKey, int batch, java.util.function.UnaryOperator<SpeculaServer.Builder> options) throws IOException {
        this.apiKey = apiKey;
        engine = SpeculaEngine.builder().model(demoTarget()).drafter(Drafter.RECYCLING).contextLength(CONTEXT).batch(batch).threads(2).build();
        try {
            server = options.apply(SpeculaServer.builder(engine).port(0).apiKey(apiKey).chatFormat("chatml")).start();
        } catch (IOException | RuntimeException e) {
            engine.close();
            throw e;
        }
    }

    static Path demoTarget() {
        Path p = Path.of(System.getProperty("specula.repo", ".."), "models", "demo-target.gguf");
        if (!Files.isRegularFile(p)) throw new IllegalStateException("the demo target is missing: " + p.toAbsolutePath());
        return p;
    }

    URI uri(String path) {
        return server.uri().resolve(path);
    }

    HttpRequest.Builder request(String path) {
        HttpRequest.Builder b = HttpRequest.newBuilder(uri(path)).timeout(Duration.ofSeconds(120));
        if (apiKey != null) b.header("Authorization", "Bearer " + apiKey);
        return b;
    }

    HttpResponse<String> post(String path, String body) throws IOException, InterruptedException {
        return http.send(request(path).header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body)).build(),
                HttpResponse.BodyHandlers.ofString());
    }

    HttpResponse<String> get(String path) throws IOException, InterruptedException {
        return http.send(request(path).GET().build(), HttpResponse.BodyHandlers.ofString());
    }

    static JsonObject json(HttpResponse<String> r) {
        return JsonParser.parseString(r.body()).getAsJsonObject();
    }

    /** The text of a non-streamed completion or chat completion. */
    static String text(JsonObject answer) {
        JsonObject choice = answer.getAsJsonArray("choices").get(0).getAsJsonObject();
        return choice.has("message") ? choice.getAsJsonObject("message").get("content").getAsString() : choice.get("text").getAsString();
    }

    @Override
    public void close() {
        server.close();
        engine.close();
        http.close();
    }
}
