package dev.specula.nativeapi;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/**
 * The generated bindings must come from the header as it is now (jextract/generate.sh records its digest), and
 * only this package may use them: everything else speaks nativeapi's types, so the bindings stay unexported.
 */
class BindingsUpToDateTest {
    @Test
    void onlyTheNativeApiPackageImportsTheBindings() throws IOException {
        Path sources = Path.of(System.getProperty("specula.repo", "..")).resolve("java/src/main/java/dev/specula");
        try (Stream<Path> files = Files.walk(sources)) {
            List<String> leaks = files.filter(f -> f.toString().endsWith(".java"))
                    .filter(f -> !f.startsWith(sources.resolve("ffi")) && !f.startsWith(sources.resolve("nativeapi")))
                    .filter(f -> read(f).contains("dev.specula.ffi"))
                    .map(f -> sources.relativize(f).toString())
                    .sorted()
                    .toList();
            assertEquals(List.of(), leaks, "main sources outside dev.specula.nativeapi that use dev.specula.ffi");
        }
    }

    private static String read(Path file) {
        try {
            return Files.readString(file);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    @Test
    void headerDigestMatchesTheOneRecordedAtGeneration() throws Exception {
        Path repo = Path.of(System.getProperty("specula.repo", ".."));
        byte[] header = Files.readAllBytes(repo.resolve("native/include/specula.h"));
        String actual = HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(header));
        String recorded = Files.readString(repo.resolve("jextract/specula.h.sha256")).trim();
        assertEquals(recorded, actual,
                "native/include/specula.h changed since the bindings were generated: run jextract/generate.sh");
    }
}
