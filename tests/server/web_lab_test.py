"""The web lab in a real browser: headless Chromium (Debian's chromium and
chromium-driver) driven by Selenium opens every panel, acts in it and checks
the numbers it shows against the lmlab CLI on the same model. Screenshots of
each panel go to $LMLAB_SCREENSHOTS (docs/img when refreshing the docs),
else to a temporary folder."""
import csv
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from lmlab_server import BINARY, SOURCE, Server, lmlab

SHOTS = os.environ.get("LMLAB_SCREENSHOTS") or tempfile.mkdtemp(prefix="lmlab-web-")
LORA = Path(os.environ.get("LMLAB_FIXTURES", Path(SOURCE) / ".deps" / "fixtures")) / "lora"
# A short evaluation text keeps each sweep point to one small forward pass.
EVAL_TEXT = ("The river rose slowly through the night, and by morning the lower fields were under water. "
             "Farmers moved their animals to the hills while the town council met to plan the repairs.")


def chromium():
    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--no-first-run", "--disable-extensions"):
        opts.add_argument(arg)
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")
    return webdriver.Chrome(service=service, options=opts)


class WebLab(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.runs = tempfile.mkdtemp(prefix="lmlab-runs-")
        cls.server = Server("--runs", cls.runs).__enter__()
        cls.browser = chromium()
        # Panels redraw on input: an element read a moment ago may be replaced.
        cls.wait = WebDriverWait(cls.browser, 60, ignored_exceptions=(StaleElementReferenceException,))

    @classmethod
    def tearDownClass(cls):
        cls.browser.quit()
        assert cls.server.stop() == 0
        shutil.rmtree(cls.runs, ignore_errors=True)

    def open(self, panel):
        self.browser.get(f"{self.server.url}/#{panel}")
        self.wait.until(EC.presence_of_element_located((By.ID, f"panel-{panel}")))

    def shot(self, panel):
        os.makedirs(SHOTS, exist_ok=True)
        self.browser.save_screenshot(os.path.join(SHOTS, f"lab-{panel}.png"))

    def el(self, css):
        return self.wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, css)))

    def test_1_tokenizer_ids_equal_the_cli(self):
        self.open("tokenizer")
        box = self.el("#tok-a")
        box.clear()
        box.send_keys("Hello world, 12345 🦀")
        expected = json.loads(lmlab("tokenize", "--json", "Hello world, 12345 🦀"))["results"][0]["ids"]
        self.wait.until(lambda b: json.loads(b.find_element(By.CSS_SELECTOR, "#tok-out-a .tokens").get_attribute("data-ids"))
                        == expected)
        self.shot("tokenizer")

    def test_2_predictions_top_token_is_paris(self):
        self.open("predictions")
        row = self.el("#pred-table tr")
        self.assertEqual(row.get_attribute("data-token"), " Paris")
        cli = json.loads(lmlab("predict", "--json", "--no-chat-template", "-p", "The capital of France is"))
        self.assertAlmostEqual(float(row.get_attribute("data-prob")), cli[0]["top"][0]["prob"], places=4)
        self.el("#lens-table")
        # The temperature slider redraws the distribution: at 0.5 the top token is surer.
        slider = self.el("#pred-temp")
        self.browser.execute_script("arguments[0].value = 0.5; arguments[0].dispatchEvent(new Event('input'))", slider)
        self.wait.until(lambda b: float(b.find_element(By.CSS_SELECTOR, "#pred-table tr").get_attribute("data-prob"))
                        > cli[0]["top"][0]["prob"] + 0.01)
        self.shot("predictions")

    def test_3_chat_streams_a_real_answer(self):
        self.open("chat")
        box = self.el("#chat-input")
        box.send_keys("What is the capital of France?")
        self.el("#chat-send").click()
        self.wait.until(lambda b: b.find_element(By.ID, "chat-stats").get_attribute("data-done") == "1")
        reply = self.el("#reply-1").get_attribute("data-text")
        cli = json.loads(lmlab("generate", "--json", "--temp", "0", "--max-tokens", "128", "-p",
                               "What is the capital of France?"))
        self.assertEqual(reply, cli["text"])
        self.assertIn("Paris", reply)
        probs = [float(t.get_attribute("data-p")) for t in self.browser.find_elements(By.CSS_SELECTOR, "#reply-1 .tok")]
        self.assertTrue(probs and all(0 < p <= 1 for p in probs))
        # A second turn is served from the prompt cache.
        box.send_keys("And of Italy?")
        self.el("#chat-send").click()
        self.wait.until(lambda b: b.find_elements(By.ID, "reply-2") and
                        b.find_element(By.ID, "chat-stats").get_attribute("data-done") == "1" and
                        int(b.find_element(By.ID, "chat-stats").get_attribute("data-cached")) > 20)
        self.shot("chat")

    def test_4_embeddings_match_the_cli(self):
        self.open("embeddings")
        norm = float(self.el("#emb-norm").get_attribute("data-norm"))
        cli = json.loads(lmlab("embed", "--json", " cat"))["tokens"][0]
        self.assertAlmostEqual(norm, cli["norm"], places=3)
        self.assertGreater(len(self.browser.find_elements(By.CSS_SELECTOR, "#emb-neighbours tr")), 5)
        self.wait.until(lambda b: "max |A − B| = 0" in b.find_element(By.ID, "emb-embed-diff").text)
        self.shot("embeddings")

    def test_5_inside_the_file(self):
        self.open("inside")
        total = int(self.el("#inside-total").get_attribute("data-params"))
        cli = json.loads(lmlab("inspect", "--json"))
        self.assertEqual(total, cli["total_params"])
        words = json.loads(self.el("#inside-view .hex").get_attribute("data-words"))
        self.assertTrue(words)
        self.shot("inside")

    def test_6_attention(self):
        self.open("attention")
        entropy = float(self.el("#att-entropy").get_attribute("data-entropy"))
        cli = json.loads(lmlab("attention", "--json", "--no-chat-template", "--layer", "0", "--head", "0",
                               "-p", "The cat sat on the mat because it was tired."))
        self.assertAlmostEqual(entropy, cli["maps"][0]["mean_entropy_bits"], places=3)
        self.assertGreater(len(self.browser.find_elements(By.CSS_SELECTOR, "#att-grid canvas")), 1)
        self.shot("attention")

    def test_7_surgery_applies_and_restores(self):
        self.open("surgery")
        original = self.wait.until(lambda b: b.find_element(By.ID, "surg-state").get_attribute("data-hash"))
        op = self.el("#surg-op")
        op.send_keys("zero")
        target = self.el("#surg-target")
        target.clear()
        target.send_keys("model.layers.*.mlp.down_proj.weight")
        self.el("#surg-apply").click()
        self.wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#surg-out .cols"))
        edited_top = self.browser.find_elements(By.CSS_SELECTOR, "#surg-out .cols .card:nth-child(2) tr")[0]
        unedited_top = self.browser.find_elements(By.CSS_SELECTOR, "#surg-out .cols .card:nth-child(1) tr")[0]
        self.assertEqual(unedited_top.get_attribute("data-token"), " Paris")
        self.assertNotEqual(edited_top.get_attribute("data-token"), " Paris")
        self.wait.until(lambda b: b.find_element(By.ID, "surg-state").get_attribute("data-hash") != original)
        self.shot("surgery")
        self.el("#surg-restore").click()
        restored = self.el("#surg-restored")
        self.assertEqual(restored.get_attribute("data-exact"), "true")
        self.wait.until(lambda b: b.find_element(By.ID, "surg-state").get_attribute("data-hash") == original)

    def top_prediction(self):
        self.open("predictions")
        row = self.el("#pred-table tr")
        return row.get_attribute("data-token"), row.get_attribute("data-prob")

    def test_8_sweep_table_equals_the_cli_and_leaves_the_model_unchanged(self):
        before = self.top_prediction()
        self.open("sweeps")
        values = self.el("#sweep-values")
        values.clear()
        values.send_keys("0, 1, 1000000")
        self.el("#sweep-text").send_keys(EVAL_TEXT)
        self.el("#sweep-run").click()
        self.wait.until(lambda b: b.find_element(By.ID, "sweep-progress").get_attribute("data-state") == "done")
        rows = self.browser.find_elements(By.CSS_SELECTOR, "#sweep-table tr[data-status]")
        shown = [(float(r.get_attribute("data-value")), float(r.get_attribute("data-percent")), r.get_attribute("data-status"),
                  float(r.get_attribute("data-kl")), float(r.get_attribute("data-top1"))) for r in rows]
        self.assertEqual(self.el("#sweep-summary").get_attribute("data-unchanged"), "true")
        self.assertTrue(self.browser.execute_script(
            "const c = Chart.getChart(document.getElementById('sweep-chart')); return c && c.data.datasets[0].data.length"))
        self.shot("sweeps")
        # The oracle: lmlab sweep with the same options, its table as printed.
        work = Path(tempfile.mkdtemp(prefix="lmlab-sweep-"))
        try:
            (work / "eval.txt").write_text(EVAL_TEXT)
            out = lmlab("sweep", "shift-words", "lm_head", "--values", "0,1,1000000", "--text", str(work / "eval.txt"),
                        "--out", str(work / "report"))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        line = re.compile(r"^\s*(\S+)\s+(\S+)%\s+(healthy|degraded|collapsing|dead)\s+(\S+)\s+(\S+)\s")
        printed = [m.groups() for m in map(line.match, out.splitlines()) if m]
        self.assertEqual(len(printed), 3, out)
        self.assertEqual(len(shown), 3)
        for (value, percent, status, kl, top1), (cvalue, cpercent, cstatus, ckl, ctop1) in zip(shown, printed):
            self.assertEqual(value, float(cvalue))
            self.assertEqual(f"{percent:.6g}", cpercent, f"% of the mean word at {value}")
            self.assertEqual(status, cstatus)
            self.assertEqual(float(f"{kl:.4g}"), float(ckl), f"KL at {value}")
            self.assertEqual(f"{top1:.4f}", ctop1, f"top-1 at {value}")
        self.assertEqual(shown[0][3], 0.0)  # the identity point
        self.assertGreater(shown[2][3], shown[1][3])
        # The served model is the original: the same top prediction, to the last digit.
        self.assertEqual(self.top_prediction(), before)

    @unittest.skipUnless((LORA / "model").exists(), "run scripts/make-fixtures.sh")
    def test_9_training_charts_a_run_while_it_writes(self):
        self.open("training")
        self.el("#train-run")
        # A real run on the tiny checkpoint, started after the panel opened: the panel finds it by polling.
        run = Path(self.runs) / "tiny"
        proc = subprocess.Popen([BINARY, "lora", "--model", str(LORA / "model"), "--data", str(LORA / "data"), "--train",
                                 "--iters", "8", "--batch-size", "2", "--learning-rate", "2e-3", "--num-layers", "2",
                                 "--steps-per-report", "1", "--steps-per-eval", "4", "--val-batches", "1",
                                 "--max-seq-length", "128", "--seed", "3", "--adapter-path", str(run)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _, err = proc.communicate(timeout=300)
        self.assertEqual(proc.returncode, 0, err)
        with open(run / "train_log.csv") as f:
            rows = list(csv.DictReader(f))
        self.assertGreaterEqual(len(rows), 8)
        self.wait.until(lambda b: b.find_element(By.ID, "train-stats").get_attribute("data-rows") == str(len(rows)))
        datasets = self.browser.execute_script(
            "return Chart.getChart(document.getElementById('train-loss')).data.datasets.map((d) => d.data)")
        for key, points in zip(("train_loss", "val_loss"), datasets):
            expected = [(int(r["iteration"]), float(r[key])) for r in rows if r[key]]
            self.assertTrue(expected, key)
            self.assertEqual([(p["x"], p["y"]) for p in points], expected, key)
        self.shot("training")


if __name__ == "__main__":
    unittest.main()
