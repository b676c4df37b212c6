"""What the dashboard costs the head: its process's CPU with many replicas
(thread mode, over 2 workers), first with no dashboard, then with the
dashboard sampling, then with its deployment page open in headless Chromium
(the page polls the API every 2 s, its table holding every replica). Target:
the head's CPU rises by less than 5% of one core with 1,000 replicas.

    python bench/bench_dashboard.py [--quick] [--json FILE]
"""

from __future__ import annotations

import shutil
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors import serve  # noqa: E402
from actors.serve._api import current_session  # noqa: E402
from bench._apps import Noop  # noqa: E402
from bench._common import median, parse_args, print_table, write_json  # noqa: E402
from scripts.dashboard import Dashboard  # noqa: E402


def head_cpu_pct(seconds: float) -> float:
    """This process's CPU over ``seconds``, in % of one core."""
    me = psutil.Process()
    before, start = sum(me.cpu_times()[:2]), time.monotonic()
    time.sleep(seconds)  # a measuring window, not a synchronisation
    return 100 * (sum(me.cpu_times()[:2]) - before) / (time.monotonic() - start)


def open_page(url: str) -> tuple[Any, Any, str]:
    """The deployment page in headless Chromium, or (None, None, why not)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None, None, "playwright is not installed"
    if chromium is None:
        return None, None, "no chromium"
    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
    page = browser.new_page()
    page.goto(url)
    page.wait_for_function("document.querySelectorAll('#replicas tbody tr').length > 0", timeout=60_000)
    return playwright, browser, ""


def main() -> int:
    args = parse_args(__doc__.split("\n")[0])
    replicas, window, rounds = (300, 6.0, 1) if args.quick else (1000, 15.0, 3)
    serve.start(workers=2, http_options={"proxy_location": "Disabled"})
    dashboard = playwright = browser = None
    note = ""
    try:
        serve.run(Noop.options(num_replicas=replicas, max_ongoing_requests=1, isolation="thread").bind(),
                  name="big", route_prefix=None)
        time.sleep(2.0)  # let the start-up work settle before the first window
        idle = [head_cpu_pct(window) for _ in range(rounds)]
        dashboard = Dashboard(current_session(), "127.0.0.1", 0, "bench-key", {})
        url = dashboard.start()
        sampling = [head_cpu_pct(window) for _ in range(rounds)]
        playwright, browser, note = open_page(f"{url}/#/applications/big/Noop")
        if browser is None:  # the page's requests without a browser: the same API calls every 2 s
            note = f"{note}: polled the page's API instead"
        with_page = []
        for _ in range(rounds):
            if browser is None:
                stop = time.monotonic() + window
                me, before = psutil.Process(), sum(psutil.Process().cpu_times()[:2])
                while time.monotonic() < stop:
                    urllib.request.urlopen(f"{url}/api/applications/big/deployments/Noop", timeout=10).read()
                    time.sleep(2.0)
                with_page.append(100 * (sum(me.cpu_times()[:2]) - before) / window)
            else:
                with_page.append(head_cpu_pct(window))
        api_ms = []
        for _ in range(20):
            start = time.perf_counter()
            urllib.request.urlopen(f"{url}/api/applications/big/deployments/Noop", timeout=10).read()
            api_ms.append(1000 * (time.perf_counter() - start))
    finally:
        if browser is not None:
            browser.close()
        if playwright is not None:
            playwright.stop()
        if dashboard is not None:
            dashboard.stop()
        serve.shutdown()
    out: dict[str, float | int | str] = {
        "replicas": replicas,
        "head_cpu_pct_no_dashboard": round(median(idle), 2),
        "head_cpu_pct_dashboard_sampling": round(median(sampling), 2),
        "head_cpu_pct_dashboard_page_open": round(median(with_page), 2),
        "dashboard_cpu_rise_pct": round(median(with_page) - median(idle), 2),
        "api_deployment_ms_p50": round(median(api_ms), 2),
    }
    print_table(
        f"the head's CPU with {replicas} replicas (thread mode, 2 workers), % of one core, median of {rounds} x {window:.0f} s"
        + (f" ({note})" if note else ""),
        ["", "head CPU %"],
        [["no dashboard", f"{out['head_cpu_pct_no_dashboard']}"],
         ["dashboard sampling every 2 s", f"{out['head_cpu_pct_dashboard_sampling']}"],
         ["dashboard + deployment page open", f"{out['head_cpu_pct_dashboard_page_open']}"],
         ["rise (target < 5)", f"{out['dashboard_cpu_rise_pct']}"],
         [f"GET one deployment's API ({replicas} replicas), p50 ms", f"{out['api_deployment_ms_p50']}"]],
    )
    write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
