package dev.specula.cli;

import static org.junit.jupiter.api.Assertions.*;

import java.io.File;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The packaged JAR carries libspecula.so and loads it from a clean folder, not from the build tree. */
class JarLoadIT {
    @TempDir
    Path temp;

    @Test
    void jarExtractsAndLoadsItsNativeLibrary() throws Exception {
        Path jar = Path.of(System.getProperty("specula.jar"));
        Path lib = Path.of(System.getProperty("specula.lib"));
        assertTrue(Files.isRegularFile(jar), jar + " is missing");
        try (var zip = new java.util.zip.ZipFile(jar.toFile())) {
            assertNotNull(zip.getEntry("dev/specula/nativeapi/linux-x86_64/libspecula.so"), "the JAR lacks libspecula.so");
        }
        Path cache = temp.resolve("cache");
        String classpath;
        try (Stream<Path> jars = Files.list(lib)) {
            classpath = Stream.concat(Stream.of(jar), jars.sorted()).map(Path::toString)
                    .reduce((a, b) -> a + File.pathSeparator + b).orElseThrow();
        }
        Path java = Path.of(System.getProperty("java.home"), "bin", "java");
        Process p = new ProcessBuilder(List.of(java.toString(), "--enable-native-access=ALL-UNNAMED",
                "-Dorg.bytedeco.javacpp.cachedir=" + cache, "-cp", classpath, "dev.specula.cli.SpeculaCli", "info"))
                .directory(temp.toFile()).redirectErrorStream(true).start();
        assertTrue(p.waitFor(120, TimeUnit.SECONDS), "specula info did not finish");
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertEquals(0, p.exitValue(), out);
        assertTrue(out.contains("library:  " + cache), "library not loaded from the clean cache folder:\n" + out);
        assertTrue(out.contains("abi:"), out);
        assertTrue(out.contains("cpu: device 0: "), out);
        assertTrue(out.lines().anyMatch(l -> l.startsWith("cuda: ")), out);
        try (Stream<Path> files = Files.walk(cache)) {
            assertTrue(files.anyMatch(f -> f.getFileName().toString().equals("libspecula.so")));
        }
    }
}
