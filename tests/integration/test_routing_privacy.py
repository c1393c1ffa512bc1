"""A routing decision made from the prompt (model="auto") must not carry prompt words into the response
headers or the access log; the classifier's detailed reason is only in /admin/routing/explain."""

from __future__ import annotations

import httpx

from tests.conftest import openai_provider, running_omen
from tests.fakes import open_fake_upstream

PROMPT = "write a python function that reverses a linked list"


async def test_auto_reason_keeps_prompt_words_out_of_headers_and_log(tmp_path) -> None:
    async with open_fake_upstream("openai") as up:
        config = {
            "providers": {"openai": openai_provider(up)},
            "models": {"gpt-4o-mini": {"provider": "openai"}, "coder": {"provider": "openai", "model": "gpt-4o"}},
            "routing": {"auto": {"code": "coder", "default": "gpt-4o-mini"}},
        }
        async with running_omen(config, tmp_path=tmp_path) as omen:
            async with httpx.AsyncClient(base_url=omen.v1) as http:
                body = {"model": "auto", "messages": [{"role": "user", "content": PROMPT}]}
                response = await http.post("/chat/completions", json=body)
                explained = await http.post(f"{omen.url}/admin/routing/explain", json=body)
            assert response.status_code == 200
            reason = response.headers["x-omen-route-reason"]
            assert "intent code" in reason and "coder" in reason
            record = await omen.log_for(response.headers["x-request-id"])
            for word in ("python", "linked list", "reverses"):
                assert word not in reason and word not in str(record)
            assert "python" in explained.json()["intent"]["reason"]  # the details stay in explain
