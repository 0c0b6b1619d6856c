#!/usr/bin/env python3
# The three model APIs as model_server.py speaks them: reading a request into a protocol-neutral
# Conversation (the prompts a person typed, the tool results since the latest one, the working
# directory the CLI told the model), and writing replies, tool calls, usage and errors in each
# API's own shape (Anthropic Messages, OpenAI Responses, Gemini). Python stdlib only.

import json
import os
import re
import time
import uuid

USAGE_NEW, USAGE_CACHE_READ, USAGE_CACHE_WRITE, USAGE_OUT = 1111, 33333, 2222, 44
USAGE_INPUT_TOTAL = USAGE_NEW + USAGE_CACHE_READ + USAGE_CACHE_WRITE
WRAPPER_TAGS = re.compile(r"^\s*<([\w-]+)[^>]*>.*</\1>\s*$", re.S)
# claude 2.1 marks a turn cut short (SIGINT) with this user-role text when the session resumes.
INTERRUPT_MARKERS = re.compile(r"^\s*\[Request interrupted by user[^\]]*\]\s*$")


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
    if WRAPPER_TAGS.match(text) or INTERRUPT_MARKERS.match(text):
        return None
    if text.lstrip().startswith("# AGENTS.md instructions"):
        return None
    return text


def first_line(text):
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:200]
    return ""


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
