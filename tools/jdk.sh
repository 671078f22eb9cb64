# Sourced by ./specula and ./run-tests: exports JAVA_HOME for a JDK that can build and run Specula.
# The bindings use the final FFM API and are compiled with --release 25, so the JDK must be 25+.
SPECULA_MIN_JAVA=25

specula_java_major() { # prints the feature version of the java at $1, or nothing
  "$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = \([0-9]*\).*/\1/p' | head -1
}

specula_find_jdk() {
  local candidates=() v
  [[ -n "${JAVA_HOME:-}" ]] && candidates+=("$JAVA_HOME")
  # Newest first, by the version in the folder name.
  while IFS= read -r d; do candidates+=("$d"); done < <(ls -d /usr/lib/jvm/*/ 2>/dev/null | sed 's:/$::' | sort -t- -k2 -V -r)
  for home in "${candidates[@]}"; do
    [[ -x "$home/bin/java" && -x "$home/bin/javac" ]] || continue
    v=$(specula_java_major "$home/bin/java")
    if [[ -n "$v" && "$v" -ge $SPECULA_MIN_JAVA ]]; then
      export JAVA_HOME="$home"
      return 0
    fi
  done
  echo "specula: no JDK $SPECULA_MIN_JAVA or later found (looked at JAVA_HOME and /usr/lib/jvm/*)." >&2
  echo "         Install one (e.g. Temurin 25) and set JAVA_HOME to it." >&2
  return 1
}
