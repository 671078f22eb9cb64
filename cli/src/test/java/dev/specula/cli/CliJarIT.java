package dev.specula.cli;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The packaged command line runs as `java -jar` from a clean folder, loading the native library out of the library JAR. */
class CliJarIT {
    @TempDir
    Path temp;

    @Test
    void cliJarRunsInfoFromACleanFolder() throws Exception {
        Path jar = Path.of(System.getProperty("specula.cli.jar"));
        assertTrue(Files.isRegularFile(jar), jar + " is missing");
        Path cache = temp.resolve("cache");
        Path java = Path.of(System.getProperty("java.home"), "bin", "java");
        Process p = new ProcessBuilder(List.of(java.toString(), "-Dorg.bytedeco.javacpp.cachedir=" + cache, "-jar", jar.toString(), "info"))
                .directory(temp.toFile()).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(120, TimeUnit.SECONDS), "specula info did not finish");
        assertEquals(0, p.exitValue(), out);
        assertTrue(out.contains("library:  " + cache), "library not loaded from the clean cache folder:\n" + out);
        assertTrue(out.contains("abi:"), out);
        assertTrue(out.contains("cpu: device 0: "), out);
        assertTrue(out.lines().anyMatch(l -> l.startsWith("cuda: ")), out);
        assertFalse(out.contains("WARNING: A restricted method"), "the jar's manifest should allow native access:\n" + out);
        try (Stream<Path> files = Files.walk(cache)) {
            assertTrue(files.anyMatch(f -> f.getFileName().toString().equals("libspecula.so")));
        }
    }
}
