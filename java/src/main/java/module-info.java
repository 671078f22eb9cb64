/**
 * Specula, the library: model files, tokenizers, the engine and its drafting policies, over the native core that the
 * JAR carries. The generated bindings ({@code dev.specula.ffi}) are not exported: the C ABI is reached only through
 * {@code dev.specula.nativeapi}, whose handles and arenas make misuse fail in Java with a clear message.
 *
 * <p>On the module path, allow the native calls with {@code --enable-native-access=dev.specula}.
 */
module dev.specula {
    requires transitive com.google.gson; // JsonObject appears in ModelConfig and SafetensorsCheckpoint signatures
    requires org.bytedeco.javacpp;
    requires ai.djl.api;
    requires ai.djl.tokenizers;

    exports dev.specula;
    exports dev.specula.chat;
    exports dev.specula.engine;
    exports dev.specula.memory;
    exports dev.specula.model;
    exports dev.specula.model.gguf;
    exports dev.specula.model.safetensors;
    exports dev.specula.nativeapi;
    exports dev.specula.oracle;
    exports dev.specula.policies;
    exports dev.specula.sampling;
    exports dev.specula.tokenizer;

    // Gson reads the oracle's JSON replies into its records.
    opens dev.specula.oracle to com.google.gson;
}
