#!/usr/bin/env python3
"""The rendering oracle: Python Jinja2 configured as Hugging Face's apply_chat_template configures it
(transformers' chat_template_utils: ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks, the
loopcontrols extension and the {% generation %} tag; tojson as json.dumps with ensure_ascii=False;
raise_exception and strftime_now globals). strftime_now reads a fixed clock so renders are reproducible.

stdin: a JSON list of cases {template, messages, tools, add_generation_prompt, bos_token, eos_token}.
stdout: a JSON list of {"text": ...} or {"error": message}."""
import json
import sys
from datetime import datetime

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment

NOW = datetime(2026, 1, 2, 3, 4, 5)


class AssistantTracker(Extension):
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(fmt):
    return NOW.strftime(fmt)


def render(case):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[AssistantTracker, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    template = env.from_string(case["template"])
    return template.render(messages=case["messages"], tools=case.get("tools"), documents=None,
                           add_generation_prompt=case.get("add_generation_prompt", False),
                           bos_token=case.get("bos_token", ""), eos_token=case.get("eos_token", ""))


def main():
    out = []
    for case in json.load(sys.stdin):
        try:
            out.append({"text": render(case)})
        except Exception as e:  # the oracle reports every failure as data
            out.append({"error": str(e), "type": type(e).__name__})
    json.dump(out, sys.stdout, ensure_ascii=True)


if __name__ == "__main__":
    main()
