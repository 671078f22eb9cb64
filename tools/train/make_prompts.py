"""Step 7b: benchmark prompts in Spec-Bench format, built from HELD-OUT files.

  /usr/bin/python3 make_prompts.py --out ../../models/demo-prompts.jsonl

One JSON object per line: {"question_id", "category", "turns": [prompt], "source"}.
Categories (10 each, deterministic choice by sha1 of path+offset, at most one
prompt per file per category):
  method_completion    Javadoc + annotations + signature, ending "{\\n"
  javadoc_continuation preceding file context + the first lines of a Javadoc
  refactoring          a method, a comment announcing a parameter rename, and the
                       renamed signature: the model should repeat the edited body
  file_header          file start (package, imports, class doc) up to the first
                       top-level type declaration line
Every prompt ends with "\\n" (a natural token boundary: newline is always its
own byte token <0x0A>), never with a trailing space, is <= MAX_TOKENS tokens,
and its tokenization is a prefix of the tokenization of prompt + original text.
"""
import argparse
import hashlib
import json
import os
import re

import sentencepiece as spm

from common import CORPUS_DIR, TOK_PREFIX

PER_CATEGORY = 10
MAX_TOKENS = 384

JAVADOC_METHOD = re.compile(
    r"^(?P<ind>[ \t]+)/\*\*\n(?P<doc>(?:(?P=ind) \*.*\n)*?)(?P=ind) \*/\n"
    r"(?P<ann>(?:(?P=ind)@.*\n)*)"
    r"(?P<sig>(?P=ind)(?!return|throw|new )[\w<].*\((?:[^;{}])*?\)[^;{}]*\{\n)", re.M)
TYPE_DECL = re.compile(r"^(?:public |protected |abstract |final |sealed |non-sealed |static |strictfp )*"
                       r"(?:class|interface|enum|record|@interface) \w+[^\n]*\{\n", re.M)
KEYWORDS = set("abstract assert boolean break byte case catch char class const continue default do double else "
               "enum extends final finally float for goto if implements import instanceof int interface long "
               "native new package private protected public return short static strictfp super switch "
               "synchronized this throw throws transient try void volatile while var record".split())


def h(*parts):
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()


def method_end(text, m):
    """Offset just past the closing line '<ind>}\\n' of the method whose signature ends at m.end()."""
    end = re.compile(r"^" + re.escape(m.group("ind")) + r"\}\n", re.M).search(text, m.end())
    return end.end() if end else None


def line_context(text, pos, max_chars):
    """Whole lines of text before pos, at most max_chars."""
    start = max(0, pos - max_chars)
    nl = text.find("\n", start) if start > 0 else -1
    return text[nl + 1 if start > 0 else 0:pos]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    sp = spm.SentencePieceProcessor(model_file=TOK_PREFIX + ".model")
    docs = [json.loads(l) for l in open(os.path.join(CORPUS_DIR, "heldout.jsonl"), encoding="utf-8")]
    ntok = lambda s: len(sp.encode(s))
    cands = {k: [] for k in ("method_completion", "javadoc_continuation", "refactoring", "file_header")}

    for d in docs:
        text, path = d["text"], d["path"]
        for m in JAVADOC_METHOD.finditer(text):
            sig = m.group("sig")
            if re.search(r"\b(class|interface|enum|record)\b", sig) or "=" in sig.split("(")[0]:
                continue
            end = method_end(text, m)
            if end is None:
                continue
            body = text[m.end():end]
            nbody = body.count("\n")
            doc_start = m.start()
            doc_lines = m.group("doc").splitlines(keepends=True)
            # 1) method body completion from Javadoc + signature
            if 3 <= nbody <= 40:
                p = text[doc_start:m.end()]
                cands["method_completion"].append((h(path, doc_start, 1), path, p, body))
            # 2) Javadoc continuation: up to 800 chars of context + first lines of the doc
            text_lines = [l for l in doc_lines if re.search(r"\w", l)]
            if len(text_lines) >= 4:
                k = max(1, len(doc_lines) // 3)
                while k < len(doc_lines) and not re.search(r"\w", doc_lines[k - 1]):
                    k += 1
                cut = doc_start + len(m.group("ind")) + 4 + sum(len(l) for l in doc_lines[:k])
                p = line_context(text, doc_start, 800) + text[doc_start:cut]
                cands["javadoc_continuation"].append((h(path, doc_start, 2), path, p, text[cut:m.end()]))
            # 3) refactoring: repeat the method with a parameter renamed
            if 4 <= nbody <= 30:
                params = re.findall(r"(\w+)\s*[,)]", sig[sig.index("("):])
                for name in params:
                    if len(name) < 2 or name in KEYWORDS or not name[0].islower():
                        continue
                    if len(re.findall(r"\b%s\b" % re.escape(name), body)) < 2:
                        continue
                    new = "the" + name[0].upper() + name[1:]
                    if re.search(r"\b%s\b" % new, text):
                        continue
                    method = text[m.start("ann") if m.group("ann") else m.start("sig"):end]
                    renamed = re.sub(r"\b%s\b" % re.escape(name), new, method)
                    sig_r = re.sub(r"\b%s\b" % re.escape(name), new, m.group("ann") + sig)
                    p = (method + "\n" + m.group("ind") + "// Same method after renaming '%s' to '%s':\n"
                         % (name, new) + sig_r)
                    cands["refactoring"].append((h(path, doc_start, 3), path, p, renamed[len(sig_r):]))
                    break
        # 4) file header up to the first top-level type declaration
        t = TYPE_DECL.search(text)
        if t:
            p = text[:t.end()]
            if ntok(p) > MAX_TOKENS:     # long class doc: keep whole lines up to ~MAX_TOKENS
                lines, p = text[:t.end()].splitlines(keepends=True), ""
                for l in lines:
                    if ntok(p + l) > MAX_TOKENS - 16:
                        break
                    p += l
            if ntok(p) >= 24:
                cands["file_header"].append((h(path, 0, 4), path, p, text[len(p):len(p) + 2000]))

    out, qid = [], 1
    for cat, lst in cands.items():
        lst.sort()
        used, chosen = set(), []
        for key, path, p, cont in lst:
            if path in used or not p.endswith("\n"):
                continue
            ids = sp.encode(p)
            if len(ids) > MAX_TOKENS or len(ids) < 16:
                continue
            assert sp.encode(p + cont)[:len(ids)] == ids, (cat, path)   # natural token boundary
            used.add(path)
            chosen.append({"question_id": qid, "category": cat, "turns": [p], "source": path,
                           "prompt_tokens": len(ids)})
            qid += 1
            if len(chosen) == PER_CATEGORY:
                break
        print(cat, "candidates", len(lst), "chosen", len(chosen),
              "tokens", [c["prompt_tokens"] for c in chosen])
        out += chosen
    with open(args.out, "w", encoding="utf-8") as f:
        for o in out:
            f.write(json.dumps(o, ensure_ascii=False) + "\n")
    print("wrote", args.out, len(out), "prompts")


if __name__ == "__main__":
    main()
