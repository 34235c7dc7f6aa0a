"""TensorBoard as a person sees it: each dashboard the README lists, opened in headless Chromium, must show the run's
data. Playwright drives Debian's `chromium` (no browser download); its locators see inside TensorBoard's shadow DOM.

Used by tests/test_tensorboard.py, and takes the README's screenshots from a real run's logs:

    python -m tools.screenshots logs --screenshots docs/images

With --screenshots it also writes screenshots.json beside them: the runs TensorBoard served, each run's epochs and
last validation accuracy, and each PNG's SHA-256, so that tests/test_docs.py can check the pictures are of the
committed run. Playwright comes with requirements-dev.txt only.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from fmnist import params
from fmnist.params.all_sections import AllParams
from fmnist.stage_runner import StageError, run_stage

try:
    from playwright.sync_api import FrameLocator, Page, expect, sync_playwright
except ImportError:  # only requirements-dev.txt installs it; --help still answers
    sync_playwright = None

CHROMIUM = shutil.which("chromium")
VIEWPORT = {"width": 1600, "height": 1000}
TIMEOUT_MS = 20_000  # per check: dashboards load their data after the page
if sync_playwright is not None:
    expect.set_options(timeout=TIMEOUT_MS)  # `expect` has its own default, 5 s: too short on a loaded 2-core machine


@contextlib.contextmanager
def serving(logdir: Path, port: int) -> Iterator[str]:
    """TensorBoard on logdir, once it answers; its URL."""
    tensorboard = [str(Path(sys.executable).parent / "tensorboard"), "--logdir", str(logdir)]
    server = subprocess.Popen(
        [*tensorboard, "--port", str(port), "--host", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/data/runs", timeout=5):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"tensorboard on {logdir} did not start") from None
                time.sleep(0.3)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


@contextlib.contextmanager
def browser_page() -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def visible_text(page: Page | FrameLocator, text: str, selector: str | None = None):
    """The first visible element (of selector's, if given) that shows text, once there (fails after TIMEOUT_MS).

    Visible matters: TensorBoard keeps dashboards visited before in the page, hidden."""
    candidates = page.locator(selector, has_text=text) if selector else page.get_by_text(text)
    found = candidates.filter(visible=True).first
    expect(found).to_be_visible()
    return found


def image_loaded(page: Page, selector: str) -> None:
    """An <img> that the browser fetched and decoded (naturalWidth > 0), not a broken image."""
    image = page.locator(selector).filter(visible=True).first
    expect(image).to_be_visible()
    page.wait_for_function("image => image.complete && image.naturalWidth > 0", arg=image.element_handle())


def coloured(shot: np.ndarray) -> np.ndarray:
    """Pixels in colour: TensorBoard draws runs' lines and histograms in colour, its frames and text in gray."""
    return shot.max(axis=-1) - shot.min(axis=-1) > 60


def gray(shot: np.ndarray) -> np.ndarray:
    """Gray pixels short of white: the projector's sprites, not its coloured axes or white background."""
    return (shot.max(axis=-1) - shot.min(axis=-1) < 8) & (shot.min(axis=-1) < 200)


def drawn_pixels(
    page: Page | FrameLocator, selector: str, kind: Callable[[np.ndarray], np.ndarray], minimum: int
) -> int:
    """How many pixels of the first visible element's screenshot are of kind, once at least minimum are: charts
    draw after their data loads. Fails after TIMEOUT_MS with how many there were."""
    element = page.locator(selector).filter(visible=True).first
    expect(element).to_be_visible()
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while True:
        shot = np.asarray(Image.open(io.BytesIO(element.screenshot())).convert("RGB")).astype(int)
        count = int(kind(shot).sum())
        if count >= minimum:
            return count
        assert time.monotonic() < deadline, f"{selector}: nothing drawn ({count} {kind.__name__} pixels)"
        time.sleep(0.25)


# Each dashboard's check: what a person looks for, read from the page (text inside the shadow DOM, loaded images,
# pixels drawn by a chart). Each returns what it saw, for the test's message.

# Coloured pixels that make a drawn line or histogram (a run's colour chip alone is not in the chart). Measured: 0
# before the data loads; 155 for the tests' 2-epoch accuracy chart, whose lines end on the frame at 1.0.
CHART = 100


def check_scalars(page: Page) -> str:
    visible_text(page, "epoch_accuracy")
    visible_text(page, "epoch_images_per_second")
    drawn = drawn_pixels(page, "tf-scalar-card vz-line-chart2", coloured, CHART)
    return f"epoch_accuracy and epoch_images_per_second cards, {drawn} coloured pixels in the first chart"


def check_histograms(page: Page) -> str:
    visible_text(page, "bn_1/gamma/histogram")
    drawn = drawn_pixels(page, "vz-histogram-timeseries", coloured, CHART)
    return f"bn_1/gamma/histogram, {drawn} coloured pixels in the first chart"


def check_distributions(page: Page) -> str:
    visible_text(page, "bn_1/beta/histogram")
    drawn = drawn_pixels(page, "vz-distribution-chart", coloured, CHART)
    return f"bn_1/beta/histogram, {drawn} coloured pixels in the first chart"


def check_images(page: Page) -> str:
    visible_text(page, "sample_inputs")
    visible_text(page, "confusion_matrix")
    image_loaded(page, "img")
    return "sample_inputs and confusion_matrix, images decoded"


def check_text(page: Page) -> str:
    visible_text(page, "(Conv2D)")
    return "the model summary"


def check_hparams(page: Page) -> str:
    visible_text(page, "learning_rate")
    visible_text(page, "test_accuracy")
    visible_text(page, "flip", "tf-hparams-table-view")  # the run's row: train.augment's value
    return "learning_rate and test_accuracy columns, the run's row"


def graph_node(page: Page, name: str):
    """The visible graph node labelled exactly name (a label's text holds its name twice: <title> and text)."""
    label = page.locator("svg text.nodelabel").filter(has_text=re.compile(rf"^(?:{re.escape(name)})+$"))
    found = label.filter(visible=True).first
    expect(found).to_be_visible()
    return found


def check_graphs(page: Page) -> str:
    """The op graph (the model as one expandable group of ops), then the conceptual graph expanded to its layers."""
    model = params.load(AllParams).train.model  # the run's architecture names the graph's top group
    graph_node(page, "pixels")
    op_graph_model = page.locator("svg text.nodelabel", has_text=model).filter(visible=True)
    expect(op_graph_model).to_have_count(1)  # named e.g. conv3_bn_1 (TensorFlow's name scope for the traced call)
    page.locator("paper-dropdown-menu").filter(visible=True).nth(1).click()  # Tag: Default (ops) or keras
    visible_text(page, "keras", "paper-item").click()
    visible_text(page, "Conceptual graph", "paper-radio-button").click()
    graph_node(page, model).dblclick(force=True)  # expand; the node's shape over the label takes clicks
    for layer in ("conv_1", "pool_1", "bn_1", "relu_1", "conv_2", "flatten", "dense", "classifier"):
        graph_node(page, layer)
    return "op graph, and the conceptual graph's layers conv_1 ... classifier"


def check_pr_curves(page: Page) -> str:
    visible_text(page, "T-shirt/top")  # the first chart's title: the class's own name
    groups = page.get_by_text(re.compile(r"^\d_\S[^/]*$")).filter(visible=True)  # 0_T-shirt-top ... 9_Ankle boot
    expect(groups).to_have_count(10)
    drawn = drawn_pixels(page, "tf-pr-curve-card vz-line-chart2", coloured, CHART)
    return f"a precision-recall chart per class, 0_T-shirt-top ... 9_Ankle boot; {drawn} coloured pixels in the first"


def check_projector(page: Page) -> str:
    """The test set's points, drawn as their images: the projector (an iframe in an iframe) fetches the sprite."""
    with page.expect_response(lambda response: "/sprite_image?" in response.url) as sprite:
        page.reload()  # to catch the sprite's request from the start
    assert sprite.value.ok and sprite.value.headers["content-type"] == "image/png", sprite.value
    projector = page.frame_locator('iframe[src*="name=projector"]').frame_locator('iframe[src*="projector_binary"]')
    visible_text(projector, "Dimension: 256")  # the dense layer's 256 outputs
    points = visible_text(projector, "Points:").inner_text().strip()
    page.wait_for_timeout(1000)  # the sprites are drawn after the points
    drawn = drawn_pixels(projector, "#scatter", gray, 100)
    return f"{points}, the sprite fetched, {drawn} gray pixels drawn"


DASHBOARDS: dict[str, Callable[[Page], str]] = {
    "scalars": check_scalars,
    "histograms": check_histograms,
    "distributions": check_distributions,
    "images": check_images,
    "text": check_text,
    "hparams": check_hparams,
    "graphs": check_graphs,
    "pr_curves": check_pr_curves,
    "projector": check_projector,
}


def check_dashboards(url: str, screenshots: Path | None = None) -> dict[str, str]:
    """Open each dashboard, check it shows the run's data; save a PNG of each into screenshots if given."""
    seen = {}
    with browser_page() as page:
        for name, check in DASHBOARDS.items():
            page.goto(f"{url}/#{name}")
            seen[name] = check(page)
            if screenshots is not None:
                page.screenshot(path=screenshots / f"tensorboard-{name.replace('_', '-')}.png")
    return seen


def served_runs(url: str) -> dict[str, dict[str, object]]:
    """Each run TensorBoard serves, with its epochs (steps of `epoch_accuracy`) and last validation accuracy."""

    def get(path: str) -> object:
        with urllib.request.urlopen(url + path, timeout=30) as response:
            return json.load(response)

    runs = {}
    for run in sorted(get("/data/runs")):
        try:
            points = get(f"/data/plugin/scalars/scalars?run={urllib.parse.quote(run)}&tag=epoch_accuracy")
        except urllib.error.HTTPError:  # a run without that tag (evaluate, timing)
            points = []
        runs[run] = {"epochs": len(points), "last_epoch_accuracy": round(points[-1][2], 4) if points else None}
    return runs


def write_manifest(url: str, screenshots: Path) -> Path:
    shots = sorted(screenshots.glob("tensorboard-*.png"))
    manifest = {
        "runs": served_runs(url),
        "sha256": {shot.name: hashlib.sha256(shot.read_bytes()).hexdigest() for shot in shots},
    }
    path = screenshots / "screenshots.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logdir", type=Path)
    parser.add_argument("--screenshots", type=Path, help="folder for one PNG per dashboard, and screenshots.json")
    parser.add_argument("--port", type=int, default=6016)
    args = parser.parse_args()
    if sync_playwright is None:
        raise StageError("tools.screenshots needs Playwright: pip install --require-hashes -r requirements-dev.txt")
    with serving(args.logdir, args.port) as url:
        for name, seen in check_dashboards(url, args.screenshots).items():
            print(f"{name}: {seen}")
        if args.screenshots is not None:
            print(f"wrote {write_manifest(url, args.screenshots)}")


if __name__ == "__main__":
    run_stage(main)
