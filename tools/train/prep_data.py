"""Step 1: extract a Java corpus from the JDK's src.zip and split it BY FILE.

Split rule (deterministic): sha1(path inside src.zip); files whose first hash
byte is < HELDOUT_THRESHOLD (i.e. ~3%) go to held-out, the rest to train.
The per-file GPL licence header comment (identical in almost every file) is
stripped so training tokens are spent on code, not boilerplate.
Outputs (in work/corpus/): train.jsonl, heldout.jsonl (one {"path","text"} per
line, sorted by path) and stats.json.
"""
import hashlib
import json
import os
import re
import sys
import zipfile

from common import CORPUS_DIR, SRC_ZIP, ensure

MODULES = ["java.base", "java.sql", "java.net.http", "java.logging", "java.compiler"]
MAX_FILE_BYTES = 200_000          # skip giant (mostly generated/table) files
HELDOUT_THRESHOLD = 8             # of 256 -> ~3.1% of files held out

LICENCE_RE = re.compile(r"\A\s*/\*.*?\*/\s*", re.S)


def strip_licence(text):
    m = LICENCE_RE.match(text)
    if m and ("Copyright" in m.group(0) or "COPYRIGHT" in m.group(0)) and (
            "GNU General Public License" in m.group(0) or "license" in m.group(0).lower()):
        return text[m.end():]
    return text


def is_heldout(path):
    return hashlib.sha1(path.encode("utf-8")).digest()[0] < HELDOUT_THRESHOLD


def main():
    ensure(CORPUS_DIR)
    z = zipfile.ZipFile(SRC_ZIP)
    entries = sorted(i.filename for i in z.infolist()
                     if i.filename.endswith(".java") and i.filename.split("/")[0] in MODULES
                     and i.file_size <= MAX_FILE_BYTES)
    stats = {"src_zip": SRC_ZIP, "modules": MODULES, "max_file_bytes": MAX_FILE_BYTES,
             "heldout_rule": "sha1(path)[0] < %d" % HELDOUT_THRESHOLD,
             "train": {"files": 0, "chars": 0}, "heldout": {"files": 0, "chars": 0}}
    outs = {k: open(os.path.join(CORPUS_DIR, k + ".jsonl"), "w", encoding="utf-8")
            for k in ("train", "heldout")}
    for name in entries:
        text = z.read(name).decode("utf-8", errors="replace").replace("\r\n", "\n")
        text = strip_licence(text)
        if "\ufffd" in text or not text.strip():
            continue
        split = "heldout" if is_heldout(name) else "train"
        outs[split].write(json.dumps({"path": name, "text": text}, ensure_ascii=False) + "\n")
        stats[split]["files"] += 1
        stats[split]["chars"] += len(text)
    for f in outs.values():
        f.close()
    with open(os.path.join(CORPUS_DIR, "stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
    print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    sys.exit(main())
