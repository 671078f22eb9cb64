package dev.specula.nativeapi;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;
import org.junit.jupiter.api.Test;

/** The generated bindings must come from the header as it is now: jextract/generate.sh records its digest. */
class BindingsUpToDateTest {
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
