// Helpers shared by the pages: formatting, report figures, downloads, error words.

export const fmtMs = (ms) => {
  if (ms === null || ms === undefined) return '—';
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
};
export const fmtPct = (x) => (x === null || x === undefined ? '—' : `${(x * 100).toFixed(1)} %`);
export const fmtClock = (ms) => new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });

/** The report's headline figures, as `[key, label, display value, raw value]`. */
export function reportFigures(r) {
  return [
    ['totalTransitions', 'Transitions', r.totalTransitions, r.totalTransitions],
    ['successCount', 'Succeeded', r.successCount, r.successCount],
    ['failureCount', 'Failed', r.failureCount, r.failureCount],
    ['unknownOutcomeCount', 'Outcome unknown', r.unknownOutcomeCount, r.unknownOutcomeCount],
    ['violationCount', 'Policy violations blocked', r.violationCount, r.violationCount],
    ['violationFrequency', 'Violation frequency', fmtPct(r.violationFrequency), r.violationFrequency],
    ['averageLatencyMs', 'Average latency', `${r.averageLatencyMs} ms`, r.averageLatencyMs],
    ['p95Ms', 'Latency p95', `${r.latency.p95Ms} ms`, r.latency.p95Ms],
    ['p99Ms', 'Latency p99', `${r.latency.p99Ms} ms`, r.latency.p99Ms],
  ];
}

/** Renders the figures into a `<dl>`; each value carries `data-key` and `data-value` for machines. */
export function renderFigures(dl, report) {
  dl.replaceChildren(
    ...reportFigures(report).map(([key, label, shown, raw]) => {
      const div = document.createElement('div');
      const dt = document.createElement('dt');
      dt.textContent = label;
      const dd = document.createElement('dd');
      dd.textContent = String(shown);
      dd.dataset.key = key;
      dd.dataset.value = String(raw);
      div.append(dt, dd);
      return div;
    }),
  );
}

export function download(name, text, type) {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([text], { type }));
  a.download = name;
  document.body.append(a);
  a.click();
  setTimeout(() => {
    URL.revokeObjectURL(a.href);
    a.remove();
  }, 0);
}

/** A refusal or failure in words a supervisor understands. */
export function explain(error, now = Date.now()) {
  const w = error.breakWindow;
  switch (error.code) {
    case 'MANDATORY_BREAK_VIOLATION':
      if (!w) return 'Refused: a mandatory break is due';
      return now >= w.startMs
        ? `Refused: mandatory break in progress until ${fmtClock(w.endMs)}`
        : `Refused: mandatory break due at ${fmtClock(w.startMs)} (until ${fmtClock(w.endMs)})`;
    case 'AGENT_NOT_SCHEDULED':
      return 'Refused: the agent is not on shift now';
    case 'UPSTREAM_UNAVAILABLE':
      return 'The tenant could not be reached (after retries) — check the API base URL';
    case 'RATE_LIMITED':
      return 'The tenant kept rate limiting (429) — try again shortly';
    case 'OUTCOME_UNKNOWN':
      return 'Sent, but the tenant never confirmed it: the change may have been applied — check the agent\'s state';
    case 'BUSY':
      return 'Too many changes are waiting — try again shortly';
    case 'CLOSED':
      return 'The console was disconnected before the change completed';
    case 'TOKEN_EXPIRED':
      return 'The token service handed out an already expired token — check the token endpoint';
    case 'AUTH_FAILED':
      return `Sign-in failed: ${error.message}`;
    case 'UNAUTHORIZED':
      return 'The tenant refused the token even after a refresh';
    case 'INVALID_STATE':
      return 'Not a valid state name';
    case 'INVALID_USER_ID':
      return 'Not a valid agent id';
    case 'UNKNOWN_AGENT':
      return 'No such agent in the tenant\'s directory — check the agentId';
    case 'UNKNOWN_REASON_CODE':
      return `Refused: ${error.message}`;
    case 'STATE_CONFLICT':
      return `The tenant refused the change (is the agent logged in?): ${error.message}`;
    case 'DISCOVERY_FAILED':
      return `Could not find the tenant's API: ${error.message}`;
    default:
      return `${error.code ?? 'ERROR'}: ${error.message}`;
  }
}
