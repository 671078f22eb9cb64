package dev.specula.cli;

import dev.specula.Drafter;
import dev.specula.memory.MemoryBudget;
import dev.specula.memory.MemoryPolicy;
import dev.specula.nativeapi.TreeVerifier;
import java.util.List;
import java.util.Map;
import java.util.function.Predicate;
import picocli.CommandLine;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.OptionSpec;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.ParseResult;

/**
 * The allowed values of the options the commands share, checked after parsing and before a command runs, so a bad
 * value is a usage error (exit 2) naming the option, not a failure halfway through loading a model.
 *
 * <p>The rules are keyed by option name rather than attached to each field: the same option (--max-tokens,
 * --drafter, ...) appears on several commands and mixins, and one table keeps its meaning in one place whichever
 * class declares it. Only values the user typed are checked; defaults are right by construction.
 */
final class OptionRules {
    private OptionRules() {}

    /** The verification modes of {@code run --verify}. */
    static final List<String> VERIFY_MODES = List.of("greedy", "sample", "typical", "lantern");
    /** The drafters' command-line names. */
    static final List<String> DRAFTERS = java.util.Arrays.stream(Drafter.values()).map(Drafter::cliName).toList();
    /** The backends an option may name; whether this build and machine have one is checked when it is opened. */
    static final List<String> BACKENDS = List.of("cpu", "cuda");

    private record Rule(Predicate<Object> ok, String expected) {}

    private static Rule atLeast(long min) {
        return new Rule(v -> ((Number) v).longValue() >= min, min + " or more");
    }

    private static Rule between(long min, long max) {
        return new Rule(v -> ((Number) v).longValue() >= min && ((Number) v).longValue() <= max, "from " + min + " to " + max);
    }

    private static Rule oneOf(List<String> names) {
        return new Rule(v -> known(v, names), "one of " + String.join(", ", names));
    }

    /** An enum value was already checked by picocli's conversion; a string must be one of the names. */
    private static boolean known(Object value, List<String> names) {
        return value instanceof Enum<?> || names.contains(value.toString().trim());
    }

    private static Rule parses(java.util.function.Consumer<String> parser, String expected) {
        return new Rule(v -> {
            try {
                parser.accept(v.toString());
                return true;
            } catch (IllegalArgumentException e) {
                return false;
            }
        }, expected);
    }

    private static final Map<String, Rule> RULES = Map.ofEntries(
            Map.entry("--max-tokens", atLeast(0)),
            Map.entry("--context", atLeast(1)),
            Map.entry("--threads", between(0, 1024)), // the core's limit (spec_context_set_threads)
            Map.entry("--device", atLeast(0)),
            Map.entry("--batch", atLeast(1)),
            Map.entry("--max-batch", atLeast(1)),
            Map.entry("--port", between(0, 65535)),
            Map.entry("--limit", atLeast(0)),
            Map.entry("--rounds", atLeast(1)),
            Map.entry("--tree-nodes", between(1, TreeVerifier.MAX_TREE_NODES)),
            Map.entry("--top-k", atLeast(0)),
            Map.entry("--temperature", new Rule(v -> ((Float) v) >= 0 && Float.isFinite((Float) v), "0 or more")),
            Map.entry("--top-p", new Rule(v -> ((Float) v) > 0 && ((Float) v) <= 1, "more than 0 and at most 1")),
            Map.entry("--min-p", new Rule(v -> ((Float) v) >= 0 && ((Float) v) < 1, "at least 0 and less than 1")),
            Map.entry("--repeat-penalty", new Rule(v -> ((Float) v) > 0 && Float.isFinite((Float) v), "more than 0")),
            Map.entry("--verify", oneOf(VERIFY_MODES)),
            Map.entry("--backend", oneOf(BACKENDS)),
            Map.entry("--drafter", oneOf(DRAFTERS)),
            Map.entry("--drafters", new Rule(v -> v instanceof List<?> l && l.stream().allMatch(d -> known(d, DRAFTERS)),
                    "a comma-separated list of " + String.join(", ", DRAFTERS))),
            Map.entry("--memory-policy", parses(MemoryPolicy::parse, "refuse, shrink-tree or shrink-batch")),
            Map.entry("--memory-limit", parses(MemoryBudget::parseSize, "a size such as 512M or 2G")));

    /**
     * Checks the options the user gave to the command that will run; throws a ParameterException naming the first
     * bad one and what it takes.
     */
    static void check(ParseResult parsed) {
        ParseResult last = parsed;
        while (last.subcommand() != null) last = last.subcommand();
        for (OptionSpec option : last.matchedOptions()) {
            Rule rule = RULES.get(option.longestName());
            Object value = option.getValue();
            if (rule == null || value == null) continue;
            if (!rule.ok().test(value)) {
                String given = String.join(",", option.originalStringValues());
                throw new ParameterException(last.commandSpec().commandLine(),
                        "Invalid value for option '" + option.longestName() + "': '" + given + "' (expected " + rule.expected() + ")");
            }
        }
        checkVerifyAgainstTemperature(last);
    }

    /** --verify greedy, typical and lantern pick tokens greedily; sample draws them and needs a temperature. */
    private static void checkVerifyAgainstTemperature(ParseResult last) {
        OptionSpec verify = last.commandSpec().findOption("--verify");
        OptionSpec temperature = last.commandSpec().findOption("--temperature");
        if (verify == null || temperature == null) return;
        String mode = String.valueOf(verify.<Object>getValue()).toLowerCase(java.util.Locale.ROOT);
        float t = ((Number) temperature.getValue()).floatValue();
        CommandLine line = last.commandSpec().commandLine();
        if (mode.equals("sample") && t <= 0)
            throw new ParameterException(line, "--verify sample draws tokens; it needs --temperature above 0");
        if (!mode.equals("sample") && t != 0)
            throw new ParameterException(line, "--verify " + mode + " picks tokens greedily; it takes --temperature 0"
                    + (mode.equals("greedy") ? " (use --verify sample to sample)" : ""));
    }
}
