"""A live `faceid-sdk serve` and headless Debian Chromium (Playwright) for the browser tests.

Skipped, with the reason, when Chromium, Playwright or the prepared client (``make web-setup``:
npm ci + clients/web/prepare.py) is missing. Never ``playwright install``: its browser download
fails here; Debian's /usr/bin/chromium is driven instead.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "clients" / "web"
VENDOR = WEB / "vendor"
FIXTURES = ROOT / "tests" / "fixtures" / "web"
SHIPPED = ROOT / "faceid_sdk" / "models" / "ffem_am" / "model.json"
CHROMIUM = Path(os.environ.get("FACEID_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-quic", "--disable-sync",
]
SETUP_HINT = "run `make web-setup` (apt chromium, npm ci in clients/web, prepare.py, playwright)"


def vendor_model() -> dict[str, Any]:
    """The faceid metadata of the TF.js model the page loads (model_id, dim, ...)."""
    model = json.loads((VENDOR / "ffem_am" / "model.json").read_text())
    meta: dict[str, Any] = model["userDefinedMetadata"]["faceid"]
    return meta


def shipped_model_id() -> str | None:
    """The shipped model's id, or None while no trained weights ship."""
    if not SHIPPED.is_file():
        return None
    return str(json.loads(SHIPPED.read_text())["model_id"])


@pytest.fixture(scope="session")
def trained() -> bool:
    """Whether the page runs the shipped (trained) model: recognition assertions need it
    (FACEID_WEB_TRAINED=1 says so of weights exported with `prepare.py --weights`).

    A shipped model with a stale export in vendor/ is an error, not a skip: the page would
    silently run other weights than the server's documentation says.
    """
    shipped = shipped_model_id()
    if shipped is None:
        # A candidate model exported with `prepare.py --weights` counts as trained on request.
        return os.environ.get("FACEID_WEB_TRAINED") == "1"
    got = vendor_model()["model_id"]
    if got != shipped:
        pytest.fail(f"clients/web/vendor/ffem_am is {got}, the shipped model is {shipped}: "
                    "run `python clients/web/prepare.py` (or `make web-setup`)")
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def chromium_ready() -> None:
    if not CHROMIUM.is_file():
        pytest.skip(f"Chromium not found at {CHROMIUM}: {SETUP_HINT}")
    pytest.importorskip("playwright.sync_api", reason=f"Playwright is not installed: {SETUP_HINT}")
    if not (WEB / "node_modules").is_dir():
        pytest.skip(f"clients/web/node_modules is missing: {SETUP_HINT}")
    if not (VENDOR / "manifest.json").is_file() or not (VENDOR / "ffem_am").is_dir():
        pytest.skip(f"clients/web/vendor is not prepared: {SETUP_HINT}")


#: The API keys of the running server: the page's and an operator's.
KEYS: dict[str, str] = {}


@pytest.fixture(scope="module")
def server(chromium_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`faceid-sdk serve` on a free port with an empty store for the page's model; its URL."""
    import httpx

    from faceid_sdk import Enroller

    meta = vendor_model()
    tmp = tmp_path_factory.mktemp("serve")
    port = _free_port()
    # Served with keys, as in production: the page gets its own key, in its URL fragment, as
    # an enrollment desk would (identify, verify, enroll, and list: the scope that lets an
    # enroll answer name the people a new face already matches); the fixtures an operator's.
    with Enroller(tmp / "faces.db", meta["model_id"], int(meta["dim"])) as enroller:
        KEYS["page"] = enroller.create_api_key(
            "enrollment-desk", ["identify", "verify", "enroll", "list"])[1]
        KEYS["operator"] = enroller.create_api_key("fixtures", ["operator"])[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "faceid_sdk", "serve", "--store", str(tmp / "faces.db"),
         "--model-id", meta["model_id"], "--dim", str(meta["dim"]), "--port", str(port),
         "--static", str(WEB), "--rate", "0", "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                pytest.fail(f"faceid-sdk serve exited: {proc.communicate()[1][-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("faceid-sdk serve did not answer within 60 s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


#: The photo Chromium's fake camera shows (--use-file-for-fake-video-capture).
CAMERA_PHOTO = FIXTURES / "7363_138045.jpg"


def fake_camera_file(folder: Path) -> Path:
    """An MJPEG file (JPEG frames back to back) of CAMERA_PHOTO centred in a 640x480 frame."""
    from PIL import Image

    frame = Image.new("RGB", (640, 480), (96, 104, 112))
    with Image.open(CAMERA_PHOTO) as photo:
        frame.paste(photo, ((640 - photo.width) // 2, (480 - photo.height) // 2))
    path = folder / "camera.mjpeg"
    buffer = io.BytesIO()
    frame.save(buffer, format="JPEG", quality=92)
    path.write_bytes(buffer.getvalue() * 10)
    return path


@pytest.fixture(scope="module")
def browser(chromium_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium whose camera (granted without a prompt) shows CAMERA_PHOTO."""
    from playwright.sync_api import sync_playwright

    camera = fake_camera_file(tmp_path_factory.mktemp("camera"))
    args = [*CHROMIUM_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={camera}"]
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            yield launched
        finally:
            launched.close()


class Recorder:
    """Every request the page makes, with its body, and every page error."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.errors: list[str] = []

    def on_request(self, request: Any) -> None:
        self.requests.append({
            "method": request.method, "url": request.url,
            "headers": dict(request.headers), "body": request.post_data_buffer,
            "resource_type": request.resource_type,
        })


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[tuple[Any, Recorder]]:
    """A fresh page on the client with an empty gallery, models loaded, state 'ready'."""
    import httpx

    with httpx.Client(base_url=server + "/api/v1", timeout=10,
                      headers={"authorization": f"Bearer {KEYS['operator']}"}) as http:
        for record in http.get("/identities").json()["identities"]:
            http.delete(f"/identities/{quote(record['identity'], safe='')}").raise_for_status()
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    recorder = Recorder()
    page.on("request", recorder.on_request)
    page.on("pageerror", lambda e: recorder.errors.append(str(e)))
    page.goto(server + "/#key=" + KEYS["page"])
    assert "key=" not in page.url  # taken out of the address bar at once
    page.wait_for_function("document.getElementById('state').dataset.state !== 'loading'",
                           timeout=120_000)
    state = page.get_attribute("#state", "data-state")
    assert state == "ready", page.inner_text("#state")
    try:
        yield page, recorder
    finally:
        context.close()
