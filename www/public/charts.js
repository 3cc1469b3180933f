// Plain-SVG charts: bars, histograms and a state timeline.
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

/** One row per agent: a bar segment per state stretch, over `[startMs, endMs]`. */
export function timeline(svg, timelines, startMs, endMs) {
  const { w, h, pad } = frame(svg);
  const rowH = (h - pad.t - pad.b) / Math.max(1, timelines.length);
  const x = (t) => pad.l + 30 + ((t - startMs) / Math.max(1, endMs - startMs)) * (w - pad.l - 30 - pad.r);
  timelines.forEach((t, i) => {
    const y = pad.t + i * rowH;
    svg.append(el('text', { x: pad.l + 26, y: y + rowH * 0.7, 'text-anchor': 'end' }, t.userId.replace('agent-', '#')));
    t.segments.forEach(([at, state], j) => {
      const to = j + 1 < t.segments.length ? t.segments[j + 1][0] : endMs;
      const rect = el('rect', { x: x(at), y: y + 1, width: Math.max(0.5, x(to) - x(at)), height: Math.max(1, rowH - 2), fill: colorOf(state) });
      rect.append(el('title', {}, `${t.userId} ${state} from ${new Date(at).toISOString().slice(11, 16)}`));
      svg.append(rect);
    });
  });
  const hours = Math.round((endMs - startMs) / 3_600_000);
  for (let hr = 0; hr <= hours; hr += Math.max(1, Math.ceil(hours / 8))) {
    svg.append(el('text', { x: x(startMs + hr * 3_600_000), y: h - pad.b + 14, 'text-anchor': 'middle' }, `+${hr} h`));
  }
}
