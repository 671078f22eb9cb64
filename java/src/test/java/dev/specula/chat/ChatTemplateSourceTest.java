package dev.specula.chat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Where a Hugging Face folder's template comes from. */
class ChatTemplateSourceTest {
    @TempDir
    Path dir;

    @Test
    void tokenizerConfigStringNamedListAndJinjaFile() throws Exception {
        assertEquals(Optional.empty(), ChatTemplate.sourceOfHuggingFaceFolder(dir, false));
        Files.writeString(dir.resolve("tokenizer_config.json"), "{\"bos_token\": \"<s>\"}");
        assertEquals(Optional.empty(), ChatTemplate.sourceOfHuggingFaceFolder(dir, false));
        Files.writeString(dir.resolve("tokenizer_config.json"), "{\"chat_template\": \"{{ messages[0].content }}\"}");
        assertEquals(Optional.of("{{ messages[0].content }}"), ChatTemplate.sourceOfHuggingFaceFolder(dir, false));
        Files.writeString(dir.resolve("tokenizer_config.json"),
                "{\"chat_template\": [{\"name\": \"default\", \"template\": \"D\"}, {\"name\": \"tool_use\", \"template\": \"T\"}]}");
        assertEquals(Optional.of("D"), ChatTemplate.sourceOfHuggingFaceFolder(dir, false));
        assertEquals(Optional.of("T"), ChatTemplate.sourceOfHuggingFaceFolder(dir, true));
        Files.writeString(dir.resolve("chat_template.jinja"), "J");
        assertEquals(Optional.of("J"), ChatTemplate.sourceOfHuggingFaceFolder(dir, false));
        Files.delete(dir.resolve("chat_template.jinja"));
        Files.writeString(dir.resolve("tokenizer_config.json"), "{\"chat_template\": ");
        assertTrue(assertThrows(ChatTemplateException.class, () -> ChatTemplate.sourceOfHuggingFaceFolder(dir, false))
                .getMessage().contains("malformed JSON"));
        Files.writeString(dir.resolve("tokenizer_config.json"), "{\"chat_template\": [{\"name\": \"other\", \"template\": \"O\"}]}");
        assertTrue(assertThrows(ChatTemplateException.class, () -> ChatTemplate.sourceOfHuggingFaceFolder(dir, false))
                .getMessage().contains("no 'default' among the named chat templates [other]"));
    }
}
