package dev.specula.server;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.specula.Drafter;
import dev.specula.SpeculaEngine;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
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

    /**
     * Sends a POST of body to /v1/completions on a raw socket (a client that can hang up at any point) and reads
     * the answer up to its first server-sent event; returns the reader, positioned after that event.
     */
    static BufferedReader streamCompletion(Socket socket, String body) throws IOException {
        OutputStream out = socket.getOutputStream();
        byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
        out.write(("POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: " + bytes.length
                + "\r\n\r\n").getBytes(StandardCharsets.US_ASCII));
        out.write(bytes);
        out.flush();
        BufferedReader in = new BufferedReader(new InputStreamReader(socket.getInputStream(), StandardCharsets.UTF_8));
        String status = in.readLine();
        if (status == null || !status.startsWith("HTTP/1.1 200")) throw new IOException("not a 200 answer: " + status);
        for (String line = in.readLine(); line != null && !line.contains("data: "); line = in.readLine()) { } // the first event
        return in;
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
