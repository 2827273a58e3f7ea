"""The MLflow UI as a person sees a finished sweep: a real ``mlflow server`` on the sweep's
store, its runs page in headless Chromium (driven by Selenium and Debian's chromedriver).

What a person does and reads: open the experiment's runs ("Model training") page, find the
sweep's parent run ``<spec name> [<sweep id>]``, expand it (MLflow shows nested runs under a
"+" expander), see every trial's child run ``trial-00N ...``, add the metric columns with
"Columns" and read each trial's accuracy. A screenshot of that page is kept under
``test-output/mlflow-ui/``.

Chromium and chromedriver must be installed (``make test`` does it): the test FAILS, never
skips, without them.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.runtime.tracking import trial_run_name
from tests.service.conftest import free_port

# Run alone (-m browser), this test builds the session's finished sweep too: ~2.5 min here.
pytestmark = [pytest.mark.browser, pytest.mark.timeout(480)]

REPO = Path(__file__).resolve().parents[2]
OUTPUT_DIR = REPO / "test-output" / "mlflow-ui"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# The flags that work on these machines (closed network: no background connections).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=3840,1200",  # wide: the grid renders only the columns in view
)
WAIT_S = 60.0  # the React app loads its data by XHR; 2 shared cores can be slow


# -- an MLflow server ----------------------------------------------------------------------


@contextmanager
def mlflow_server(tracking_uri: str, workdir: Path, timeout_s: float = 90.0) -> Iterator[str]:
    """``mlflow server`` on ``tracking_uri`` and a free port; its base URL until SIGTERM."""
    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    log_path = workdir / "mlflow-server.log"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [
        str(mlflow),
        "server",
        "--backend-store-uri",
        tracking_uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    with log_path.open("wb") as log:
        # Its own session: SIGTERM reaches the server and the workers it starts.
        process = subprocess.Popen(
            command,
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                pytest.fail(f"mlflow server exited ({process.returncode}):\n{_tail(log_path)}")
            try:
                if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server: no /health in {timeout_s:.0f} s:\n{_tail(log_path)}")
            time.sleep(0.5)
        yield url
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# -- a browser -----------------------------------------------------------------------------


@contextmanager
def chromium(profile_dir: Path) -> Iterator[Any]:
    """Headless Debian Chromium under Selenium, with a fresh profile; no driver downloads."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not found: make test installs it "
            "(apt-get install chromium chromium-driver)",
            pytrace=False,
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail(
            "selenium is not installed: `make install` installs the dev extra", pytrace=False
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    # Both paths given and SE_OFFLINE: Selenium Manager never tries to download a driver.
    offline = os.environ.get("SE_OFFLINE")
    os.environ["SE_OFFLINE"] = "true"
    try:
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    finally:
        if offline is None:
            del os.environ["SE_OFFLINE"]
        else:
            os.environ["SE_OFFLINE"] = offline
    try:
        yield driver
    finally:
        driver.quit()


# -- what a person does on the runs page ---------------------------------------------------


def runs_page_url(base_url: str, experiment_id: str) -> str:
    """The experiment's runs table; MLflow 3 opens the GenAI overview unless told otherwise."""
    return f"{base_url}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def run_link(name: str) -> tuple[str, str]:
    return ("xpath", f"//a[normalize-space()={_xpath_literal(name)}]")


def _xpath_literal(text: str) -> str:
    if "'" not in text:
        return f"'{text}'"
    parts = text.split("'")
    return "concat(" + ', "\'", '.join(f"'{part}'" for part in parts) + ")"


def expected_children(sweep: Any) -> dict[str, Any]:
    """Child run name -> the trial's record, as the tracker names them."""
    return {
        trial_run_name(record.number, record.params): record
        for record in sorted(sweep.outcome.trials.values(), key=lambda r: r.number)
    }


def metric_cell_value(driver: Any, row_id: str, metric: str) -> float:
    """The number shown in ``metric``'s column of the row ``row_id``."""
    from selenium.webdriver.common.by import By

    cell = driver.find_element(
        By.XPATH, f"//div[@role='row' and @row-id='{row_id}']//div[@col-id='metrics.`{metric}`']"
    )
    text = cell.text.strip()
    try:
        return float(text)
    except ValueError:
        pytest.fail(f"{metric} of run {row_id}: the UI shows {text!r}, not a number")


def check_runs_page(driver: Any, base_url: str, sweep: Any, screenshot: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as visible
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, WAIT_S)
    objective = sweep.spec.objective.metric
    parent_name = f"{sweep.spec.name} [{sweep.sweep_id}]"
    children = expected_children(sweep)
    assert children, "the finished sweep has no trials"

    driver.get(runs_page_url(base_url, sweep.outcome.mlflow_experiment_id))
    parent = wait.until(visible.visibility_of_element_located(run_link(parent_name)))
    # The assistant side panel takes a third of the page: close it when it is there.
    for close in driver.find_elements(
        By.CSS_SELECTOR, "button[data-component-id='mlflow.assistant.chat_panel.close']"
    ):
        close.click()

    # Nested runs hide under their parent: the "+" button left of the parent's name.
    parent_row = parent.find_element(By.XPATH, "./ancestor::div[@role='row']")
    assert parent_row.get_attribute("row-id") == sweep.outcome.mlflow_run_id
    first_child = next(iter(children))
    if not driver.find_elements(*run_link(first_child)):
        parent_row.find_element(By.TAG_NAME, "button").click()
    child_rows: dict[str, str] = {}
    for name in children:
        link = wait.until(visible.visibility_of_element_located(run_link(name)))
        row = link.find_element(By.XPATH, "./ancestor::div[@role='row']")
        child_rows[name] = str(row.get_attribute("row-id"))
    assert len(set(child_rows.values())) == len(children)

    # Metrics are not columns by default: "Columns", tick the "Metrics (N)" group.
    driver.find_element(By.XPATH, "//button[normalize-space()='Columns']").click()
    metrics_group = wait.until(
        visible.element_to_be_clickable(
            (
                By.XPATH,
                "//span[starts-with(@title, 'Metrics (')]"
                "/preceding-sibling::span[contains(@class, 'tree-checkbox')]",
            )
        )
    )
    metrics_group.click()
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    wait.until(
        visible.visibility_of_element_located(
            (By.XPATH, f"//div[@role='columnheader'][normalize-space()='{objective}']")
        )
    )
    _widen_run_names(driver)
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(screenshot))

    # Each trial's row shows its last epoch's objective, as the sweep recorded it.
    shown = 0
    for name, record in children.items():
        if objective in record.last and math.isfinite(record.last[objective]):
            value = metric_cell_value(driver, child_rows[name], objective)
            assert value == record.last[objective], f"{name}: {objective} shown {value}"
            shown += 1
    assert shown, f"no trial has a finite {objective} to show"
    best = sweep.outcome.best
    if best is not None:
        value = metric_cell_value(driver, sweep.outcome.mlflow_run_id, f"best_{objective}")
        assert value == best["value"]


def _widen_run_names(driver: Any) -> None:
    """Drag the Run Name column wider so the screenshot shows the trials' params (cosmetic)."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    try:
        handle = driver.find_element(
            By.CSS_SELECTOR,
            "div[role='columnheader'][col-id='attributes.`Run Name`'] .ag-header-cell-resize",
        )
        ActionChains(driver).drag_and_drop_by_offset(handle, 260, 0).perform()
    except WebDriverException:
        pass


# -- the test ------------------------------------------------------------------------------


@pytest.fixture
def mlflow_ui(finished_sweep: Any, tmp_path: Path) -> Iterator[str]:
    with mlflow_server(finished_sweep.tracking_uri, tmp_path) as url:
        yield url


def test_finished_sweep_reads_in_the_mlflow_ui(
    finished_sweep: Any, mlflow_ui: str, tmp_path: Path
) -> None:
    screenshot = OUTPUT_DIR / "runs-expanded.png"
    with chromium(tmp_path / "chromium-profile") as driver:
        try:
            check_runs_page(driver, mlflow_ui, finished_sweep, screenshot)
        except BaseException:
            OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(OUTPUT_DIR / "failure.png"))
            (OUTPUT_DIR / "failure.html").write_text(driver.page_source)
            print(f"page at failure: {OUTPUT_DIR / 'failure.png'}, {OUTPUT_DIR / 'failure.html'}")
            raise
    print(f"screenshot: {screenshot}")
