// Compiled with `tsc --noEmit` against the shipped .d.ts: a consumer's view of the package. Each `Check`
// fails to compile if the type it guards degrades to `any`.
import {
  AgentStateManager,
  CxoneError,
  simulateDay,
  initAsync,
  type ComplianceReport,
  type DaySummary,
  type DeadLetterEntry,
  type EngineOutput,
  type AgentSnapshot,
  type ErrorCode,
  type LogRecord,
  type TransitionResult,
} from 'cxone-agent-state';

type IsAny<T> = 0 extends 1 & T ? true : false;
/** `check<E>()(value)`: `value` must be an `E`, and its own type must not be `any`. */
function check<E>(): <T extends E>(value: T, ...notAny: IsAny<T> extends true ? [never] : []) => void {
  return () => {};
}

async function console(): Promise<void> {
  await initAsync();
  const log: LogRecord[] = [];
  const manager = new AgentStateManager(
    { getAccessToken: async () => ({ accessToken: 't', expiresIn: 3600 }) },
    'https://hooks.example/wfm',
    {
      baseUrl: 'https://acme.api.nice.incontact.com',
      rateLimitPerMinute: 100,
      monoNow: () => performance.now(),
      persist: async (record) => {
        log.push(record);
        // Audit records carry no `kind`; the others are told apart by it.
        if (record.kind === undefined) check<string>()(record.hash);
        else if (record.kind === 'intent') check<string>()(record.idempotencyKey);
        else if (record.kind === 'checkpoint') check<number>()(record.chain.nextSeq);
      },
      records: log,
      webhookSecret: 'k',
      webhook: { deadLetterAfterRefusals: 3 },
    },
  );
  const result = await manager.transitionState('agent-7', 'READY');
  check<TransitionResult>()(result);
  check<number>()(result.latency);
  check<string>()(result.reasonCode);
  const code: ErrorCode = 'MANDATORY_BREAK_VIOLATION';
  check<ErrorCode>()(code);
  const referenced = await manager.transitionState('agent-7', 'IDLE', { reference: 'ticket-4711' });
  check<string | undefined>()(referenced.reference);
  check<ErrorCode>()('INVALID_REFERENCE');
  // A supervisor's override, the actor, and a deferred READY with its events.
  await manager.transitionState('agent-7', 'READY', {
    override: { actor: 'kim', reason: 'queue over SLA' },
    actor: { role: 'supervisor', id: 'kim' },
  });
  void manager.transitionState('agent-8', 'READY', { defer: true });
  manager.addEventListener('deferred', (e) => check<number>()(e.detail.untilMs));
  manager.addEventListener('deferredcancelled', (e) => check<string>()(e.detail.cause));
  check<boolean>()(await manager.cancelDeferred('agent-8'));
  check<ErrorCode>()('DEFERRAL_CANCELLED');

  manager.addEventListener('statechange', (e) => {
    check<string>()(e.detail.newState);
    check<number>()(e.detail.latencyMs);
  });
  manager.addEventListener('audit', (e) => {
    check<string>()(e.detail.hash);
    check<boolean>()(e.detail.policyViolation);
  });
  manager.addEventListener('violation', (e) => check<ErrorCode>()(e.detail.code));
  manager.addEventListener('webhook', (e) => check<string>()(e.detail.eventId));
  manager.addEventListener('webhookdeadletter', (e) => check<number | null>()(e.detail.lastStatus));
  manager.addEventListener('failure', (e) => check<ErrorCode>()(e.detail.error.code));
  manager.addEventListener('intent', (e) => check<number>()(e.detail.approvedAtMs));
  check<DeadLetterEntry[]>()(manager.getDeadLetters());
  check<number>()(await manager.replayDeadLetters());
  check<number>()(manager.pendingWebhooks);
  check<number>()(report0().unknownOutcomeCount);
  function report0(): ComplianceReport {
    return manager.getComplianceReport();
  }
  // The `cxone` profile: a server with an access key, and a page whose back end hands out the bases.
  const server = new AgentStateManager(
    { clientId: 'app', clientSecret: 's', accessKeyId: 'key', accessKeySecret: 'k=&%' },
    undefined,
    {
      profile: 'cxone', authBase: 'https://cxone.niceincontact.com', apiVersion: 34, clientAuth: 'body',
      setStateEncoding: 'json', reasonCodes: 'NOT_READY=Break,PAUSED=Meeting', breakActivities: ['Break', 'Lunch'],
      wfmRateLimitPerMin: 60, cxone: { scheduleDays: 2 },
    },
  );
  const lunch = await server.transitionState('1001', 'NOT_READY', { reason: 'Lunch' });
  check<TransitionResult>()(lunch);
  const page = new AgentStateManager(
    { getAccessToken: async () => ({ accessToken: 't', expiresInMs: 3_600_000, apiBase: 'https://api.example', wfmBase: 'https://wfm.example' }) },
    undefined,
    { profile: 'cxone', reasonCodes: { NOT_READY: 'Break' } },
  );
  check<ErrorCode>()('UNKNOWN_REASON_CODE');
  await page.close();
  const outputs: EngineOutput[] = [];
  for (const o of outputs) {
    if (o.type === 'timeout') check<number | null>()(o.value);
    else if (o.type === 'transmit') check<'api' | 'wfm' | 'token' | 'webhook'>()(o.value.target);
    else if (o.type === 'event' && o.value.type === 'transitionFailed') check<ErrorCode>()(o.value.error.code);
  }

  const report = manager.getComplianceReport();
  check<ComplianceReport>()(report);
  check<number>()(report.violationFrequency);
  check<number>()(report.latency.p95Ms);
  check<string | null>()(report.logs[0].previousState);
  check<Record<string, number>>()(report.overridesByRule);
  check<number>()(report.deferrals.applied);
  const detail = manager.getComplianceReport({
    detail: true,
    schedules: { 'agent-7': [{ startMs: 0, endMs: 1, activities: [{ name: 'Lunch', startMs: 0, endMs: 1, mandatoryBreak: true }] }] },
  });
  check<number | null | undefined>()(detail.adherence?.team?.adherence);
  check<number | undefined>()(detail.adherence?.curve[0]?.fromMs);
  check<number | undefined>()(detail.agentCounts['agent-7']?.overrides);
  check<number>()(manager.calculateIdleTime('agent-7'));
  check<string>()(manager.getReasonCodeForState('READY'));

  try {
    await manager.validateStateChange('agent-7', 'READY');
  } catch (e) {
    if (e instanceof CxoneError) check<ErrorCode>()(e.code);
  }
  await manager.stopAccepting();
  check<Promise<void>>()(manager.close());
  // @ts-expect-error: close() is a promise, not a report
  check<ComplianceReport>()(manager.close());

  const day = simulateDay({ agents: 1000, hours: 8, seed: 42 });
  check<DaySummary>()(day);
  check<number>()(day.groundTruth.readyAcceptedDuringBreak);
  check<number[]>()(day.charts.violationsPerHour);
  // @ts-expect-error: agents is a number
  simulateDay({ agents: 'many' });
  // @ts-expect-error: a credential set needs a secret
  new AgentStateManager({ clientId: 'x' });
}

/** `cxone`: observing agent states changed elsewhere. */
async function observing(): Promise<void> {
  const manager = new AgentStateManager(
    { getAccessToken: async () => ({ accessToken: 't', expiresIn: 3600, apiBase: 'https://api', wfmBase: 'https://wfm' }) },
    undefined,
    { profile: 'cxone', observe: { intervalMs: 5000, staleAfterMs: 20_000, autoStart: false } },
  );
  manager.addEventListener('observed', (e) => {
    check<'ours' | 'external'>()(e.detail.observation.source);
    check<string>()(e.detail.state);
    check<string | null>()(e.detail.previousState);
  });
  manager.addEventListener('heartbeat', (e) => {
    check<boolean>()(e.detail.stale);
    check<number | null>()(e.detail.lagMs);
  });
  manager.addEventListener('settled', (e) => check<boolean>()(e.detail.applied));
  check<Promise<void>>()(manager.startObserving());
  check<boolean>()(manager.observing);
  const agents = manager.getAgents();
  check<AgentSnapshot[]>()(agents);
  check<'change' | 'ours' | 'external'>()(agents[0].source);
  check<boolean>()(agents[0].stale);
  check<number>()(manager.unsettledOutcomes);
  await manager.stopObserving();
  // @ts-expect-error: the poll's interval is a number
  new AgentStateManager({ getAccessToken: async () => ({ accessToken: 't' }) }, undefined, { observe: { intervalMs: 'often' } });
  const code: ErrorCode = 'OBSERVE_UNSUPPORTED';
  void code;
}

void console;
void observing;
