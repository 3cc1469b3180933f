// Plain-SVG charts: bars, histograms, a state timeline (with adherence exceptions) and a share-through-the-day curve.
const NS = 'http://www.w3.org/2000/svg';
export const STATE_COLORS = { READY: '#2e8b57', NOT_READY: '#c0392b', PAUSED: '#d68910', IDLE: '#7f8c8d' };
const colorOf = (state) => STATE_COLORS[state] ?? '#6c5ce7';

function el(name, attrs, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function frame(svg) {
  svg.replaceChildren();
  const [, , w, h] = svg.getAttribute('viewBox').split(' ').map(Number);
  return { w, h, pad: { l: 44, r: 8, t: 10, b: 28 } };
}

/** Grouped bars: `series` is `[{ values, color, label }]`, all the same length as `labels`. */
export function bars(svg, labels, series) {
  const { w, h, pad } = frame(svg);
  const max = Math.max(1, ...series.flatMap((s) => s.values));
  const plotW = w - pad.l - pad.r;
  const plotH = h - pad.t - pad.b;
  const groupW = plotW / Math.max(1, labels.length);
  const barW = Math.max(1, (groupW * 0.8) / series.length);
  svg.append(el('line', { x1: pad.l, y1: h - pad.b, x2: w - pad.r, y2: h - pad.b, stroke: '#aab' }));
  for (const t of [0, 0.5, 1]) {
    const y = h - pad.b - t * plotH;
    svg.append(el('text', { x: pad.l - 4, y: y + 3, 'text-anchor': 'end' }, String(Math.round(max * t))));
  }
  labels.forEach((label, i) => {
    const x0 = pad.l + i * groupW + groupW * 0.1;
    series.forEach((s, j) => {
      const v = s.values[i] ?? 0;
      const bh = (v / max) * plotH;
      const rect = el('rect', { x: x0 + j * barW, y: h - pad.b - bh, width: barW - 1, height: Math.max(0, bh), fill: s.color });
      rect.append(el('title', {}, `${label}: ${v} ${s.label}`));
      svg.append(rect);
    });
    if (labels.length <= 24 || i % Math.ceil(labels.length / 12) === 0) {
      svg.append(el('text', { x: x0 + groupW * 0.4, y: h - pad.b + 12, 'text-anchor': 'middle' }, label));
    }
  });
}

/** Counts `values` into `buckets` (upper bounds; the last one open) and draws them. */
export function histogram(svg, values, edges, formatEdge, color = '#1f5fbf') {
  const counts = new Array(edges.length + 1).fill(0);
  for (const v of values) {
    const i = edges.findIndex((e) => v <= e);
    counts[i === -1 ? edges.length : i] += 1;
  }
  const labels = counts.map((_, i) => (i < edges.length ? `≤${formatEdge(edges[i])}` : `>${formatEdge(edges[edges.length - 1])}`));
  bars(svg, labels, [{ values: counts, color, label: 'agents' }]);
  return counts;
}

const hhmm = (ms) => new Date(ms).toISOString().slice(11, 16);
const minutes = (ms) => (ms / 60_000).toFixed(1);

/** The hour ticks (`+0 h`, `+1 h`, …) under a time axis `x` over `[startMs, endMs]`. */
function hourTicks(svg, x, startMs, endMs, y) {
  const hours = Math.round((endMs - startMs) / 3_600_000);
  for (let hr = 0; hr <= hours; hr += Math.max(1, Math.ceil(hours / 8))) {
    svg.append(el('text', { x: x(startMs + hr * 3_600_000), y, 'text-anchor': 'middle' }, `+${hr} h`));
  }
}

/**
 * One row per agent: a bar segment per state stretch, over `[startMs, endMs]`. With `exceptions` (a `Map` or
 * an object, userId → the agent's adherence exceptions `[{ startMs, endMs, durationMs, scheduled, activity?,
 * actual, code? }]`), each exception overlapping the range is marked on its agent's row (class `exception`,
 * clipped to the range) with a tooltip; returns the number of marks drawn.
 */
export function timeline(svg, timelines, startMs, endMs, exceptions = undefined) {
  const { w, h, pad } = frame(svg);
  const rowH = (h - pad.t - pad.b) / Math.max(1, timelines.length);
  const x = (t) => pad.l + 30 + ((t - startMs) / Math.max(1, endMs - startMs)) * (w - pad.l - 30 - pad.r);
  const exceptionsOf = (userId) => (exceptions instanceof Map ? exceptions.get(userId) : exceptions?.[userId]) ?? [];
  let marks = 0;
  timelines.forEach((t, i) => {
    const y = pad.t + i * rowH;
    svg.append(el('text', { x: pad.l + 26, y: y + rowH * 0.7, 'text-anchor': 'end' }, t.userId.replace('agent-', '#')));
    t.segments.forEach(([at, state], j) => {
      const to = j + 1 < t.segments.length ? t.segments[j + 1][0] : endMs;
      const rect = el('rect', { x: x(at), y: y + 1, width: Math.max(0.5, x(to) - x(at)), height: Math.max(1, rowH - 2), fill: colorOf(state) });
      rect.append(el('title', {}, `${t.userId} ${state} from ${hhmm(at)}`));
      svg.append(rect);
    });
    for (const e of exceptionsOf(t.userId)) {
      const from = Math.max(e.startMs, startMs);
      const to = Math.min(e.endMs, endMs);
      if (!(from < to)) continue;
      const mark = el('rect', {
        class: 'exception', x: x(from), y: y + 0.5, width: Math.max(1.5, x(to) - x(from)), height: Math.max(1, rowH - 1),
        fill: '#ff1a1a', 'fill-opacity': 0.3, stroke: '#7a0000', 'stroke-width': 1,
        'data-agent': t.userId, 'data-start': e.startMs, 'data-end': e.endMs,
      });
      const actual = e.code ? `${e.actual} (${e.code})` : e.actual;
      mark.append(el('title', {}, `${t.userId} out of adherence: ${actual} during scheduled ${e.activity ?? e.scheduled}, `
        + `${minutes(e.durationMs)} min from ${hhmm(e.startMs)}`));
      svg.append(mark);
      marks += 1;
    }
  });
  hourTicks(svg, x, startMs, endMs, h - pad.b + 14);
  return marks;
}

/**
 * A share through the day (0..1 each, shown 0..100 %): `points` are `[{ fromMs, toMs, value }]`, drawn at
 * each interval's middle, joined by a line; a `null` value is skipped (and breaks the line). Each drawn
 * point is a `circle.point` carrying `data-value`; returns how many were drawn.
 */
export function shareCurve(svg, points, startMs, endMs, color = '#1f5fbf', label = 'adherence') {
  const { w, h, pad } = frame(svg);
  const plotW = w - pad.l - pad.r;
  const plotH = h - pad.t - pad.b;
  const x = (t) => pad.l + ((t - startMs) / Math.max(1, endMs - startMs)) * plotW;
  const y = (v) => h - pad.b - Math.min(1, Math.max(0, v)) * plotH;
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    svg.append(el('line', { x1: pad.l, y1: y(t), x2: w - pad.r, y2: y(t), stroke: t === 0 ? '#aab' : '#e3e7ee' }));
    svg.append(el('text', { x: pad.l - 4, y: y(t) + 3, 'text-anchor': 'end' }, `${t * 100}%`));
  }
  let d = '';
  let joined = false;
  const drawn = [];
  for (const p of points) {
    if (p.value === null || p.value === undefined || !Number.isFinite(p.value)) {
      joined = false;
      continue;
    }
    const px = x((p.fromMs + p.toMs) / 2);
    const py = y(p.value);
    d += `${joined ? 'L' : 'M'}${px.toFixed(1)},${py.toFixed(1)} `;
    joined = true;
    drawn.push([p, px, py]);
  }
  if (d) svg.append(el('path', { d: d.trim(), fill: 'none', stroke: color, 'stroke-width': 2 }));
  for (const [p, px, py] of drawn) {
    const dot = el('circle', { class: 'point', cx: px, cy: py, r: 3.5, fill: color, 'data-value': p.value });
    dot.append(el('title', {}, `${hhmm(p.fromMs)}–${hhmm(p.toMs)}: ${(p.value * 100).toFixed(1)} % ${label}`));
    svg.append(dot);
  }
  hourTicks(svg, x, startMs, endMs, h - pad.b + 14);
  return drawn.length;
}
