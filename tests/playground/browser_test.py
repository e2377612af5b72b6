"""The playground in a real Chromium (Debian's `chromium`, driven by
Playwright's Python client; no browser download): break a rule and see the
diagnostic at its line, fix it, pick a preset, decide, complete the step-up,
advance the clock, run the suite, save a test case and see `stepup test`
pass on it. Screenshots of the main states go to $STEPUP_SCREENSHOTS (run.sh
sets it to docs/src/playground/ with STEPUP_UPDATE_DOCS=1, else a temporary
directory, so a check run leaves the checkout clean).

Usage: python3 tests/playground/browser_test.py [path/to/stepup]
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

from playwright.sync_api import expect, sync_playwright

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHOTS = os.environ.get("STEPUP_SCREENSHOTS") or tempfile.mkdtemp(prefix="stepup-shots-")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
TIMEOUT = 15_000


def start(stepup, work):
    # A relative directory: the page shows `policies`, so the screenshots
    # do not change with the temporary directory's name.
    proc = subprocess.Popen(
        [stepup, "playground", "--policies", "policies", "--listen", "127.0.0.1:0", "--write"],
        stderr=subprocess.PIPE,
        text=True,
        cwd=work,
    )
    line = proc.stderr.readline().strip()
    m = re.match(r"stepup playground: (http://\S+)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"unexpected first line from the playground: {line!r}")
    return proc, m.group(1)


def shot(page, name):
    page.screenshot(path=os.path.join(SHOTS, f"{name}.png"))


def outcome(page, value):
    expect(page.locator("#outcome")).to_have_attribute("data-outcome", value, timeout=TIMEOUT)


def main():
    stepup = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "debug", "stepup")
    os.makedirs(SHOTS, exist_ok=True)
    work = tempfile.mkdtemp(prefix="stepup-playground-")
    policies = os.path.join(work, "policies")
    shutil.copytree(os.path.join(ROOT, "policies"), policies)
    stepup = os.path.abspath(stepup)
    proc, url = start(stepup, work)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 800}, color_scheme="light")
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(url)
            expect(page.locator("#problem-count")).to_have_text("0", timeout=TIMEOUT)
            page.locator("#now").fill("2026-11-27T10:00:00")

            # Break a rule: the diagnostic shows at its line and column, in
            # the gutter and in the problems list.
            page.locator('[role=tab][data-file="payments.yaml"]').click()
            editor = page.locator("#editor")
            text = editor.input_value()
            editor.fill(text.replace("resource.attributes.amount > 1000.0", "resource.atributes.amount > 1000.0"))
            problem = page.locator("#problems li").first
            expect(problem).to_contain_text("payments.yaml:12:21", timeout=TIMEOUT)
            expect(problem).to_contain_text("unknown-field")
            expect(page.locator("#gutter div").nth(11)).to_have_class("error")
            expect(page.locator("#marks .m-error")).to_have_text("atributes")
            shot(page, "diagnostic")

            # Fix it with the did-you-mean suggestion.
            problem.locator("button.fix", has_text="attributes").click()
            expect(page.locator("#problem-count")).to_have_text("0", timeout=TIMEOUT)
            assert "resource.attributes.amount > 1000.0" in editor.input_value()

            # A preset from the test cases: the large refund is challenged.
            label = "examples › a large refund from an unregistered phone asks for a fresh otp or security key"
            page.locator("#preset").select_option(label=label)
            outcome(page, "challenge")
            expect(page.locator("#www-authenticate")).to_contain_text('error="insufficient_user_authentication"')
            expect(page.locator("#decision")).to_contain_text("refund-large")
            shot(page, "challenge")

            # A rule id links to its source line.
            page.locator('#decision a.rule[data-rule="refund-large"]').first.click()
            expect(page.locator('[role=tab][aria-selected=true]')).to_have_attribute("data-file", "payments.yaml")

            # Costs show after each condition.
            expect(page.locator("#highlight .t-cost").first).to_contain_text("cost")

            # Complete the step-up as the identity provider would: ALLOW.
            expect(page.locator("#stepup")).to_be_visible()
            expect(page.locator("#stepup-level")).to_have_value("aal2")
            page.locator("#stepup-complete").click()
            outcome(page, "allow")
            assert '"urn:stepup:aal2"' in page.locator("#request").input_value()
            shot(page, "allow")

            # Six minutes on, past max_age (5m): CHALLENGE again.
            page.locator("#advance-6m").click()
            outcome(page, "challenge")

            # Back five minutes with the keyboard: Ctrl+Enter decides.
            page.locator("#auto").uncheck()
            page.locator("#now").fill("2026-11-27T10:04:00")
            page.keyboard.press("Control+Enter")
            outcome(page, "allow")
            page.locator("#auto").check()

            # History: ten refunds in the last hour on a small refund.
            page.locator("#preset").select_option(label="examples › a small refund is allowed")
            outcome(page, "allow")
            page.locator("#refund-count").fill("10")
            page.locator("#sim-refunds").click()
            outcome(page, "challenge")
            expect(page.locator("#decision")).to_contain_text("refund-burst")
            shot(page, "history")

            # Field names complete with Ctrl+Space.
            request = page.locator("#request")
            saved = request.input_value()
            request.fill('{"sess')
            request.press("End")
            request.press("Control+Space")
            assert request.input_value() == '{"session": ', request.input_value()
            request.fill('{"action": "x", "session": {"id": "s", "au')
            request.press("End")
            request.press("Control+Space")
            assert request.input_value().endswith('{"id": "s", "authTime": '), request.input_value()
            # The field names and types come from the proto (/api/v1/schema).
            request.fill('{"expl')
            request.press("End")
            request.press("Control+Space")
            assert request.input_value() == '{"explain": ', request.input_value()
            expect(page.locator("#field-list")).to_contain_text("explain (bool)")
            request.fill('{"action": "x", "sesion": {}, "device": {"trusted": "yes"}, "session": {"authTime": "today"}}')
            error = page.locator("#request-error")
            expect(error).to_contain_text("unknown field `sesion` (did you mean `session`?)", timeout=TIMEOUT)
            expect(error).to_contain_text('`device.trusted`: expected bool, got string "yes"')
            expect(error).to_contain_text("`session.authTime`: expected RFC 3339 timestamp")
            request.fill(saved)
            outcome(page, "challenge")

            # The suite passes.
            page.locator("#run-tests").click()
            expect(page.locator("#test-outcome")).to_have_attribute("data-failed", "0", timeout=TIMEOUT)
            # Cases ran: an empty run is no pass.
            expect(page.locator("#test-outcome")).to_have_text(re.compile(r"^[1-9][0-9]* passed, 0 failed$"))
            shot(page, "tests")

            # Save the scenario as a test case; `stepup test` passes on it.
            page.locator("#save-name").fill("ten refunds in an hour ask for a step-up")
            page.locator("#save-file").fill("playground_test.yaml")
            page.locator("#save-test").click()
            expect(page.locator("#save-status")).to_contain_text("Saved to playground_test.yaml", timeout=TIMEOUT)
            run = subprocess.run([stepup, "test", "--policies", policies], capture_output=True, text=True)
            assert run.returncode == 0, run.stdout + run.stderr
            assert "ten refunds in an hour ask for a step-up" in run.stdout, run.stdout

            # A trip from Berlin to Sydney in 45 minutes: impossible travel.
            page.locator("#sim-clear").click()
            outcome(page, "allow")
            page.locator("#sim-trip").click()
            outcome(page, "challenge")
            expect(page.locator("#history-count")).to_have_text("(1 events)")
            expect(page.locator('#decision a.rule[data-rule="impossible-travel"]').first).to_be_visible()
            expect(page.locator("#decision table").first).to_contain_text("impossible-travel")
            # Sydney is outside Alice's usual countries: that risk signal fired.
            expect(page.locator('#decision tr:has(td.bar-cell):has(a[data-rule="unusual-country"]) td.fired')).to_have_count(1)
            assert '"AU"' in request.input_value(), request.input_value()

            # Save the open policy file (valid: it is written).
            page.locator('[role=tab][data-file="payments.yaml"]').click()
            page.locator("#write-file").click()
            expect(page.locator("#file-status")).to_have_text("Saved payments.yaml.", timeout=TIMEOUT)

            # Keyboard: the tabs move with the arrow keys.
            page.locator('[role=tab][aria-selected=true]').focus()
            page.keyboard.press("ArrowRight")
            assert page.evaluate("document.activeElement.getAttribute('role')") == "tab"

            # Dark theme and a phone's width.
            page.emulate_media(color_scheme="dark")
            shot(page, "dark")
            page.set_viewport_size({"width": 390, "height": 844})
            page.emulate_media(color_scheme="light")
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"the page scrolls sideways at a phone's width ({width}px)"
            shot(page, "phone")
            assert not errors, errors
            browser.close()
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    print("playground browser test: ok")


if __name__ == "__main__":
    main()
