// Drives headless Chromium over Volley's pages and prints what it saw as one
// JSON object; controller/tests/browser.rs decides what is right.
//
//   node check.mjs report FILE.html SHOT.png
//   node check.mjs page API_URL TARGET_URL SECONDS SHOT.png [SCENARIO.toml]
//   node check.mjs compare FILE.html SHOT.png
//
// CHROMIUM names the browser (default /usr/bin/chromium).
import { chromium } from "playwright-core";

const [mode, ...args] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"],
});
const page = await browser.newPage({ viewport: { width: 1000, height: 900 } });
const consoleErrors = [];
const requests = [];
page.on("console", m => { if (m.type() === "error" || m.type() === "warning") consoleErrors.push(m.text()); });
page.on("pageerror", e => consoleErrors.push(String(e)));
page.on("request", r => requests.push(r.url()));

// Points per line (summed over its polylines) of the charts in `selector`.
const points = selector => page.$$eval(selector + " polyline.series", ls => {
  const by = new Map();
  for (const l of ls) {
    const n = (l.getAttribute("points") || "").trim().split(/\s+/).filter(Boolean).length;
    by.set(l.dataset.name, (by.get(l.dataset.name) || 0) + n);
  }
  return [...by].map(([name, points]) => ({ name, points }));
});

// Per chart: its id, its numeric tick labels, its lines' drawn colours,
// the legend swatches in those colours, and the hover titles, all as the
// browser computed them (so a stylesheet overriding a colour shows).
const charts = () => page.$$eval("svg.chart", svgs => svgs.map(svg => {
  const texts = [...svg.querySelectorAll("text")].map(t => t.textContent.trim());
  const lines = [...svg.querySelectorAll("polyline.series")];
  const colours = [...new Set(lines.map(l => getComputedStyle(l).stroke))];
  const fills = [...svg.querySelectorAll("rect")].map(r => getComputedStyle(r).fill);
  return {
    id: svg.id,
    ticks: texts.filter(t => /^-?\d+(\.\d+)?$/.test(t)).length,
    names: [...new Set(lines.map(l => l.dataset.name))],
    colours,
    swatches: colours.filter(c => fills.includes(c)).length,
    dots: svg.querySelectorAll("circle").length,
    titles: [...svg.querySelectorAll("rect > title")].map(t => t.textContent),
  };
}));

const out = { mode, consoleErrors, requests };
try {
  if (mode === "report") {
    const [file, shot] = args;
    await page.goto("file://" + file);
    out.title = await page.title();
    out.charts = await charts();
    out.lines = await points("svg.chart");
    out.text = await page.evaluate(() => document.body.innerText);
    // Scenario reports: the per-name table, as rows of cell texts.
    out.names = await page.$$eval("#names tr", rows => rows.slice(1).map(r => [...r.children].map(c => c.textContent)));
    await page.screenshot({ path: shot, fullPage: true });
  } else if (mode === "page") {
    const [api, target, seconds, shot, scenario] = args;
    await page.goto(api + "/");
    // An empty field shows an example, worded and styled apart from a value.
    out.urlField = await page.$eval("input[name=url]", i =>
      ({ value: i.value, placeholder: i.placeholder, style: getComputedStyle(i, "::placeholder").fontStyle }));
    await page.fill("input[name=url]", target);
    if (scenario) await page.fill("textarea[name=scenario]", (await import("node:fs")).readFileSync(scenario, "utf8"));
    await page.fill("input[name=concurrency]", "4");
    await page.selectOption("select[name=limit]", "duration");
    await page.fill("input[name=amount]", seconds);
    await page.click("#go");
    // The run has its own address, and a reload mid-run keeps showing it.
    await page.waitForURL(/\/runs\/[^/]+$/);
    out.runUrl = page.url();
    const id = await page.textContent("#run-id");
    await page.waitForFunction(() => document.querySelector("#state").textContent !== "");
    await page.reload();
    await page.waitForFunction(() => document.querySelector("#state").textContent !== "");
    out.reloaded = { url: page.url(), id: await page.textContent("#run-id"), sameId: id === await page.textContent("#run-id"),
      state: await page.textContent("#state") };
    // Watch the charts while the run goes.
    out.live = [];
    const deadline = Date.now() + (Number(seconds) + 30) * 1000;
    for (;;) {
      const state = await page.textContent("#state");
      const lines = await points("#rate-chart");
      out.live.push({ state, points: lines.length ? lines[0].points : 0 });
      if (state && state !== "running") break;
      if (Date.now() > deadline) throw new Error("the run did not end in time");
      await page.waitForTimeout(500);
    }
    await page.waitForSelector("#summary");
    out.state = await page.textContent("#state");
    out.lines = [...await points("#rate-chart"), ...await points("#latency-chart")];
    out.liveCharts = await charts();
    out.summary = Object.fromEntries(await page.$$eval("#summary tr", rows =>
      rows.slice(1).map(r => [...r.children].map(c => c.textContent))));
    out.names = await page.$$eval("#names tr", rows => rows.slice(1).map(r => [...r.children].map(c => c.textContent)));
    out.fullReport = await page.getAttribute("#full-report", "href");
    await page.screenshot({ path: shot, fullPage: true });
    // The full report page renders too.
    await page.click("#full-report");
    await page.waitForLoadState("load");
    out.fullReportCharts = await page.$$eval("svg.chart", s => s.length);
    // The list of runs links to this run's page.
    await page.goto(api + "/");
    await page.waitForSelector("#run-list a");
    out.runList = await page.$$eval("#run-list a", as => as.map(a => a.getAttribute("href")));
  } else if (mode === "compare") {
    const [file, shot] = args;
    await page.goto("file://" + file);
    out.title = await page.title();
    out.verdict = await page.textContent("#verdict");
    // The overlaid percentile curves: name, colour as rendered, points, and
    // the drawn length (a curve with points but no extent is not drawn).
    out.curves = await page.$$eval("svg#distribution polyline.curve", ls => ls.map(l => ({
      name: l.dataset.name,
      colour: getComputedStyle(l).stroke,
      points: (l.getAttribute("points") || "").trim().split(/\s+/).filter(Boolean).length,
      width: l.getBBox().width,
    })));
    await page.screenshot({ path: shot, fullPage: true });
  } else {
    throw new Error("unknown mode " + mode);
  }
} catch (e) {
  out.failure = String(e);
}
await browser.close();
console.log(JSON.stringify(out));
