"""The session page's HTTP side, without a browser: what is served, and who may read page data."""

from __future__ import annotations

import re

import httpx

from luxxon_agent.stub.pages import CONTENT_SECURITY_POLICY

from .conftest import Stub, live_session


async def test_page_and_modules_are_served_from_the_package(stub: Stub) -> None:
    async with httpx.AsyncClient(base_url=stub.base) as http:
        page = await http.get("/sessions/ses_anything")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        # every script and stylesheet is a same-origin path, and each one is served
        assets = re.findall(r'(?:src|href)="(/static/session/[^"]+)"', page.text)
        assert {a.rsplit("/", 1)[1] for a in assets} == {"session.css", "session.js"}
        script = await http.get("/static/session/session.js")
        assert script.headers["content-type"].startswith("text/javascript")
        imports = set(re.findall(r'from "\./([a-z]+\.js)"', script.text))
        assert imports == {"api.js", "operate.js", "watch.js", "wallet.js", "ui.js"}
        for name in imports:
            module = await http.get(f"/static/session/{name}")
            assert module.status_code == 200, name
            assert "http://" not in module.text and "https://" not in module.text, name


async def test_static_route_serves_only_its_own_files(stub: Stub) -> None:
    async with httpx.AsyncClient(base_url=stub.base) as http:
        for name in ["..%2Fpages.py", "pages.py", "missing.js", "SESSION.JS", "%2e%2e"]:
            response = await http.get(f"/static/session/{name}")
            assert response.status_code == 404, name
            assert response.json()["code"] == "NOT_FOUND"


async def test_live_data_is_gated_like_the_session(stub: Stub) -> None:
    session = await live_session(stub.base)
    async with httpx.AsyncClient(base_url=stub.base) as http:
        anonymous = await http.get(f"/sessions/{session.id}/live.json")
        assert anonymous.status_code == 401
        assert anonymous.json()["code"] == "NOT_AUTHENTICATED"
        for cookie in (session.operator_cookie, session.consumer_cookie):
            response = await http.get(
                f"/sessions/{session.id}/live.json",
                headers={"Cookie": f"lx_session={cookie.reveal()}"},
            )
            assert response.status_code == 200
            data = response.json()["data"]
            assert data["state"] == "LIVE"
            assert data["position"] is None
            assert data["meter"]["mode"] == "wallclock"
            assert data["meter"]["final"] is False
            assert data["ingest"]["frames"] == 0
        unknown = await http.get(
            "/sessions/ses_nope/live.json",
            headers={"Cookie": f"lx_session={session.consumer_cookie.reveal()}"},
        )
        assert unknown.status_code == 404
        assert unknown.json()["code"] == "SESSION_NOT_FOUND"
