#!/usr/bin/env python3
# A loopback stand-in for the three model APIs the real agent CLIs call, so the conformance
# tests can run `claude`, `codex` and `gemini` unattended and offline:
#   Anthropic Messages   POST /v1/messages (JSON or SSE), /v1/messages/count_tokens
#   OpenAI Responses     POST /v1/responses (SSE or JSON), GET /v1/models
#   Gemini               POST /v1beta/models/<m>:generateContent, :streamGenerateContent?alt=sse,
#                        :countTokens
# It is also an HTTP(S) proxy sink: a CLI given HTTPS_PROXY pointing here that tries to reach
# any other host is answered 403 and logged as `escape`, so a test can prove nothing left the
# machine.
#
# The scenario is written in the prompt, one directive a line (an Orchfile test only writes a
# prompt):
#   MOCK: answer <text>             final answer <text>
#   MOCK: write <path> <content>    the CLI's own file-writing tool call, then a final answer
#   MOCK: bash <command>            the CLI's own shell tool call, then a final answer
#   MOCK: turns <N>                 N shell tool calls (`echo turn i`) before answering
#   MOCK: status <code> [times=N] [retry_after=S] [key=K]
#                                   answer HTTP <code> (the API's own error body; 429 with its
#                                   rate-limit headers); with times=N only the first N requests
#                                   of this scenario, later ones go on normally
#   MOCK: sleep <seconds> [times=N] [key=K]   wait before answering
# Actions (write, bash, turns) run in order, one tool call per model request; the final answer
# names the last tool result so a test sees whether the CLI ran, refused or failed the tool.
# With no directive the answer echoes the latest prompt's first line and how many prompts the
# conversation holds (`prompts=2` after a resume). Counters for `times=` are per server, keyed
# by the directive line (and key=K).
#
# Every reply carries the same usage: 1111 new input tokens, 33333 read from cache, 2222
# written to cache, 44 output (each API in its own shape; OpenAI and Gemini count the cached
# tokens inside the input total), so token parsing can be checked exactly.
#
# Each request is one JSONL line in --log: n, api, method, path, model, stream, tools (names),
# last_is_tool_result, prompt (first line), prompts, step, directive, action, status.
# Usage: model_server.py --port-file F --log L [--dump-dir D]; prints `port N` once listening.

import argparse
import json
import os
import re
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

USAGE_NEW, USAGE_CACHE_READ, USAGE_CACHE_WRITE, USAGE_OUT = 1111, 33333, 2222, 44
USAGE_INPUT_TOTAL = USAGE_NEW + USAGE_CACHE_READ + USAGE_CACHE_WRITE

DIRECTIVE = re.compile(r"^\s*MOCK:\s*(\w+)\s*(.*?)\s*$")
WRAPPER_TAGS = re.compile(r"^\s*<([\w-]+)[^>]*>.*</\1>\s*$", re.S)


class Scenario:
    """What the prompt asks the model to do, parsed from its MOCK: lines."""

    def __init__(self, prompt_text):
        self.actions = []  # ("write", path, content) | ("bash", cmd)
        self.answer = None
        self.status = None  # (line, code, times, retry_after)
        self.sleep = None  # (line, seconds, times)
        self.lines = []
        for line in prompt_text.splitlines():
            m = DIRECTIVE.match(line)
            if not m:
                continue
            verb, rest = m.group(1).lower(), m.group(2)
            self.lines.append(line.strip())
            if verb == "answer":
                self.answer = rest
            elif verb == "write":
                path, _, content = rest.partition(" ")
                self.actions.append(("write", path, content))
            elif verb == "bash":
                self.actions.append(("bash", rest))
            elif verb == "turns":
                for i in range(int(rest.split()[0])):
                    self.actions.append(("bash", f"echo turn {i + 1}"))
            elif verb == "status":
                words = rest.split()
                opts = options(words[1:])
                self.status = (
                    line.strip(),
                    int(words[0]),
                    opts.get("times"),
                    opts.get("retry_after", "1"),
                )
            elif verb == "sleep":
                words = rest.split()
                opts = options(words[1:])
                self.sleep = (line.strip(), float(words[0]), opts.get("times"))


def options(words):
    out = {}
    for w in words:
        k, _, v = w.partition("=")
        out[k] = v
    return out


class Conversation:
    """The protocol-neutral view of one request: the prompts and the tool results since the latest."""

    def __init__(self, prompts, results_since_prompt, last_is_tool_result, cwd):
        self.prompts = prompts  # user-typed texts, oldest first
        self.results = results_since_prompt  # tool result texts after the latest prompt
        self.last_is_tool_result = last_is_tool_result
        self.cwd = cwd

    @property
    def prompt(self):
        return self.prompts[-1] if self.prompts else ""


def user_text(text):
    """The text a person typed, or None for the CLI's own context wrappers."""
    if not text or not text.strip():
        return None
    if WRAPPER_TAGS.match(text):
        return None
    if text.lstrip().startswith("# AGENTS.md instructions"):
        return None
    return text


class State:
    def __init__(self, log_path, dump_dir):
        self.lock = threading.Lock()
        self.counters = {}
        self.n = 0
        self.log_path = log_path
        self.dump_dir = dump_dir

    def take(self, key, times):
        """Whether this request is one of the first `times` of `key` (always with no limit)."""
        with self.lock:
            seen = self.counters.get(key, 0)
            self.counters[key] = seen + 1
        return times is None or seen < int(times)

    def next_n(self):
        with self.lock:
            self.n += 1
            return self.n

    def log(self, entry):
        line = json.dumps(entry, sort_keys=True)
        with self.lock:
            with open(self.log_path, "a") as f:
                f.write(line + "\n")


def first_line(text):
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:200]
    return ""


def counter_key(line):
    """A directive's counter key: the line itself (key=K included, which is what K is for)."""
    return line


def decide(state, conv):
    """The model's next move: ("status", code, retry_after) | ("sleep", s) | ("tool", action) | ("text", t)."""
    sc = Scenario(conv.prompt)
    moves = []
    if sc.sleep and state.take(counter_key(sc.sleep[0]), sc.sleep[2]):
        moves.append(("sleep", sc.sleep[1], sc.sleep[0]))
    if sc.status and state.take(counter_key(sc.status[0]), sc.status[2]):
        return moves + [("status", sc.status[1], sc.status[3], sc.status[0])]
    step = len(conv.results)
    if step < len(sc.actions):
        return moves + [("tool", sc.actions[step], sc.lines[0] if sc.lines else None)]
    if sc.actions:
        last = conv.results[-1] if conv.results else ""
        text = sc.answer or f"MOCK done after {step} tool call(s); last tool result: {last[:300]}"
    elif sc.answer is not None:
        text = sc.answer
    else:
        text = f"MOCK answer to: {first_line(conv.prompt)} (prompts={len(conv.prompts)})"
    return moves + [("text", text, sc.lines[0] if sc.lines else None)]


def absolute(cwd, path):
    if path.startswith("/") or not cwd:
        return path
    return os.path.join(cwd, path)


# ---------------------------------------------------------------- Anthropic Messages


def anthropic_conversation(body):
    prompts, results, last_tool = [], [], False
    system = body.get("system")
    system_text = system if isinstance(system, str) else " ".join(
        b.get("text", "") for b in (system or []) if isinstance(b, dict)
    )
    cwd = search_cwd(system_text)
    for msg in body.get("messages", []):
        content = msg.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        if msg.get("role") != "user":
            # claude 2.1 sends its environment (the working directory) as a system-role message.
            for b in blocks:
                if cwd is None and b.get("type") == "text":
                    cwd = search_cwd(b.get("text", ""))
            continue
        last_tool = False
        for b in blocks:
            if b.get("type") == "text" and user_text(b.get("text")):
                prompts.append(b["text"])
                results = []
            elif b.get("type") == "tool_result":
                results.append(flatten(b.get("content")))
                last_tool = True
            elif b.get("type") == "text" and cwd is None:
                cwd = search_cwd(b.get("text", ""))
    return Conversation(prompts, results, last_tool, cwd)


def flatten(content):
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(flatten(c.get("text", c.get("content", ""))) if isinstance(c, dict) else str(c) for c in content)
    if content is None:
        return ""
    return json.dumps(content)


CWD_PATTERNS = [
    re.compile(r"Primary working directory:\s*(\S+)"),
    re.compile(r"Working directory:\s*(\S+)"),
    re.compile(r"<cwd>([^<]+)</cwd>"),
    re.compile(r"current working directory[^/]*?(/\S+)", re.I),
    re.compile(r"working in the directory[^/]*?(/\S+)", re.I),
    re.compile(r"Workspace Directories:\**\s*\n\s*-\s*(/\S+)"),
]


def search_cwd(text):
    for p in CWD_PATTERNS:
        m = p.search(text or "")
        if m:
            return m.group(1).rstrip(".:,'\"`")
    return None


def anthropic_usage(output_tokens=USAGE_OUT):
    return {
        "input_tokens": USAGE_NEW,
        "cache_creation_input_tokens": USAGE_CACHE_WRITE,
        "cache_read_input_tokens": USAGE_CACHE_READ,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def anthropic_tool_block(tools, action, cwd):
    names = {t.get("name") for t in tools}
    tid = "toolu_" + uuid.uuid4().hex[:24]
    if action[0] == "write" and "Write" in names:
        return {"type": "tool_use", "id": tid, "name": "Write",
                "input": {"file_path": absolute(cwd, action[1]), "content": action[2] + "\n"}}
    cmd = action[1] if action[0] == "bash" else write_command(action[1], action[2])
    return {"type": "tool_use", "id": tid, "name": "Bash",
            "input": {"command": cmd, "description": "mock shell call"}}


def write_command(path, content):
    q = content.replace("'", "'\\''")
    return f"mkdir -p \"$(dirname '{path}')\" && printf '%s\\n' '{q}' > '{path}'"


def anthropic_message(model, blocks, stop):
    return {
        "id": "msg_" + uuid.uuid4().hex[:24],
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": anthropic_usage(),
    }


def anthropic_sse(model, blocks, stop):
    msg = anthropic_message(model, [], None)
    msg["usage"] = dict(anthropic_usage(1))
    yield "message_start", {"type": "message_start", "message": msg}
    yield "ping", {"type": "ping"}
    for i, b in enumerate(blocks):
        if b["type"] == "text":
            yield "content_block_start", {"type": "content_block_start", "index": i,
                                          "content_block": {"type": "text", "text": ""}}
            for chunk in chunks(b["text"]):
                yield "content_block_delta", {"type": "content_block_delta", "index": i,
                                              "delta": {"type": "text_delta", "text": chunk}}
        else:
            start = dict(b, input={})
            yield "content_block_start", {"type": "content_block_start", "index": i, "content_block": start}
            yield "content_block_delta", {"type": "content_block_delta", "index": i,
                                          "delta": {"type": "input_json_delta",
                                                    "partial_json": json.dumps(b["input"])}}
        yield "content_block_stop", {"type": "content_block_stop", "index": i}
    yield "message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                            "usage": anthropic_usage()}
    yield "message_stop", {"type": "message_stop"}


def chunks(text, size=24):
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


ANTHROPIC_ERRORS = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
    500: "api_error", 529: "overloaded_error",
}


def anthropic_error(code):
    kind = ANTHROPIC_ERRORS.get(code, "api_error")
    message = {"rate_limit_error": "Number of requests has exceeded your rate limit (mock).",
               "overloaded_error": "Overloaded", "api_error": "Internal server error"}.get(kind, f"mock error {code}")
    return {"type": "error", "error": {"type": kind, "message": message},
            "request_id": "req_" + uuid.uuid4().hex[:24]}


# ---------------------------------------------------------------- OpenAI Responses


def openai_conversation(body):
    prompts, results, last_tool = [], [], False
    cwd = None
    items = body.get("input")
    if isinstance(items, str):
        items = [{"type": "message", "role": "user", "content": items}]
    for item in items or []:
        kind = item.get("type", "message")
        if kind == "message" and item.get("role") == "user":
            content = item.get("content")
            parts = [{"type": "input_text", "text": content}] if isinstance(content, str) else content or []
            typed = False
            for p in parts:
                text = p.get("text", "")
                if cwd is None:
                    cwd = search_cwd(text)
                if p.get("type") in ("input_text", "text") and user_text(text):
                    prompts.append(text)
                    typed = True
            if typed:
                results = []
                last_tool = False
        elif kind in ("function_call_output", "custom_tool_call_output"):
            results.append(flatten(item.get("output")))
            last_tool = True
        elif kind == "message":
            last_tool = False
    if cwd is None:
        cwd = search_cwd(body.get("instructions", ""))
    return Conversation(prompts, results, last_tool, cwd)


def openai_tools(body):
    """Every tool the request offers, namespaces flattened: (name, type). codex 0.171 sends its
    default model's tools as an `additional_tools` input item, code mode's `exec` among them."""
    found = []

    def walk(tools):
        for t in tools or []:
            if t.get("type") == "namespace":
                walk(t.get("tools"))
            else:
                found.append((t.get("name") or t.get("type"), t.get("type")))

    walk(body.get("tools"))
    for item in body.get("input") or []:
        if isinstance(item, dict) and item.get("type") == "additional_tools":
            walk(item.get("tools"))
    return found


def openai_tool_item(tools, action, cwd):
    kinds = dict(tools)
    call_id = "call_" + uuid.uuid4().hex[:24]
    if action[0] == "write":
        lines = "".join("+" + l + "\n" for l in action[2].split("\n"))
        patch = f"*** Begin Patch\n*** Add File: {action[1]}\n{lines}*** End Patch\n"
    if kinds.get("exec") == "custom":
        # Code mode: one freeform `exec` tool running JavaScript that calls the nested tools.
        if action[0] == "write":
            js = f"text(await tools.apply_patch({json.dumps(patch)}));"
        else:
            js = (f"const r = await tools.exec_command({{cmd: {json.dumps(action[1])}}});\n"
                  "text(typeof r === 'string' ? r : `exit ${r.exit_code}: ${r.output}`);")
        return {"type": "custom_tool_call", "id": "ctc_" + uuid.uuid4().hex[:24], "status": "completed",
                "call_id": call_id, "name": "exec", "input": js}
    if action[0] == "write" and "apply_patch" in kinds:
        if kinds["apply_patch"] == "custom":
            return {"type": "custom_tool_call", "id": "ctc_" + uuid.uuid4().hex[:24], "status": "completed",
                    "call_id": call_id, "name": "apply_patch", "input": patch}
        return {"type": "function_call", "id": "fc_" + uuid.uuid4().hex[:24], "status": "completed",
                "call_id": call_id, "name": "apply_patch", "arguments": json.dumps({"input": patch})}
    cmd = action[1] if action[0] == "bash" else write_command(action[1], action[2])
    if "exec_command" in kinds:
        name, args = "exec_command", {"cmd": cmd}
    elif "shell_command" in kinds:
        name, args = "shell_command", {"command": cmd}
    else:
        name, args = "shell", {"command": ["bash", "-lc", cmd]}
    return {"type": "function_call", "id": "fc_" + uuid.uuid4().hex[:24], "status": "completed",
            "call_id": call_id, "name": name, "arguments": json.dumps(args)}


def openai_usage():
    return {
        "input_tokens": USAGE_INPUT_TOTAL,
        "input_tokens_details": {"cached_tokens": USAGE_CACHE_READ, "cache_write_tokens": USAGE_CACHE_WRITE},
        "output_tokens": USAGE_OUT,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": USAGE_INPUT_TOTAL + USAGE_OUT,
    }


def openai_response(model, output, status="completed"):
    return {
        "id": "resp_" + uuid.uuid4().hex,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": model,
        "output": output,
        "usage": openai_usage() if status == "completed" else None,
    }


def openai_sse(model, output):
    seq = iter(range(10_000))
    resp = openai_response(model, [], "in_progress")
    yield "response.created", {"type": "response.created", "sequence_number": next(seq), "response": resp}
    yield "response.in_progress", {"type": "response.in_progress", "sequence_number": next(seq), "response": resp}
    for i, item in enumerate(output):
        if item["type"] == "message":
            text = item["content"][0]["text"]
            added = dict(item, status="in_progress", content=[])
            yield "response.output_item.added", {"type": "response.output_item.added", "sequence_number": next(seq),
                                                 "output_index": i, "item": added}
            part = {"type": "output_text", "text": "", "annotations": []}
            yield "response.content_part.added", {"type": "response.content_part.added", "sequence_number": next(seq),
                                                  "item_id": item["id"], "output_index": i, "content_index": 0,
                                                  "part": part}
            for chunk in chunks(text):
                yield "response.output_text.delta", {"type": "response.output_text.delta",
                                                     "sequence_number": next(seq), "item_id": item["id"],
                                                     "output_index": i, "content_index": 0, "delta": chunk}
            yield "response.output_text.done", {"type": "response.output_text.done", "sequence_number": next(seq),
                                                "item_id": item["id"], "output_index": i, "content_index": 0,
                                                "text": text}
            yield "response.content_part.done", {"type": "response.content_part.done", "sequence_number": next(seq),
                                                 "item_id": item["id"], "output_index": i, "content_index": 0,
                                                 "part": dict(part, text=text)}
        else:
            yield "response.output_item.added", {"type": "response.output_item.added", "sequence_number": next(seq),
                                                 "output_index": i, "item": item}
        yield "response.output_item.done", {"type": "response.output_item.done", "sequence_number": next(seq),
                                            "output_index": i, "item": item}
    yield "response.completed", {"type": "response.completed", "sequence_number": next(seq),
                                 "response": openai_response(model, output)}


def openai_message(text):
    return {"type": "message", "id": "msg_" + uuid.uuid4().hex[:24], "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}


def openai_error(code):
    kind = {429: ("rate_limit_exceeded", "requests"), 500: ("server_error", "server_error"),
            529: ("server_is_overloaded", "server_error"), 503: ("server_is_overloaded", "server_error")}
    c, t = kind.get(code, ("mock_error", "invalid_request_error"))
    msg = {429: "Rate limit reached for requests (mock). Please try again in 1s.",
           500: "The server had an error while processing your request (mock)."}.get(code, f"mock error {code}")
    return {"error": {"message": msg, "type": t, "param": None, "code": c}}


# ---------------------------------------------------------------- Gemini


def gemini_conversation(body):
    prompts, results, last_tool = [], [], False
    cwd = None
    system = body.get("systemInstruction") or {}
    for p in system.get("parts", []) if isinstance(system, dict) else []:
        cwd = cwd or search_cwd(p.get("text", ""))
    for content in body.get("contents", []):
        if content.get("role", "user") != "user":
            continue
        last_tool = False
        for p in content.get("parts", []):
            if "functionResponse" in p:
                results.append(json.dumps(p["functionResponse"].get("response")))
                last_tool = True
            elif "text" in p:
                cwd = cwd or search_cwd(p["text"])
                if user_text(p["text"]) and not p["text"].lstrip().startswith("<session_context>"):
                    prompts.append(p["text"])
                    results = []
    return Conversation(prompts, results, last_tool, cwd)


def gemini_usage():
    return {
        "promptTokenCount": USAGE_INPUT_TOTAL,
        "cachedContentTokenCount": USAGE_CACHE_READ,
        "candidatesTokenCount": USAGE_OUT,
        "thoughtsTokenCount": 0,
        "totalTokenCount": USAGE_INPUT_TOTAL + USAGE_OUT,
    }


def gemini_tool_part(tools, action, cwd):
    names = set()
    for t in tools:
        for f in t.get("functionDeclarations", []) or []:
            names.add(f.get("name"))
    if action[0] == "write" and "write_file" in names:
        call = {"name": "write_file", "args": {"file_path": absolute(cwd, action[1]), "content": action[2] + "\n"}}
    else:
        cmd = action[1] if action[0] == "bash" else write_command(action[1], action[2])
        call = {"name": "run_shell_command", "args": {"command": cmd, "description": "mock shell call"}}
    return {"functionCall": call}


def gemini_reply(model, parts):
    return {
        "candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": gemini_usage(),
        "modelVersion": model,
        "responseId": uuid.uuid4().hex[:22],
    }


GEMINI_STATUS = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED",
                 500: "INTERNAL", 503: "UNAVAILABLE", 529: "UNAVAILABLE"}


def gemini_error(code, retry_after):
    err = {"code": code, "message": f"mock error {code}", "status": GEMINI_STATUS.get(code, "UNKNOWN")}
    if code == 429:
        err["message"] = "Resource has been exhausted (e.g. check quota)."
        err["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after}s"}]
    elif code >= 500:
        err["message"] = "An internal error has occurred. Please retry or report (mock)." if code == 500 \
            else "The model is overloaded. Please try again later."
    return {"error": err}


# ---------------------------------------------------------------- HTTP


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "orch-mock-model/1"

    def log_message(self, fmt, *args):  # the JSONL log is the record; keep stderr quiet
        pass

    def do_CONNECT(self):
        self.escape()

    def do_GET(self):
        if self.path.startswith("http://") or self.path.startswith("https://"):
            return self.escape()
        path = self.path.split("?")[0]
        if path.rstrip("/").endswith("/models"):
            entry = self.entry("GET", api_of(path))
            if "v1beta" in path:
                body = {"models": [{"name": "models/gemini-2.5-pro"}, {"name": "models/gemini-2.5-flash"}]}
            elif "/v1/" in path and api_of(path) == "openai":
                body = {"object": "list", "data": [{"id": "gpt-5", "object": "model", "owned_by": "mock"}],
                        "models": []}
            else:
                body = {"data": [{"id": "claude-sonnet-4-5", "type": "model", "display_name": "Mock"}],
                        "has_more": False, "first_id": None, "last_id": None}
            return self.json(200, body, entry)
        self.json(404, {"error": {"message": f"mock: no route for GET {path}"}}, self.entry("GET", "unknown"))

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        if self.path.startswith("http://") or self.path.startswith("https://"):
            return self.escape()
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        path = self.path.split("?")[0]
        n = self.server.state.next_n()
        if self.server.state.dump_dir:
            with open(os.path.join(self.server.state.dump_dir, f"{n:04d}.json"), "w") as f:
                json.dump({"path": self.path, "headers": dict(self.headers), "body": body}, f, indent=1)
        if path.endswith("/v1/messages/count_tokens"):
            return self.json(200, {"input_tokens": USAGE_INPUT_TOTAL}, self.entry("POST", "anthropic", n, body))
        if path.endswith("/v1/messages"):
            return self.anthropic(n, body)
        if path.endswith("/responses"):
            return self.openai(n, body)
        if ":countTokens" in path:
            return self.json(200, {"totalTokens": USAGE_INPUT_TOTAL}, self.entry("POST", "gemini", n, body))
        if ":generateContent" in path or ":streamGenerateContent" in path:
            return self.gemini(n, body, path)
        self.json(404, {"error": {"message": f"mock: no route for POST {path}"}}, self.entry("POST", "unknown", n, body))

    # -- per API

    def anthropic(self, n, body):
        conv = anthropic_conversation(body)
        model = body.get("model", "")
        entry = self.entry("POST", "anthropic", n, body, conv, [t.get("name") for t in body.get("tools", [])])
        for move in self.moves(conv, entry):
            if move[0] == "status":
                headers = {"request-id": "req_mock", "x-should-retry": "true"}
                if move[1] == 429:
                    headers.update(rate_limit_headers_anthropic(move[2]))
                return self.json(move[1], anthropic_error(move[1]), entry, headers)
            if move[0] == "tool":
                blocks, stop = [{"type": "text", "text": "Calling a tool."},
                                anthropic_tool_block(body.get("tools", []), move[1], conv.cwd)], "tool_use"
            else:
                blocks, stop = [{"type": "text", "text": move[1]}], "end_turn"
        if body.get("stream"):
            return self.sse(anthropic_sse(model, blocks, stop), entry, named=True)
        return self.json(200, anthropic_message(model, blocks, stop), entry)

    def openai(self, n, body):
        conv = openai_conversation(body)
        model = body.get("model", "")
        tools = openai_tools(body)
        entry = self.entry("POST", "openai", n, body, conv, [name for name, _ in tools])
        for move in self.moves(conv, entry):
            if move[0] == "status":
                headers = {"x-request-id": "req_mock"}
                if move[1] == 429:
                    headers.update(rate_limit_headers_openai(move[2]))
                return self.json(move[1], openai_error(move[1]), entry, headers)
            if move[0] == "tool":
                output = [openai_tool_item(tools, move[1], conv.cwd)]
            else:
                output = [openai_message(move[1])]
        if body.get("stream"):
            return self.sse(openai_sse(model, output), entry, named=True)
        return self.json(200, openai_response(model, output), entry)

    def gemini(self, n, body, path):
        conv = gemini_conversation(body)
        model = path.split("/models/")[-1].split(":")[0]
        tools = body.get("tools", []) or []
        names = [f.get("name") for t in tools for f in (t.get("functionDeclarations") or [])]
        entry = self.entry("POST", "gemini", n, body, conv, names)
        entry["model"] = model
        config = body.get("generationConfig") or {}
        if config.get("responseMimeType") == "application/json" or config.get("responseJsonSchema") \
                or config.get("responseSchema"):
            # The CLI's own side calls (routing, next-speaker checks) want JSON, not a scenario.
            entry["action"] = "side-json"
            parts = [{"text": json.dumps(side_json(config))}]
        else:
            for move in self.moves(conv, entry):
                if move[0] == "status":
                    headers = {}
                    if move[1] == 429:
                        headers["Retry-After"] = move[2]
                    return self.json(move[1], gemini_error(move[1], move[2]), entry, headers)
                if move[0] == "tool":
                    parts = [gemini_tool_part(tools, move[1], conv.cwd)]
                else:
                    parts = [{"text": move[1]}]
        reply = gemini_reply(model, parts)
        if ":streamGenerateContent" in path:
            return self.sse(iter([(None, reply)]), entry, named=False)
        return self.json(200, reply, entry)

    def moves(self, conv, entry):
        """Runs the scenario's moves up to the one that answers; sleeps are done here. A request
        that offers no tools is the CLI's own side call (a title, a session summary): it gets a
        plain answer and leaves the scenario's counters alone."""
        if not entry.get("tools"):
            entry["action"] = "side"
            yield ("text", f"MOCK side answer to: {first_line(conv.prompt)}", None)
            return
        for move in decide(self.server.state, conv):
            entry["directive"] = move[-1]
            if move[0] == "sleep":
                entry["slept"] = move[1]
                time.sleep(move[1])
                continue
            entry["action"] = {"status": lambda m: f"status {m[1]}", "tool": lambda m: f"tool {m[1][0]}",
                               "text": lambda m: "answer"}[move[0]](move)
            yield move
            return

    # -- plumbing

    def entry(self, method, api, n=None, body=None, conv=None, tools=None):
        body = body or {}
        e = {"n": n, "method": method, "api": api, "path": self.path, "model": body.get("model"),
             "stream": bool(body.get("stream")) or ":streamGenerateContent" in self.path, "ts": time.time()}
        if conv is not None:
            e.update(prompt=first_line(conv.prompt), prompts=len(conv.prompts), step=len(conv.results),
                     last_is_tool_result=conv.last_is_tool_result, tools=tools)
        return e

    def json(self, status, obj, entry, headers=None):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.write_safely(data)
        self.finish_entry(entry, status)

    def sse(self, events, entry, named):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for name, data in events:
            frame = (f"event: {name}\n" if named and name else "") + f"data: {json.dumps(data)}\n\n"
            payload = frame.encode()
            if not self.write_safely(b"%x\r\n%s\r\n" % (len(payload), payload)):
                break
        self.write_safely(b"0\r\n\r\n")
        self.finish_entry(entry, 200)

    def write_safely(self, data):
        try:
            self.wfile.write(data)
            self.wfile.flush()
            return True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return False

    def finish_entry(self, entry, status):
        entry["status"] = status
        self.server.state.log(entry)

    def escape(self):
        entry = {"n": self.server.state.next_n(), "method": self.command, "api": "escape", "path": self.path,
                 "ts": time.time()}
        self.close_connection = True
        data = b"mock model server: outbound traffic refused\n"
        self.send_response(403)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.write_safely(data)
        self.finish_entry(entry, 403)


def api_of(path):
    if "v1beta" in path or "/models/" in path and ":" in path:
        return "gemini"
    if "responses" in path or path.startswith("/openai"):
        return "openai"
    return "anthropic" if path.startswith("/v1/") else "unknown"


def side_json(config):
    """A minimal object for a JSON-mode side call: each required property a plausible value."""
    schema = config.get("responseJsonSchema") or config.get("responseSchema") or {}
    out = {}
    for name, prop in (schema.get("properties") or {}).items():
        kind = str(prop.get("type", "string")).lower()
        if prop.get("enum"):
            out[name] = "user" if "user" in prop["enum"] else prop["enum"][0]
        elif kind == "boolean":
            out[name] = False
        elif kind in ("number", "integer"):
            out[name] = max(1, prop.get("minimum", 1))
        else:
            out[name] = "user" if name == "next_speaker" else "mock"
    return out


def rate_limit_headers_anthropic(retry_after):
    reset = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + float(retry_after)))
    return {
        "retry-after": retry_after,
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": reset,
        "anthropic-ratelimit-tokens-limit": "40000",
        "anthropic-ratelimit-tokens-remaining": "0",
        "anthropic-ratelimit-tokens-reset": reset,
    }


def rate_limit_headers_openai(retry_after):
    return {
        "retry-after": retry_after,
        "x-ratelimit-limit-requests": "500",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": f"{retry_after}s",
        "x-ratelimit-limit-tokens": "30000",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": f"{retry_after}s",
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--dump-dir")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    if args.dump_dir:
        os.makedirs(args.dump_dir, exist_ok=True)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.state = State(args.log, args.dump_dir)
    port = server.server_address[1]
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.rename(tmp, args.port_file)
    print(f"port {port}", flush=True)
    # Stop when the test that started us is gone (stdin closes), not only on a signal.
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
