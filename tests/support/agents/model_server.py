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
#   MOCK: status <code> [times=N] [retry_after=S] [after=M] [key=K]
#                                   answer HTTP <code> (the API's own error body; 429 with its
#                                   rate-limit headers); with times=N only the first N requests
#                                   of this scenario, later ones go on normally; with after=M
#                                   only once M tool calls of the scenario are answered
#   MOCK: sleep <seconds> [times=N] [key=K]   wait before answering
# Actions (write, bash, turns) run in order, one tool call per model request; the final answer
# names the last tool result so a test sees whether the CLI ran, refused or failed the tool.
# With no directive the answer echoes the latest prompt's first line and how many prompts the
# conversation holds (`prompts=2` after a resume). A latest prompt without directives (what a
# resumed session is told) carries on the scenario of the conversation's first prompt that has
# one. A prompt with no directive at all that is an orch task file naming its outputs
# (`- **Expected outputs** (write these files): a, b`) gets those files written, as a model
# following it would. Counters for `times=` are per server, keyed
# by the directive line (and key=K).
#
# Every reply carries the same usage: 1111 new input tokens, 33333 read from cache, 2222
# written to cache, 44 output (each API in its own shape; OpenAI and Gemini count the cached
# tokens inside the input total), so token parsing can be checked exactly.
#
# Each request is one JSONL line in --log: n, api, method, path, model, stream, tools (names),
# last_is_tool_result, prompt (first line), prompt_text (the whole latest prompt), prompts, step,
# directive, action, status, ts (arrival) and done_ts (answered), in Unix seconds.
# Usage: model_server.py --port-file F --log L [--dump-dir D]; prints `port N` once listening.
# --dump-dir keeps each request whole (headers and body), for reading what a new CLI sends.

import argparse
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The protocol halves live beside this script (its directory is on sys.path when run).
from model_apis import (
    USAGE_INPUT_TOTAL,
    anthropic_conversation,
    anthropic_error,
    anthropic_message,
    anthropic_sse,
    anthropic_tool_block,
    first_line,
    gemini_conversation,
    gemini_error,
    gemini_reply,
    gemini_tool_part,
    openai_conversation,
    openai_error,
    openai_message,
    openai_response,
    openai_sse,
    openai_tool_item,
    openai_tools,
    rate_limit_headers_anthropic,
    rate_limit_headers_openai,
    side_json,
)


DIRECTIVE = re.compile(r"^\s*MOCK:\s*(\w+)\s*(.*?)\s*$")


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
                    int(opts.get("after", "0")),
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


def counter_key(line):
    """A directive's counter key: the line itself (key=K included, which is what K is for)."""
    return line


EXPECTED_OUTPUTS = re.compile(r"^- \*\*Expected outputs\*\* \(write these files\): (.+)$", re.M)


def scenario_of(conv):
    """The scenario a request plays: its latest prompt's, else that of the first prompt of the
    conversation that has one (a resumed session), else an orch task file's outputs written."""
    sc = Scenario(conv.prompt)
    if sc.lines:
        return sc
    for p in conv.prompts[:-1]:
        earlier = Scenario(p)
        if earlier.lines:
            return earlier
    for p in reversed(conv.prompts):
        m = EXPECTED_OUTPUTS.search(p)
        if m:
            for path in (x.strip() for x in m.group(1).split(",")):
                sc.actions.append(("write", path, "written by the mock model"))
            break
    return sc


def decide(state, conv):
    """The model's next move: ("status", code, retry_after) | ("sleep", s) | ("tool", action) | ("text", t)."""
    sc = scenario_of(conv)
    moves = []
    step = len(conv.results)
    if sc.sleep and state.take(counter_key(sc.sleep[0]), sc.sleep[2]):
        moves.append(("sleep", sc.sleep[1], sc.sleep[0]))
    if sc.status and step >= sc.status[4] and state.take(counter_key(sc.status[0]), sc.status[2]):
        return moves + [("status", sc.status[1], sc.status[3], sc.status[0])]
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
            e.update(prompt=first_line(conv.prompt), prompt_text=conv.prompt, prompts=len(conv.prompts), step=len(conv.results),
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
        entry["done_ts"] = time.time()
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
