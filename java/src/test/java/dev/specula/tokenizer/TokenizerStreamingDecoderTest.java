package dev.specula.tokenizer;

import static dev.specula.tokenizer.TestVocabs.texts;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;

import org.junit.jupiter.api.Test;

class TokenizerStreamingDecoderTest {

    private static final Tokenizer SPM = Tokenizer.fromGgufMetadata(TestVocabs.sentencePiece(
            List.of("▁", "a", "b", "▁a"), new float[] {-5, -5, -5, -1}, true, true));

    @Test
    void holdsBackAFourByteEmojiUntilItsLastByteToken() {
        int[] ids = SPM.encode("a😀b", false);
        assertEquals(List.of("▁a", "<0xF0>", "<0x9F>", "<0x98>", "<0x80>", "b"), texts(SPM, ids));
        StreamingDecoder decoder = new StreamingDecoder(SPM, true);
        assertEquals("a", decoder.accept(ids[0]));
        assertEquals("", decoder.accept(ids[1]));
        assertTrue(decoder.hasPending());
        assertEquals("", decoder.accept(ids[2]));
        assertEquals("", decoder.accept(ids[3]));
        assertEquals("😀", decoder.accept(ids[4]));
        assertFalse(decoder.hasPending());
        assertEquals("b", decoder.accept(ids[5]));
        assertEquals("", decoder.flush());
    }

    @Test
    void keepsSpacesInAContinuation() {
        int[] ids = SPM.encode("a a", false);
        assertEquals(" a a", new StreamingDecoder(SPM).accept(ids));
        assertEquals("a a", new StreamingDecoder(SPM, true).accept(ids));
    }

    @Test
    void flushTurnsAnUnfinishedCharacterIntoAReplacementCharacter() {
        int[] ids = SPM.encode("😀", false);
        StreamingDecoder decoder = new StreamingDecoder(SPM);
        assertEquals(" ", decoder.accept(ids[0]));   // "▁"
        assertEquals("", decoder.accept(ids[1]));    // F0
        assertEquals("", decoder.accept(ids[2]));    // 9F
        assertEquals("\uFFFD", decoder.flush());
        assertEquals("", decoder.flush());
    }

    @Test
    void invalidBytesBecomeReplacementCharactersWithoutWaiting() {
        StreamingDecoder decoder = new StreamingDecoder(SPM);
        int f0 = 3 + 0xF0;
        int letterA = 3 + 'A';
        assertEquals("", decoder.accept(f0));
        assertEquals("\uFFFDA", decoder.accept(letterA)); // F0 then 'A': F0 can never be finished
        int continuation = 3 + 0x80;
        assertEquals("\uFFFD", decoder.accept(continuation)); // a stray continuation byte
    }

    @Test
    void controlTokensProduceNothing() {
        StreamingDecoder decoder = new StreamingDecoder(SPM, true);
        assertEquals("", decoder.accept(SPM.bos()));
        assertEquals("a", decoder.accept(SPM.encode("a", false)));
        assertEquals("", decoder.accept(SPM.eos()));
    }

    @Test
    void streamedTextEqualsDecodedText() {
        for (String style : List.of("llama", "gpt2")) {
            Tokenizer t = Tokenizer.fromGgufMetadata(VocabTrainer.ggufMetadata(style, 512, 3));
            for (String text : TokenizerSamples.all()) {
                int[] ids = t.encode(text, true);
                StreamingDecoder decoder = new StreamingDecoder(t, true);
                StringBuilder streamed = new StringBuilder();
                for (int id : ids) {
                    String piece = decoder.accept(id);
                    assertFalse(piece.contains("\uFFFD") && !text.contains("\uFFFD"),
                            style + ": replacement character while streaming " + text);
                    streamed.append(piece);
                }
                streamed.append(decoder.flush());
                assertEquals(t.decode(ids), streamed.toString(), style + ": " + text);
            }
        }
    }

    @Test
    void byteLevelTokensSplittingACharacterAreHeldBack() {
        Tokenizer t = Tokenizer.fromGgufMetadata(TestVocabs.bytePair("gpt-2", List.of(), List.of(), List.of()));
        int[] ids = t.encode("日", false);
        assertEquals(3, ids.length);
        StreamingDecoder decoder = new StreamingDecoder(t);
        assertEquals("", decoder.accept(ids[0]));
        assertEquals("", decoder.accept(ids[1]));
        assertEquals("日", decoder.accept(ids[2]));
    }

    @Test
    void completeLengthFindsUnfinishedCharacters() {
        byte[] euro = "€".getBytes(java.nio.charset.StandardCharsets.UTF_8); // E2 82 AC
        assertEquals(0, StreamingDecoder.completeLength(euro, 1));
        assertEquals(0, StreamingDecoder.completeLength(euro, 2));
        assertEquals(3, StreamingDecoder.completeLength(euro, 3));
        byte[] mixed = {'a', (byte) 0xE2, (byte) 0x82};
        assertEquals(1, StreamingDecoder.completeLength(mixed, 3));
        byte[] tooMany = {(byte) 0x82, (byte) 0x82, (byte) 0x82, (byte) 0x82};
        assertEquals(4, StreamingDecoder.completeLength(tooMany, 4));
    }
}
