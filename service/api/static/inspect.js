// ospo inspection page: builds an /attribute request (explain: true) from the form, sends it
// and draws the answer: segments shaded by Owen value, hover details, the group's rewards and
// advantages and a bar chart of token advantages. No dependencies, no external requests.
"use strict";

(() => {
  const POSITIVE = [0, 139, 251]; // blue: positive Owen value (as service/cli/render.py)
  const NEGATIVE = [255, 0, 81]; // red: negative
  const ZERO = [228, 231, 236]; // neutral grey: a segment with exactly zero value
  const MIN_ALPHA = 0.2;
  const SVG_NS = "http://www.w3.org/2000/svg";
  // Same rule as service/cli/render.py word_token_offsets: each word (or <tag>) with the
  // whitespace before it. ASCII whitespace only, so Python and JavaScript agree.
  const TOKEN = /[ \t\n\r\f\v]*(?:<\/?[A-Za-z][A-Za-z0-9_-]*>|[^ \t\n\r\f\v<]+|<)/gu;

  const $ = (id) => document.getElementById(id);
  const state = { demo: [], lastRequest: null, lastResult: null };

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // ---------------------------------------------------------------- text offsets
  // The service counts characters as Python does (code points); JavaScript strings index
  // UTF-16 code units. Offsets sent and received are code points.

  function codePointMap(text) {
    const map = new Array(text.length + 1);
    let cp = 0;
    for (let i = 0; i < text.length; ) {
      const width = text.codePointAt(i) > 0xffff ? 2 : 1;
      map[i] = cp;
      if (width === 2) map[i + 1] = cp;
      i += width;
      cp += 1;
    }
    map[text.length] = cp;
    return map;
  }

  function wordTokenOffsets(text) {
    const map = codePointMap(text);
    const offsets = [];
    for (const match of text.matchAll(TOKEN)) {
      offsets.push([map[match.index], map[match.index + match[0].length]]);
    }
    return offsets;
  }

  function slice(chars, start, end) {
    return chars.slice(start, end).join("");
  }

  // ---------------------------------------------------------------- formatting

  function signed(x, digits = 4) {
    const s = Number(x).toFixed(digits);
    return x >= 0 && !s.startsWith("-") ? "+" + s : s;
  }

  function fixed(x, digits = 4) {
    return Number(x).toFixed(digits);
  }

  function percent(x) {
    return (100 * Number(x)).toFixed(2) + "%";
  }

  function shade(value, scale) {
    if (value === 0 || !(scale > 0)) return ZERO;
    const strength = Math.min(1, Math.abs(value) / scale);
    const alpha = MIN_ALPHA + (1 - MIN_ALPHA) * strength;
    const base = value > 0 ? POSITIVE : NEGATIVE;
    return base.map((c) => Math.round(255 + (c - 255) * alpha));
  }

  function luminance([r, g, b]) {
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("data-")) node.setAttribute(key, String(value));
      else node[key] = value;
    }
    for (const child of children) node.append(child);
    return node;
  }

  function svg(tag, attrs = {}) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
    return node;
  }

  // ---------------------------------------------------------------- HTTP

  function headers(json) {
    const result = {};
    if (json) result["Content-Type"] = "application/json";
    const key = $("api-key").value.trim();
    if (key) result["Authorization"] = "Bearer " + key;
    return result;
  }

  async function api(path, init) {
    const response = await fetch(path, init);
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (!response.ok) {
      const error = body && body.error;
      const detail = error
        ? `${error.code}: ${error.message}` + (error.field ? ` (field ${error.field})` : "")
        : `HTTP ${response.status}`;
      const hint = response.status === 401 ? "\nEnter the service's API key above." : "";
      throw new ApiError(response.status, `${response.status} ${detail}${hint}`);
    }
    return body;
  }

  function setStatus(text) {
    $("status").textContent = text;
  }

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = !message;
  }

  // ---------------------------------------------------------------- demo queries

  async function loadDemoQueries() {
    const select = $("demo-query");
    const retriever = $("retriever").value.trim() || "default";
    select.disabled = true;
    $("use-example").disabled = true;
    try {
      const body = await api(
        `v1/demo/queries?retriever=${encodeURIComponent(retriever)}&limit=60`,
        { headers: headers(false) },
      );
      state.demo = body.queries;
      select.replaceChildren(
        ...body.queries.map((q) => el("option", { value: q.id, text: `${q.id} · ${q.text}` })),
      );
      select.disabled = state.demo.length === 0;
      $("use-example").disabled = state.demo.length === 0;
      showDemoText();
      if (!$("responses").value.trim()) useExample();
      showError("");
      document.body.dataset.demoLoaded = "true";
    } catch (error) {
      select.replaceChildren(el("option", { value: "", text: "(queries unavailable)" }));
      showError(`Could not load the catalog queries: ${error.message}`);
    }
  }

  function selectedDemo() {
    return state.demo.find((q) => q.id === $("demo-query").value) || null;
  }

  function showDemoText() {
    const query = selectedDemo();
    $("demo-query-text").textContent = query ? `“${query.text}”` : "";
  }

  function useExample() {
    const query = selectedDemo();
    if (query) $("responses").value = query.examples.join("\n");
  }

  function targetKind() {
    return document.querySelector('input[name="target-kind"]:checked').value;
  }

  function showTargetKind() {
    const labels = targetKind() === "labels";
    $("labels-target").hidden = !labels;
    $("query-target").hidden = labels;
  }

  // ---------------------------------------------------------------- the request

  function buildTarget() {
    if (targetKind() === "query") {
      const id = $("demo-query").value;
      if (!id) throw new Error("Pick a catalog query (or switch to graded labels).");
      return { target: { query_id: id } };
    }
    let parsed;
    try {
      parsed = JSON.parse($("labels").value);
    } catch (error) {
      throw new Error(`The labels are not valid JSON: ${error.message}`);
    }
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
      throw new Error('The labels must be a JSON object like {"P000123": 1.0}.');
    }
    if (parsed.relevant !== undefined) {
      const result = { target: { relevant: parsed.relevant } };
      if (parsed.pool !== undefined) result.pool = parsed.pool;
      return result;
    }
    return { target: { relevant: parsed } };
  }

  function buildRequest() {
    const texts = $("responses")
      .value.split(/\r?\n/)
      .filter((line) => line.trim() !== "");
    if (texts.length === 0) throw new Error("Type at least one response (one per line).");
    const group = { id: "inspect", ...buildTarget() };
    group.responses = texts.map((text) => ({ text, token_offsets: wordTokenOffsets(text) }));
    return {
      groups: [group],
      options: {
        retriever: $("retriever").value.trim() || "default",
        estimator: $("estimator").value,
        segmenter: $("segmenter").value,
        redistribution: $("redistribution").value,
        explain: true,
      },
    };
  }

  async function submit(event) {
    event.preventDefault();
    showError("");
    let request;
    try {
      request = buildRequest();
    } catch (error) {
      showError(error.message);
      return;
    }
    $("submit").disabled = true;
    setStatus("computing coalition rewards…");
    delete document.body.dataset.rendered;
    const started = performance.now();
    try {
      const result = await api("attribute", {
        method: "POST",
        headers: headers(true),
        body: JSON.stringify(request),
      });
      state.lastRequest = request;
      state.lastResult = result;
      render(request, result);
      setStatus(`done in ${Math.round(performance.now() - started)} ms`);
      document.body.dataset.rendered = "true";
    } catch (error) {
      setStatus("");
      showError(error.message);
    } finally {
      $("submit").disabled = false;
    }
  }

  // ---------------------------------------------------------------- rendering

  function groupScale(responses) {
    let scale = 0;
    for (const r of responses)
      for (const s of r.segments) if (s.value !== null) scale = Math.max(scale, Math.abs(s.value));
    return scale;
  }

  function tokenRange(segment, offsets, advantages) {
    if (!advantages) return null;
    const inside = [];
    offsets.forEach(([start, end], t) => {
      if (start < segment.end && end > segment.start) inside.push(advantages[t]);
    });
    return inside.length ? [Math.min(...inside), Math.max(...inside)] : null;
  }

  function render(request, result) {
    const sent = request.groups[0].responses;
    const responses = result.groups[0].responses;
    const scale = groupScale(responses);
    const model = result.model || {};
    const stats = result.stats || {};
    $("model-line").textContent =
      `retriever ${model.retriever} · encoder ${model.encoder} · ${stats.coalitions} coalitions, ` +
      `${stats.unique_queries} unique queries, ${stats.cache_hits} cache hits, ` +
      `${stats.timings_ms ? fixed(stats.timings_ms.total, 1) : "?"} ms`;

    const body = $("group-table").querySelector("tbody");
    body.replaceChildren(
      ...responses.map((r, i) => {
        const chars = Array.from(sent[i].text);
        const query = r.segments.length
          ? slice(chars, r.segments[0].start, r.segments[r.segments.length - 1].end)
          : "(empty query)";
        const row = el(
          "tr",
          { "data-response": i },
          el("td", { text: String(i + 1) }),
          el("td", { class: "text-col", text: query }),
          el("td", { class: "reward", "data-value": r.reward, text: fixed(r.reward) }),
          el("td", { class: "advantage", "data-value": r.advantage, text: signed(r.advantage) }),
          el("td", { text: String(r.segments.length) }),
        );
        return row;
      }),
    );
    const rewards = responses.map((r) => r.reward);
    const mean = rewards.reduce((a, b) => a + b, 0) / rewards.length;
    $("group-summary").textContent =
      `${responses.length} response(s) · mean reward ${fixed(mean)} · ` +
      `best ${fixed(Math.max(...rewards))} · worst ${fixed(Math.min(...rewards))}`;

    $("responses-out").replaceChildren(
      ...responses.map((r, i) => renderResponse(i, sent[i], r, scale)),
    );
    $("results").hidden = false;
  }

  function renderResponse(index, sent, response, scale) {
    const chars = Array.from(sent.text);
    const card = el("article", { class: "response", "data-response": index });
    card.append(
      el(
        "h3",
        {},
        el("span", { text: `Response ${index + 1}` }),
        el("span", { class: "reward", text: `reward ${fixed(response.reward)}` }),
        el("span", { class: "advantage", text: `advantage ${signed(response.advantage)}` }),
      ),
    );

    const text = el("p", { class: "response-text" });
    let cursor = 0;
    response.segments.forEach((segment, j) => {
      if (segment.start > cursor) {
        text.append(el("span", { class: "outside", text: slice(chars, cursor, segment.start) }));
      }
      // An unmeasured segment (value null: no evaluated coalition pair) stays neutral grey.
      const unmeasured = segment.value === null;
      const rgb = unmeasured ? ZERO : shade(segment.value, scale);
      const span = el("span", {
        class: unmeasured ? "seg unmeasured" : segment.value === 0 ? "seg zero" : "seg",
        text: slice(chars, segment.start, segment.end),
        tabIndex: 0,
        "data-response": index,
        "data-segment": j,
        "data-value": unmeasured ? "null" : segment.value,
        "data-credit": segment.credit,
      });
      // CSSOM, not a style attribute: the page's CSP forbids inline style attributes.
      span.style.backgroundColor = `rgb(${rgb.join(", ")})`;
      span.style.color = luminance(rgb) > 150 ? "#111" : "#fff";
      const details = () => segmentDetails(index, j, sent, response);
      span.addEventListener("mouseenter", () => showTooltip(span, details()));
      span.addEventListener("focus", () => showTooltip(span, details()));
      span.addEventListener("mouseleave", hideTooltip);
      span.addEventListener("blur", hideTooltip);
      text.append(span);
      cursor = segment.end;
    });
    if (cursor < chars.length) {
      text.append(el("span", { class: "outside", text: slice(chars, cursor, chars.length) }));
    }
    card.append(text);
    card.append(segmentTable(index, sent, response));
    if (response.token_advantages) card.append(tokenChart(index, sent, response));
    return card;
  }

  // A segment's Owen value, or "unmeasured" when the plan evaluated no pair for it.
  function valueText(value) {
    return value === null ? "unmeasured" : signed(value);
  }

  function segmentTable(index, sent, response) {
    const table = el("table", { class: "numbers segments" });
    table.append(
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          ...["#", "segment", "Owen value", "credit share", "token advantage"].map((h, c) =>
            el("th", { class: c === 1 ? "text-col" : "", text: h }),
          ),
        ),
      ),
    );
    const tbody = el("tbody");
    response.segments.forEach((segment, j) => {
      const range = tokenRange(segment, sent.token_offsets, response.token_advantages);
      tbody.append(
        el(
          "tr",
          { "data-segment": j },
          el("td", { text: String(j) }),
          el("td", { class: "text-col", text: segment.text }),
          el("td", {
            class: "value",
            "data-value": segment.value === null ? "null" : segment.value,
            text: valueText(segment.value),
          }),
          el("td", { class: "credit", "data-value": segment.credit, text: percent(segment.credit) }),
          el("td", {
            class: "token-range",
            text: range ? `${signed(range[0])} .. ${signed(range[1])}` : "-",
          }),
        ),
      );
    });
    table.append(tbody);
    return table;
  }

  function segmentDetails(index, j, sent, response) {
    const segment = response.segments[j];
    const range = tokenRange(segment, sent.token_offsets, response.token_advantages);
    const box = el("div", { "data-response": index, "data-segment": j });
    box.append(el("div", { class: "tip-title", text: `segment ${j}: “${segment.text}”` }));
    box.append(el("div", { text: `Owen value ${valueText(segment.value)}` }));
    box.append(el("div", { text: `credit share ${percent(segment.credit)}` }));
    if (range) box.append(el("div", { text: `token advantages ${signed(range[0])} .. ${signed(range[1])}` }));
    const including = (response.coalitions || []).filter((c) => c.members.includes(j));
    box.append(el("div", { text: `coalitions including it: ${including.length}` }));
    const table = el("table", { class: "coalitions" });
    for (const coalition of including) {
      table.append(
        el(
          "tr",
          { class: "coalition" },
          el("td", { text: `{${coalition.members.join(",")}}` }),
          el("td", { text: fixed(coalition.value) }),
          el("td", { class: "coalition-query", text: coalition.query }),
        ),
      );
    }
    box.append(table);
    return box;
  }

  function tokenChart(index, sent, response) {
    const values = response.token_advantages;
    const chars = Array.from(sent.text);
    const offsets = sent.token_offsets;
    const segments = response.segments;
    const queryStart = segments.length ? segments[0].start : 0;
    const queryEnd = segments.length ? segments[segments.length - 1].end : 0;
    const barWidth = Math.max(6, Math.min(28, Math.floor(680 / Math.max(1, values.length))));
    const left = 52;
    const width = left + values.length * barWidth + 12;
    const height = 170;
    const top = 10;
    const bottom = height - 12;
    const peak = Math.max(1e-9, ...values.map(Math.abs), Math.abs(response.advantage));
    const hasNegative = values.some((v) => v < 0) || response.advantage < 0;
    const hasPositive = values.some((v) => v > 0) || response.advantage > 0;
    // Zero line placement: centre when both signs occur, else at the edge.
    const zeroY = hasNegative && hasPositive ? (top + bottom) / 2 : hasNegative ? top : bottom;
    const span = hasNegative && hasPositive ? (bottom - top) / 2 : bottom - top;
    const y = (v) => zeroY - (v / peak) * span;

    const chart = svg("svg", {
      viewBox: `0 0 ${width} ${height}`,
      width,
      height,
      role: "img",
      "aria-label": `token advantages of response ${index + 1}`,
      "data-response": index,
    });
    chart.append(svg("line", { class: "axis", x1: left, x2: width - 6, y1: zeroY, y2: zeroY }));
    const labels = [
      [peak, hasPositive],
      [0, true],
      [-peak, hasNegative],
    ];
    for (const [v, show] of labels) {
      if (!show) continue;
      const label = svg("text", { x: left - 6, y: y(v) + 3, "text-anchor": "end" });
      label.textContent = signed(v, 2);
      chart.append(label);
    }
    values.forEach((v, t) => {
      const [start, end] = offsets[t];
      const inQuery = start < queryEnd && end > queryStart;
      const rect = svg("rect", {
        class: `bar ${v >= 0 ? "positive" : "negative"}${inQuery ? "" : " outside-query"}`,
        x: left + t * barWidth + 1,
        y: Math.min(y(v), zeroY),
        width: barWidth - 2,
        height: Math.max(0.5, Math.abs(y(v) - zeroY)),
        "data-token": t,
        "data-value": v,
      });
      const title = svg("title");
      title.textContent = `token ${t} “${slice(chars, start, end).trim()}”: ${signed(v)}`;
      rect.append(title);
      chart.append(rect);
    });
    const meanY = y(response.advantage);
    chart.append(svg("line", { class: "mean", x1: left, x2: width - 6, y1: meanY, y2: meanY }));

    const figure = el("figure", { class: "chart" });
    figure.append(chart);
    figure.append(
      el("figcaption", {
        text:
          `token advantages (${values.length} token${values.length === 1 ? "" : "s"}; dashed: the response advantage ` +
          `${signed(response.advantage)}; faded bars lie outside the search query)`,
      }),
    );
    return figure;
  }

  // ---------------------------------------------------------------- tooltip

  function showTooltip(anchor, content) {
    const tip = $("tooltip");
    tip.replaceChildren(content);
    tip.hidden = false;
    const box = anchor.getBoundingClientRect();
    const left = Math.min(window.scrollX + box.left, window.scrollX + window.innerWidth - tip.offsetWidth - 8);
    tip.style.left = `${Math.max(4, left)}px`;
    tip.style.top = `${window.scrollY + box.bottom + 6}px`;
  }

  function hideTooltip() {
    $("tooltip").hidden = true;
  }

  // ---------------------------------------------------------------- wiring

  function init() {
    $("request-form").addEventListener("submit", submit);
    $("demo-query").addEventListener("change", showDemoText);
    $("use-example").addEventListener("click", useExample);
    $("api-key").addEventListener("change", loadDemoQueries);
    $("retriever").addEventListener("change", loadDemoQueries);
    for (const radio of document.querySelectorAll('input[name="target-kind"]')) {
      radio.addEventListener("change", showTargetKind);
    }
    showTargetKind();
    loadDemoQueries();
  }

  // Exposed for tests and the console.
  window.ospoInspect = { wordTokenOffsets, buildRequest, state };
  init();
})();
