"""Optional: explain a latent with an LLM behind an OpenAI-compatible endpoint (never required).

saekit's own explanations are the offline n-gram ones (autointerp.py). This hook sends a latent's
top contexts, with the activating tokens marked, to ``{base_url}/chat/completions`` (OpenAI, vLLM,
llama.cpp server, Ollama's OpenAI mode, ...) and returns the model's one-line explanation. Only the
standard library is used; the API key is read from an environment variable, never stored.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

from saekit.errors import DataError

PROMPT = (
    "Below are text excerpts where one feature of a language model is active. The tokens where it "
    "fires are marked <<like this>>, with the activation after a colon. In one short sentence, say "
    "what the feature detects. Answer with the explanation only.\n\n{examples}"
)


def mark_contexts(contexts: list[dict[str, Any]], max_contexts: int = 10) -> str:
    """Contexts (``top_contexts`` records with a ``text`` list) with firing tokens marked <<tok:act>>."""
    lines = []
    for c in contexts[:max_contexts]:
        parts = [f"<<{t}:{a:.2f}>>" if a > 0 else t for t, a in zip(c["text"], c["acts"])]
        lines.append("- " + "".join(parts).replace("\n", "\\n"))
    return "\n".join(lines)


def llm_explain(
    contexts: list[dict[str, Any]],
    base_url: str,
    model: str,
    api_key_env: str = "OPENAI_API_KEY",
    timeout: float = 60.0,
    max_contexts: int = 10,
) -> str:
    """One-line explanation of a latent from its top contexts, by an OpenAI-compatible chat endpoint."""
    body = {
        "model": model,
        "temperature": 0,
        "messages": [{"role": "user", "content": PROMPT.format(examples=mark_contexts(contexts, max_contexts))}],
    }
    req = urllib.request.Request(
        base_url.rstrip("/") + "/chat/completions",
        data=json.dumps(body).encode("utf-8"),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    key = os.environ.get(api_key_env)
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            data = json.loads(resp.read().decode("utf-8"))
    except (urllib.error.URLError, TimeoutError) as e:
        raise DataError(f"the explainer endpoint {base_url} could not be reached ({e}).") from None
    except json.JSONDecodeError:
        raise DataError(f"the explainer endpoint {base_url} did not answer with JSON.") from None
    try:
        return str(data["choices"][0]["message"]["content"]).strip()
    except (KeyError, IndexError, TypeError):
        raise DataError(f"the explainer endpoint {base_url} answered without choices[0].message.content.") from None
