package dev.specula.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/** {@code specula serve}: its options are checked like every command's, and it serves until stopped. */
class ServeCommandTest {
    static String demoTarget() {
        return Path.of(System.getProperty("specula.repo", ".."), "models", "demo-target.gguf").toString();
    }

    @Test
    void badOptionsAreUsageErrors() {
        StringWriter err = new StringWriter();
        var cli = SpeculaCli.commandLine();
        cli.setErr(new PrintWriter(err));
        assertEquals(CliErrors.USAGE, cli.execute("serve", "--port", "70000"));
        assertTrue(err.toString().contains("'--port': '70000' (expected from 0 to 65535)"), err.toString());
        err.getBuffer().setLength(0);
        assertEquals(CliErrors.USAGE, cli.execute("serve", "--max-batch", "0"));
        assertTrue(err.toString().contains("'--max-batch'"), err.toString());
    }

    @Test
    void servesUntilStopped() throws Exception {
        StringWriter out = new StringWriter(); // StringBuffer inside: read here while the command writes
        var cli = SpeculaCli.commandLine();
        cli.setOut(new PrintWriter(out));
        int[] code = {-1};
        Thread serving = Thread.ofPlatform().start(() -> code[0] = cli.execute("serve", "--model", demoTarget(), "--port", "0",
                "--context", "256", "--max-batch", "2", "--api-key", "k", "--served-model-name", "demo"));
        Pattern address = Pattern.compile("on (http://\\S+)/v1 ");
        Matcher m = address.matcher("");
        for (int i = 0; i < 1200 && serving.isAlive() && !(m = address.matcher(out.toString())).find(); i++) Thread.sleep(50);
        assertTrue(m.find(0), "no address in: " + out);
        URI base = URI.create(m.group(1));
        try (HttpClient http = HttpClient.newHttpClient()) {
            HttpResponse<String> models = http.send(HttpRequest.newBuilder(base.resolve("/v1/models")).header("Authorization", "Bearer k").build(),
                    HttpResponse.BodyHandlers.ofString());
            assertEquals(200, models.statusCode());
            assertTrue(models.body().contains("\"id\":\"demo\""), models.body());
            assertTrue(models.body().contains("\"max_model_len\":256"), models.body());
        }
        serving.interrupt();
        serving.join();
        assertEquals(0, code[0]);
    }
}
