"""Take the README's Dagster UI screenshots from a real run: `scripts/run.sh` on the demo catalog, the
operators' loop driven through the UI's GraphQL API (register, backfill, find a file, a failed build,
housekeeping), each page captured by headless Chromium (Debian's package).

    .venv/bin/python scripts/ui_screenshots.py [--out docs/images]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cfdb_assets.links import runs_url  # noqa: E402
from synthetic.demo import write_demo  # noqa: E402
from tests.cdp import Browser  # noqa: E402
from tests.e2e.dagster_ui import answers, backfill, launch  # noqa: E402
from tests.e2e.service import Service  # noqa: E402
from tests.helpers import wait_until  # noqa: E402

DISMISS = """(() => { const skip = [...document.querySelectorAll('button')].find(b => b.textContent.trim() === 'Skip');
  if (skip) skip.click(); return Boolean(skip) })()"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cfdb-shots-") as tmp:
        root = Path(tmp)
        service = Service(root, {"CFDB_CATALOG": str(write_demo(root / "catalog"))})
        service.start()
        try:
            shoot(service, args.out)
        finally:
            service.stop()


def shoot(service: Service, out: Path) -> None:
    base = f"http://127.0.0.1:{service.dagster_port}"
    with httpx.Client(base_url=base, timeout=60) as ui, Browser(width=1400, height=860) as browser:
        wait_until(lambda: answers(ui), "the Dagster webserver answers")
        browser.goto(f"{base}/overview", settle_s=3)
        browser.evaluate(DISMISS)  # the first-visit community dialog

        def page(name: str, path: str, settle_s: float = 4) -> None:
            browser.goto(base + path, settle_s=settle_s)
            print(browser.screenshot(out / f"{name}.png").relative_to(ROOT))

        page("01-register-launchpad", "/locations/cfdb_assets/jobs/register_catalog/playground")
        register, _ = launch(ui, "register_catalog", {"ops": {"register_files": {"config": {"dccs": ["encode"]}}}})
        page("02-register-run", f"/runs/{register}")
        backfill(ui, "encode_intervals")
        with service.client() as api:
            wait_until(lambda: api.get("/files/encode/ENCFF000BED").json()["state"] == "ready", "a ready file", 180)
            key = api.get("/files/encode/ENCFF000BED").json()["cache_key"]
        wait_until(lambda: _runs_ended(ui), "the backfill's runs end", 180)
        page("03-backfill-partitions", "/assets/encode/intervals/index?view=partitions")
        page("04-find-a-file", runs_url("", "ENCFF000BED"))
        page("05-asset-partition", f"/assets/encode/intervals/index?view=partitions&partition={key}")
        failed = _failed_run(ui)
        if failed:
            page("06-failed-run", f"/runs/{failed}")
        tidy, _ = launch(ui, "housekeeping", {})
        page("07-housekeeping-dry-run", f"/runs/{tidy}")


RUNS = """query { runsOrError(filter: {statuses: [QUEUED, NOT_STARTED, STARTING, STARTED]}) {
  ... on Runs { results { runId } } } }"""
FAILED = """query { runsOrError(filter: {statuses: [FAILURE]}) { ... on Runs { results { runId } } } }"""


def _runs_ended(ui: httpx.Client) -> bool:
    return not ui.post("/graphql", json={"query": RUNS}).json()["data"]["runsOrError"]["results"]


def _failed_run(ui: httpx.Client) -> str | None:
    results = ui.post("/graphql", json={"query": FAILED}).json()["data"]["runsOrError"]["results"]
    return results[0]["runId"] if results else None


if __name__ == "__main__":
    main()
