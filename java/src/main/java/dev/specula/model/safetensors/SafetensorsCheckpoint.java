package dev.specula.model.safetensors;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import dev.specula.model.ModelFormatException;
import java.io.IOException;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.InvalidPathException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

/**
 * A Hugging Face checkpoint folder: config.json plus either model.safetensors or the shards that
 * model.safetensors.index.json lists. Tensors are looked up by name across all shards.
 */
public final class SafetensorsCheckpoint implements AutoCloseable {
    public static final String CONFIG = "config.json";
    public static final String SINGLE = "model.safetensors";
    public static final String INDEX = "model.safetensors.index.json";

    private final Path directory;
    private final JsonObject config;
    private final List<SafetensorsFile> files = new ArrayList<>();
    private final Map<String, SafetensorsTensor> tensors = new LinkedHashMap<>();

    /**
     * Opens a checkpoint folder, or a single .safetensors file or index whose folder holds config.json. Throws
     * ModelFormatException naming the file at fault.
     */
    public static SafetensorsCheckpoint open(Path path) {
        Path dir = Files.isDirectory(path) ? path : path.toAbsolutePath().getParent();
        SafetensorsCheckpoint c = new SafetensorsCheckpoint(dir, readJson(dir.resolve(CONFIG)));
        try {
            if (!Files.isDirectory(path) && !path.getFileName().toString().endsWith(".index.json")) {
                c.add(SafetensorsFile.open(path));
            } else {
                Path index = Files.isDirectory(path) ? dir.resolve(INDEX) : path;
                if (Files.isDirectory(path) && Files.exists(dir.resolve(SINGLE))) {
                    c.add(SafetensorsFile.open(dir.resolve(SINGLE)));
                } else if (Files.exists(index)) {
                    c.openShards(index);
                } else {
                    throw new ModelFormatException(dir, "holds neither " + SINGLE + " nor " + INDEX);
                }
            }
            return c;
        } catch (RuntimeException | Error e) {
            c.close();
            throw e;
        }
    }

    private SafetensorsCheckpoint(Path directory, JsonObject config) {
        this.directory = directory;
        this.config = config;
    }

    /** Reads a JSON object from a file; any problem is a ModelFormatException naming it. */
    public static JsonObject readJson(Path file) {
        String text;
        try {
            text = Files.readString(file, StandardCharsets.UTF_8);
        } catch (CharacterCodingException e) {
            throw new ModelFormatException(file, "is not UTF-8 text (" + e.getMessage() + ")", e);
        } catch (IOException e) {
            throw new ModelFormatException(file, "cannot read the file (" + e + ")", e);
        }
        try {
            JsonElement e = JsonParser.parseString(text);
            if (!e.isJsonObject()) throw new ModelFormatException(file, "bad JSON: the top level is not an object");
            return e.getAsJsonObject();
        } catch (JsonParseException | IllegalStateException e) {
            throw new ModelFormatException(file, "bad JSON: " + e.getMessage(), e);
        }
    }

    private void openShards(Path index) {
        JsonObject json = readJson(index);
        JsonElement map = json.get("weight_map");
        if (map == null || !map.isJsonObject()) throw new ModelFormatException(index, "has no weight_map object");
        Map<String, SafetensorsFile> shards = new LinkedHashMap<>();
        for (Map.Entry<String, JsonElement> e : map.getAsJsonObject().entrySet()) {
            String tensor = e.getKey();
            if (!e.getValue().isJsonPrimitive()) {
                throw new ModelFormatException(index, "weight_map entry '" + tensor + "' is not a file name");
            }
            String shard = e.getValue().getAsString();
            if (shard.isEmpty() || shard.contains("/") || shard.contains("\\") || shard.equals("..") || shard.equals(".")) {
                throw new ModelFormatException(index, "weight_map names shard '" + shard + "', not a file in the checkpoint folder");
            }
            SafetensorsFile file = shards.get(shard);
            if (file == null) {
                Path shardPath;
                try {
                    shardPath = directory.resolve(shard);
                } catch (InvalidPathException invalid) {
                    throw new ModelFormatException(index, "weight_map names shard '" + shard + "', which is not a file name ("
                            + invalid.getReason() + ")");
                }
                if (!Files.isRegularFile(shardPath)) {
                    throw new ModelFormatException(index, "lists shard '" + shard + "', which does not exist");
                }
                file = SafetensorsFile.open(shardPath);
                shards.put(shard, file);
                add(file);
            }
            if (!file.hasTensor(tensor)) {
                throw new ModelFormatException(index, "maps tensor '" + tensor + "' to shard '" + shard
                        + "', which has no such tensor");
            }
        }
    }

    private void add(SafetensorsFile file) {
        files.add(file);
        for (SafetensorsTensor t : file.tensors()) {
            SafetensorsTensor before = tensors.putIfAbsent(t.name(), t);
            if (before != null) {
                throw new ModelFormatException(file.path(), "tensor '" + t.name() + "' is also in " + before.file());
            }
        }
    }

    public Path directory() {
        return directory;
    }

    public Path configPath() {
        return directory.resolve(CONFIG);
    }

    /** config.json as parsed. */
    public JsonObject config() {
        return config.deepCopy();
    }

    public List<SafetensorsFile> files() {
        return List.copyOf(files);
    }

    public Set<String> tensorNames() {
        return java.util.Collections.unmodifiableSet(tensors.keySet());
    }

    public Optional<SafetensorsTensor> findTensor(String name) {
        return Optional.ofNullable(tensors.get(name));
    }

    public SafetensorsTensor tensor(String name) {
        SafetensorsTensor t = tensors.get(name);
        if (t == null) {
            Path where = files.size() == 1 ? files.getFirst().path() : directory;
            throw new ModelFormatException(where, "missing tensor '" + name + "'");
        }
        return t;
    }

    public boolean hasTensor(String name) {
        return tensors.containsKey(name);
    }

    @Override
    public void close() {
        for (SafetensorsFile f : files) f.close();
    }

    @Override
    public String toString() {
        return "SafetensorsCheckpoint(" + directory + ", " + files.size() + " files, " + tensors.size() + " tensors)";
    }
}
