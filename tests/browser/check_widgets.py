"""Every widget of lessons 01-03, used in a real browser: JupyterLab + headless Chromium.

Starts JupyterLab on 127.0.0.1 (a free port, a random token) over a temporary copy of the
lessons, opens lessons 01, 02 and 03 in headless Chromium (Playwright driving Debian's
``chromium``; no browser download), runs all cells, then changes every widget control through
the browser: drags each slider, picks another dropdown entry, types into each number box and
presses every button. After each change it waits for the widget's figure to be drawn again and
asserts that the figure changed, is loaded (natural size not 0), is the only figure of the
widget, and is not blank (pixel spread of the decoded image and of what is on screen). The RF
calculators' buttons are also pressed ``--repeat`` more times each. Any error or stderr output in
a lesson fails the check. Failures are one line each: lesson, cell, control, what went wrong.

    make browser-check        # or: python tests/browser/check_widgets.py [--repeat 10]

Needs ``chromium`` (apt-get install -y chromium) and ``playwright`` (pip install playwright).
The lessons run in fast mode (COURSE_FAST=1) unless --full. Exit status 0 only if all passed.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LESSONS = ("01", "02", "03")
CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
STEP_TIMEOUT_S = 30  # one control change until its figure is drawn again
RUN_ALL_TIMEOUT_S = 600  # one lesson, Run All
MIN_STD = 8.0  # pixel spread (0-255 grey levels) below which a figure counts as blank


DEBUG_DIR: Path | None = None  # where a failure leaves a page screenshot and the figures


class CheckFailed(AssertionError):
    pass


# ---------------------------------------------------------------- server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(workdir: Path, full: bool) -> tuple[subprocess.Popen, str, str]:
    """JupyterLab over ``workdir``, on 127.0.0.1 with a free port and a random token."""
    port, token = _free_port(), secrets.token_hex(16)
    settings = workdir / ".settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # no news or update toasts over the cells
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(
        NO_ALBUMENTATIONS_UPDATE="1",
        JUPYTERLAB_SETTINGS_DIR=str(workdir / ".settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(workdir / ".workspaces"),
        JUPYTER_RUNTIME_DIR=str(workdir / ".runtime"),
    )
    env.pop("MPLBACKEND", None)  # the kernel's inline backend, as for a student
    if full:
        env.pop("COURSE_FAST", None)
    else:
        env["COURSE_FAST"] = "1"
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={workdir}",
        "--LabApp.expose_app_in_browser=True", "--LabApp.extension_manager=readonly",
        "--ServerApp.terminals_enabled=False",
    ]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers and CI runners
        cmd.append("--allow-root")
    log = open(workdir / "jupyterlab.log", "w")  # noqa: SIM115  (closed with the process)
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CheckFailed(f"JupyterLab exited at start; see {workdir / 'jupyterlab.log'}")
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                return proc, base, token
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise CheckFailed("JupyterLab did not answer within 90 s")


def copy_lessons(workdir: Path, lessons=LESSONS) -> list[str]:
    (workdir / "lessons").mkdir()
    names = []
    for nb in sorted((ROOT / "lessons").glob("*.ipynb")):
        if nb.name[:2] in lessons:
            shutil.copy(nb, workdir / "lessons" / nb.name)
            names.append(nb.name)
    (workdir / "data").symlink_to(ROOT / "data")  # lessons read ../data/checkpoints
    return names


# ---------------------------------------------------------------- page helpers

JS_PANEL = "window.jupyterapp.shell.currentWidget"

JS_OPENED = f"""() => {{
  const p = window.jupyterapp && {JS_PANEL};
  return !!(p && p.content && p.context && p.context.isReady && p.sessionContext.session
            && p.sessionContext.session.kernel && p.sessionContext.session.kernel.status === 'idle');
}}"""

JS_RUN_ALL = f"""async () => {{
  const app = window.jupyterapp, p = {JS_PANEL};
  await app.commands.execute('notebook:clear-all-cell-outputs');
  await app.commands.execute('notebook:run-all-cells');
  return true;
}}"""

JS_DONE = f"""() => {{
  const p = {JS_PANEL}, k = p.sessionContext.session.kernel;
  const cells = Array.from(p.content.model.cells);
  const code = cells.filter(c => c.type === 'code');
  // Run All stops at the first error: then the remaining cells never run, so stop waiting.
  const failed = code.some(c => c.outputs.toJSON().some(o => o.output_type === 'error'));
  return k.status === 'idle' && (failed || code.every(c => c.executionCount !== null));
}}"""

JS_OUTPUTS = f"""() => {{
  const p = {JS_PANEL};
  return Array.from(p.content.model.cells).map(c => c.type === 'code' ? c.outputs.toJSON() : []);
}}"""

JS_SHOW_CELL = f"""async (i) => {{
  const nb = {JS_PANEL}.content;
  nb.activeCellIndex = i;
  await nb.scrollToItem(i, 'start');
  const node = nb.widgets[i].node;
  node.setAttribute('data-wcheck', String(i));
  return true;
}}"""

# The figures inside one widget cell: how many, and for the newest one its src, whether it is
# decoded, its natural and rendered sizes, and the grey-level spread of its pixels.
JS_FIGURES = """(cell) => {
  const imgs = Array.from(cell.querySelectorAll('.jp-OutputArea-output img'));
  const out = {count: imgs.length, text: ''};
  const area = cell.querySelector('.jp-OutputArea-output .widget-output, .jp-OutputArea-output');
  out.text = area ? area.innerText : '';
  out.errors = cell.querySelectorAll(
    '[data-mime-type="application/vnd.jupyter.stderr"], [data-mime-type="application/vnd.jupyter.error"]'
  ).length;
  if (!imgs.length) return out;
  const img = imgs[imgs.length - 1];
  out.fresh = imgs.filter(i => !i.dataset.old).length;
  out.src = img.src;
  out.complete = img.complete;
  out.natural = [img.naturalWidth, img.naturalHeight];
  const r = img.getBoundingClientRect();
  out.shown = [r.width, r.height];
  out.std = null;
  if (img.complete && img.naturalWidth > 0) {
    const c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const g = c.getContext('2d');
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let s = 0, s2 = 0, n = 0;
    for (let i = 0; i < d.length; i += 4) {
      const v = (d[i] + d[i + 1] + d[i + 2]) / 3; s += v; s2 += v * v; n++;
    }
    const m = s / n; out.std = Math.sqrt(Math.max(s2 / n - m * m, 0));
  }
  return out;
}"""

JS_MARK_OLD = """(cell) => {
  cell.querySelectorAll('.jp-OutputArea-output img').forEach(i => { i.dataset.old = '1'; });
}"""


def _screen_std(locator) -> float:
    """Grey-level spread of what the browser shows for ``locator`` (a screenshot)."""
    import numpy as np
    from PIL import Image

    png = locator.screenshot(timeout=STEP_TIMEOUT_S * 1000)
    return float(np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float).std())


class WidgetCell:
    """One widget cell of an open notebook, with the checks run after each control change."""

    def __init__(self, page, lesson: str, index: int) -> None:
        self.page, self.lesson, self.index = page, lesson, index
        self.steps = 0

    def show(self):
        self.page.evaluate(JS_SHOW_CELL, self.index)
        cell = self.page.locator(f'[data-wcheck="{self.index}"]')
        cell.scroll_into_view_if_needed(timeout=STEP_TIMEOUT_S * 1000)
        return cell

    @property
    def cell(self):
        return self.page.locator(f'[data-wcheck="{self.index}"]')

    def fail(self, control: str, why: str):
        if DEBUG_DIR:  # what the page showed, for a human to look at
            tag = f"{self.lesson}-cell{self.index}"
            self.page.screenshot(path=str(DEBUG_DIR / f"{tag}-page.png"))
            src = self.cell.evaluate(
                "c => Array.from(c.querySelectorAll('.jp-OutputArea-output img')).map(i => i.src)"
            )
            for k, uri in enumerate(src):
                if uri.startswith("data:image/png;base64,"):
                    png = base64.b64decode(uri.split(",", 1)[1])
                    (DEBUG_DIR / f"{tag}-figure{k}.png").write_bytes(png)
        raise CheckFailed(f"lesson {self.lesson}, cell {self.index}, control '{control}': {why}")

    def figures(self) -> dict:
        return self.cell.evaluate(JS_FIGURES)

    def change(self, control: str, action, expect: str = "new", text: str | None = None):
        """Run ``action`` (one control change in the browser) and check the figure after it.

        ``expect``: "new" (a different, non-blank figure), "redrawn" (drawn again, same
        picture allowed) or "none" (no figure; ``text`` in the output).
        """
        before = self.figures()
        self.cell.evaluate(JS_MARK_OLD)
        action()
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while True:
            self.page.wait_for_timeout(200)
            now = self.figures()
            if expect == "none":
                ok = now["count"] == 0 and (text is None or text in now["text"])
            else:
                ok = now.get("fresh", 0) >= 1 and now["complete"] and now["std"] is not None
                if expect == "new":
                    ok = ok and now["src"] != before.get("src")
            if ok:
                break
            if time.monotonic() > deadline:
                what = {
                    "none": f"the figure did not go away (or no {text!r})",
                    "new": "no new figure",
                    "redrawn": "the figure was not drawn again",
                }[expect]
                self.fail(control, f"{what} within {STEP_TIMEOUT_S} s (now: {_brief(now)})")
        # let every message of this change arrive, then judge what stays on screen
        self.page.wait_for_function(JS_DONE, timeout=STEP_TIMEOUT_S * 1000)
        self.page.wait_for_timeout(400)
        now = self.figures()
        if now["errors"]:
            self.fail(control, f"error output in the widget: {now['text'][-300:]!r}")
        if expect != "none":
            self.check_figure(control, now)
        self.steps += 1

    def check_figure(self, control: str, now: dict):
        if now["count"] != 1:
            self.fail(control, f"{now['count']} figures in the widget, expected 1")
        if not now["fresh"]:
            self.fail(control, "the new figure was replaced by an old one")
        if not now["complete"] or min(now["natural"]) == 0:
            self.fail(control, f"figure not decoded (natural size {now['natural']})")
        if now["std"] < MIN_STD:
            self.fail(control, f"blank figure (pixel spread {now['std']:.1f})")
        w, h = now["natural"]
        shown_w, shown_h = now["shown"]
        if shown_w < 10 or shown_h < 0.9 * shown_w * h / w:
            self.fail(control, f"figure shown at {shown_w:.0f}x{shown_h:.0f} px, cut off")
        img = self.cell.locator(".jp-OutputArea-output img").last
        std = _screen_std(img)
        if std < MIN_STD:
            self.fail(control, f"the figure on screen is blank (pixel spread {std:.1f})")

    # ------------------------------------------------------------ controls

    def slider_labels(self) -> list[str]:
        return self.cell.locator(".widget-slider .widget-label").all_inner_texts()

    def drag_slider(self, label: str):
        slider = (
            self.cell.locator(".widget-slider")
            .filter(has=self.page.locator(".widget-label", has_text=label))
            .first
        )
        track = slider.locator(".noUi-target").first
        handle = slider.locator(".noUi-handle").first
        readout = slider.locator(".widget-readout").first
        old = readout.inner_text()

        def action():
            handle.scroll_into_view_if_needed()
            t, h = track.bounding_box(), handle.bounding_box()
            x0, y0 = h["x"] + h["width"] / 2, h["y"] + h["height"] / 2
            frac = (x0 - t["x"]) / max(t["width"], 1)
            x1 = t["x"] + t["width"] * (0.2 if frac > 0.5 else 0.8)
            self.page.mouse.move(x0, y0)
            self.page.mouse.down()
            self.page.mouse.move((x0 + x1) / 2, y0, steps=4)
            self.page.mouse.move(x1, y0, steps=4)
            self.page.mouse.up()

        self.change(f"slider {label}", action)
        if readout.inner_text() == old:
            self.fail(f"slider {label}", f"dragging did not change the value ({old})")

    def pick(self, label: str, option: str, expect: str = "new"):
        select = (
            self.cell.locator(".widget-dropdown")
            .filter(has=self.page.locator(".widget-label", has_text=label))
            .locator("select")
        )
        self.change(
            f"dropdown {label}={option}", lambda: select.select_option(label=option), expect
        )

    def select_only(self, label: str, option: str):
        """Pick a dropdown entry that does not redraw by itself (the calculator's layer kind)."""
        select = (
            self.cell.locator(".widget-dropdown")
            .filter(has=self.page.locator(".widget-label", has_text=label))
            .locator("select")
        )
        select.select_option(label=option)

    def type_number(self, label: str, value: int):
        box = (
            self.cell.locator(".widget-text")
            .filter(has=self.page.locator(".widget-label", has_text=label))
            .locator("input")
        )
        box.fill(str(value))
        box.press("Enter")
        self.page.wait_for_timeout(100)
        if box.input_value() != str(value):
            self.fail(f"box {label}", f"typed {value}, the box shows {box.input_value()}")

    def press(self, label: str, expect: str = "new", text: str | None = None, name=None):
        button = self.cell.locator("button", has_text=label).first
        self.change(name or f"button {label}", button.click, expect, text)


def _brief(fig: dict) -> str:
    keys = ("count", "fresh", "complete", "natural", "shown", "std")
    return ", ".join(f"{k} {fig.get(k)}" for k in keys) + f", text {fig.get('text', '')[-80:]!r}"


# ---------------------------------------------------------------- per widget


def check_explorer(w: WidgetCell) -> list[str]:
    """Any ``interactive`` widget: drag every slider, pick another entry in every dropdown."""
    done = []
    for select in w.cell.locator(".widget-dropdown").all():
        label = select.locator(".widget-label").inner_text()
        options = select.locator("option").all_inner_texts()
        current = select.locator("select").input_value()
        other = next(o for o in reversed(options) if o != current)
        w.pick(label, other)
        done.append(f"dropdown {label}")
    for label in w.slider_labels():
        w.drag_slider(label)
        done.append(f"slider {label}")
    return done


def check_calculator(w: WidgetCell, repeat: int) -> list[str]:
    """The RF calculator: every box, the dropdown and every button, then ``repeat`` clicks more."""
    w.press("Remove last")
    w.type_number("input", 128)
    w.press("Add layer", name="box input=128, then Add layer")
    for label, value in (("kernel", 5), ("stride", 2), ("padding", 2), ("dilation", 2)):
        w.type_number(label, value)
        w.press("Add layer", name=f"box {label}={value}, then Add layer")
    w.select_only("layer", "maxpool")
    w.press("Add layer", name="dropdown layer=maxpool, then Add layer")
    w.press("Clear", expect="none", text="No layers yet")
    w.select_only("layer", "conv")
    for label, value in (("kernel", 3), ("stride", 1), ("padding", 1), ("dilation", 1)):
        w.type_number(label, value)
    w.press("Add layer", name="Add layer after Clear")
    w.press("Add layer", name="Add layer (2nd)")
    for i in range(repeat):
        w.press("Add layer", name=f"Add layer (repeat {i + 1})")
        w.press("Remove last", name=f"Remove last (repeat {i + 1})")
    return ["button Remove last", "box input", "box kernel", "box stride", "box padding",
            "box dilation", "dropdown layer", "button Add layer", "button Clear"]  # fmt: skip


def check_lesson(browser, base: str, token: str, name: str, repeat: int) -> list[str]:
    lesson = name[:2]
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{base}/lab/tree/lessons/{name}?token={token}", timeout=120_000)
        page.wait_for_function(JS_OPENED, timeout=120_000, polling=500)
        page.evaluate(JS_RUN_ALL)
        page.wait_for_function(JS_DONE, timeout=RUN_ALL_TIMEOUT_S * 1000, polling=500)
        outputs = page.evaluate(JS_OUTPUTS)
        sources = [
            "".join(c["source"]) for c in json.loads((ROOT / "lessons" / name).read_text())["cells"]
        ]
        for i, outs in enumerate(outputs):
            for o in outs:
                body = o.get("evalue") or "".join(o.get("text", ""))
                # as tests/test_lessons.py: a pitfall cell that says a warning follows may show one
                on_purpose = "warn" in sources[i].lower() and "Warning" in body
                stderr = o["output_type"] == "stream" and o.get("name") == "stderr"
                if o["output_type"] == "error" or (stderr and not on_purpose):
                    raise CheckFailed(f"lesson {lesson}, cell {i}: error output: {body[:200]!r}")
        cells = [i for i, outs in enumerate(outputs) if any(WIDGET_MIME in o.get("data", {})
                                                            for o in outs)]  # fmt: skip
        if not cells:
            raise CheckFailed(f"lesson {lesson}: no widget output after Run All")
        report = []
        for i in cells:
            w = WidgetCell(page, lesson, i)
            w.show()
            w.cell.locator(".jp-OutputArea-output img").first.wait_for(timeout=60_000)
            first = w.figures()
            w.check_figure("(first drawing)", first)
            calculator = w.cell.locator("button", has_text="Add layer").count() > 0
            done = check_calculator(w, repeat) if calculator else check_explorer(w)
            report.append(f"lesson {lesson}, cell {i}: {w.steps} changes OK ({', '.join(done)})")
        page.evaluate(f"() => {JS_PANEL}.sessionContext.shutdown()")
        return report
    finally:
        page.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repeat", type=int, default=10, help="extra Add/Remove clicks per calculator"
    )
    parser.add_argument(
        "--full", action="store_true", help="run the lessons in full, not fast, mode"
    )
    parser.add_argument("--lessons", nargs="+", default=list(LESSONS), help="e.g. 02 03")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("browser-check: needs playwright (pip install playwright)", file=sys.stderr)
        return 2
    if not Path(CHROMIUM).exists():
        print(f"browser-check: needs chromium at {CHROMIUM} (apt-get install -y chromium)",
              file=sys.stderr)  # fmt: skip
        return 2

    start = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="widget-check-"))
    names = copy_lessons(workdir, args.lessons)
    global DEBUG_DIR
    DEBUG_DIR = workdir
    proc, base, token = None, "", ""
    lines, failure = [], None
    try:
        proc, base, token = start_lab(workdir, args.full)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
            )
            try:
                for name in names:
                    t = time.monotonic()
                    lines += check_lesson(browser, base, token, name, args.repeat)
                    print(f"lesson {name[:2]}: passed in {time.monotonic() - t:.0f} s", flush=True)
            finally:
                browser.close()
    except CheckFailed as exc:
        failure = str(exc)
    except Exception as exc:  # a timeout of Playwright, say: still one line, with its cause
        failure = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if not args.keep and failure is None:
            shutil.rmtree(workdir, ignore_errors=True)
    for line in lines:
        print(line)
    took = time.monotonic() - start
    if failure:
        print(f"FAIL {failure}")
        print(f"browser-check: FAILED after {took:.0f} s (kept {workdir})")
        return 1
    print(f"browser-check: all widgets of lessons {', '.join(args.lessons)} passed in {took:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
