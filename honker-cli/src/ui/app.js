// honker ui: the whole front end. No framework, no build step, nothing from another origin.
//
// Every value from the database reaches the page through text nodes (el() below never sets
// innerHTML), so a payload holding markup shows as the text it is.
// Live updates: one EventSource on /api/events; each "change" refetches the current view's
// JSON (at most one fetch in flight, changes during it folded into one more). A hidden tab
// closes its stream and reopens it when shown again. Nothing polls the server.
'use strict';

const S = {
  token: sessionStorage.getItem('honker_token') || '',
  config: null,
  es: null,
  loading: false,
  dirty: false,
  view: null,
  skew: 0, // server clock minus browser clock, ms
};

// A token in the address (#token=...) is kept for this tab and removed from the address.
(function takeToken() {
  const m = location.hash.match(/^#token=([^&]*)/);
  if (m) {
    S.token = decodeURIComponent(m[1]);
    sessionStorage.setItem('honker_token', S.token);
    history.replaceState(null, '', location.pathname + '#/overview');
  }
})();

// ---- DOM helpers -------------------------------------------------------------------------

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return e;
}

function table(headers, rows) {
  return el('table', {},
    el('thead', {}, el('tr', {}, headers.map(h =>
      el('th', { class: h.endsWith('#') ? 'num' : null }, h.replace(/#$/, ''))))),
    el('tbody', {}, rows));
}

const num = n => (n === null || n === undefined) ? '–' : Number(n).toLocaleString('en-US');
const td = (v, cls) => el('td', { class: cls }, v);
const tdn = v => el('td', { class: 'num' }, num(v));
const stateTag = s => el('span', { class: 'state ' + s }, s);
const link = (href, text) => el('a', { href }, text);

function nowMs() { return Date.now() + S.skew; }

function dur(ms) {
  ms = Math.abs(ms);
  if (ms < 1000) return ms + ' ms';
  const s = ms / 1000;
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + ' s';
  if (s < 3600) return Math.floor(s / 60) + 'm ' + Math.floor(s % 60) + 's';
  if (s < 86400) return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
  return Math.floor(s / 86400) + 'd ' + Math.floor((s % 86400) / 3600) + 'h';
}

// A time shown relative to now ("in 3 s", "12 s ago"), kept current by a local timer.
function rel(ms) {
  if (ms === null || ms === undefined) return el('span', { class: 'muted' }, '–');
  return el('span', { class: 'rel', title: new Date(ms).toISOString(), dataset: { ms: String(ms) } }, relText(ms));
}
function relText(ms) {
  const d = Number(ms) - nowMs();
  if (Math.abs(d) < 500) return 'now';
  return d > 0 ? 'in ' + dur(d) : dur(d) + ' ago';
}
setInterval(() => {
  for (const e of document.querySelectorAll('.rel')) e.textContent = relText(e.dataset.ms);
}, 1000);

function say(text, info) {
  const m = document.getElementById('msg');
  if (!text) { m.hidden = true; m.textContent = ''; return; }
  m.hidden = false;
  m.className = info ? 'msg info' : 'msg';
  m.textContent = text;
}

// ---- server calls ------------------------------------------------------------------------

function headers() {
  return S.token ? { 'X-Honker-Token': S.token } : {};
}

async function api(path) {
  const r = await fetch(path, { headers: headers(), cache: 'no-store' });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw Object.assign(new Error((body.error && body.error.message) || r.statusText), { code: body.error && body.error.code, status: r.status });
  if (typeof body.now_ms === 'number') S.skew = body.now_ms - Date.now();
  return body;
}

async function act(action, question) {
  if (question && !confirm(question)) return null;
  try {
    const r = await fetch('/api/action', {
      method: 'POST',
      headers: Object.assign({ 'Content-Type': 'application/json' }, headers()),
      body: JSON.stringify(action),
    });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(((body.error && body.error.code) ? body.error.code + ': ' : '') + ((body.error && body.error.message) || r.statusText));
    say(action.action.replace(/_/g, ' ') + ': ' + JSON.stringify(body), true);
    refresh();
    return body;
  } catch (e) {
    say(String(e.message || e));
    return null;
  }
}

const canWrite = () => S.config && S.config.writes;

function btn(text, onclick, danger) {
  return el('button', { type: 'button', class: danger ? 'danger' : null, onclick }, text);
}

// ---- routing -----------------------------------------------------------------------------

function route() {
  const h = location.hash.replace(/^#\/?/, '');
  const [path, q] = h.split('?');
  const params = new URLSearchParams(q || '');
  const parts = (path || 'overview').split('/');
  return { name: parts[0] || 'overview', arg: parts[1], params };
}

const VIEWS = { overview: viewOverview, jobs: viewJobs, job: viewJob, cron: viewCron, workers: viewWorkers };

async function render() {
  const r = route();
  const view = VIEWS[r.name] || viewOverview;
  for (const a of document.querySelectorAll('[data-nav]')) {
    a.classList.toggle('active', a.dataset.nav === r.name || (r.name === 'job' && a.dataset.nav === 'jobs'));
  }
  S.view = { r, view, paged: false };
  await refresh();
}

async function refresh() {
  if (!S.view) return;
  if (S.loading) { S.dirty = true; return; }
  S.loading = true;
  try {
    const v = S.view;
    const node = await v.view(v.r);
    if (S.view === v && node) {
      document.getElementById('main').replaceChildren(node);
      document.body.dataset.loaded = String((Number(document.body.dataset.loaded) || 0) + 1);
    }
    if (document.getElementById('msg').className === 'msg') say('');
  } catch (e) {
    say((e.code ? e.code + ': ' : '') + (e.message || e));
  } finally {
    S.loading = false;
    if (S.dirty) { S.dirty = false; refresh(); }
  }
}

// ---- live updates ------------------------------------------------------------------------

function setLive(cls, text) {
  const l = document.getElementById('live');
  l.className = 'live ' + cls;
  l.textContent = text;
}

function connect() {
  if (S.es) return;
  const url = '/api/events' + (S.token ? '?token=' + encodeURIComponent(S.token) : '');
  const es = new EventSource(url);
  S.es = es;
  es.addEventListener('open', () => setLive('on', 'live'));
  es.addEventListener('hello', () => { setLive('on', 'live'); refresh(); });
  es.addEventListener('change', () => {
    document.body.dataset.changes = String((Number(document.body.dataset.changes) || 0) + 1);
    // A list the user has paged through is not replaced under them.
    if (S.view && S.view.paged) { setLive('on', 'live (changes: reload to see)'); return; }
    refresh();
  });
  es.addEventListener('gone', e => { setLive('bad', 'stopped: ' + e.data); es.close(); S.es = null; });
  es.addEventListener('error', () => { if (S.es === es) setLive('bad', 'reconnecting'); });
}

function disconnect() {
  if (S.es) { S.es.close(); S.es = null; }
  setLive('off', 'paused (tab hidden)');
}

document.addEventListener('visibilitychange', () => {
  if (document.hidden) disconnect();
  else { connect(); refresh(); }
});

// ---- views -------------------------------------------------------------------------------

function spark(minutes) {
  const w = 4, gap = 1, hgt = 22;
  const max = Math.max(1, ...minutes.map(m => m || 0));
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('class', 'spark');
  svg.setAttribute('width', String(minutes.length * (w + gap)));
  svg.setAttribute('height', String(hgt));
  minutes.forEach((m, i) => {
    const r = document.createElementNS(ns, 'rect');
    const h = m === null ? 2 : Math.max(1, Math.round((m / max) * (hgt - 2)));
    r.setAttribute('x', String(i * (w + gap)));
    r.setAttribute('y', String(hgt - h));
    r.setAttribute('width', String(w));
    r.setAttribute('height', String(h));
    if (m === null) r.setAttribute('class', 'gap');
    const t = document.createElementNS(ns, 'title');
    t.textContent = (minutes.length - 1 - i) + ' min ago: ' + (m === null ? 'no sample' : m);
    r.append(t);
    svg.append(r);
  });
  return svg;
}

function jobsHref(q, state) {
  const p = new URLSearchParams();
  if (q) p.set('queue', q);
  if (state) p.set('state', state);
  return '#/jobs?' + p.toString();
}

async function viewOverview() {
  const o = await api('/api/overview');
  const wrap = el('div', {});
  const qRows = o.queues.map(q => {
    const per = q.throughput.per_minute;
    const last = per[per.length - 1]; // the current minute so far
    return el('tr', { dataset: { queue: q.name } },
      td(link(jobsHref(q.name), q.name)),
      el('td', {}, q.paused ? stateTag('paused') : el('span', { class: 'muted' }, 'active')),
      ...['pending', 'scheduled', 'running', 'retrying', 'dead'].map(s =>
        el('td', { class: 'num', dataset: { count: s } }, link(jobsHref(q.name, s === 'retrying' ? '' : s), num(q[s])))),
      el('td', { class: 'num' }, q.oldest_pending_age_ms ? dur(q.oldest_pending_age_ms) : '–'),
      el('td', {}, spark(per), el('div', { class: 'muted' },
        (last === null || last === undefined ? '–' : num(last)) + ' this minute' + (q.throughput.exact ? '' : ' (est.)'))),
      canWrite() ? el('td', {}, el('div', { class: 'actions' },
        q.paused ? btn('Resume', () => act({ action: 'resume_queue', queue: q.name }))
          : btn('Pause', () => act({ action: 'pause_queue', queue: q.name })),
        q.dead ? btn('Requeue dead', () => act({ action: 'requeue', filter: { queue: q.name, state: 'dead' }, confirm: true },
          'Requeue all ' + q.dead + ' dead jobs of ' + q.name + '?')) : null,
        q.dead ? btn('Purge dead', () => act({ action: 'purge_dead', queue: q.name, confirm: true },
          'Delete all ' + q.dead + ' dead jobs of ' + q.name + '? This cannot be undone.'), true) : null)) : null);
  });
  wrap.append(el('h2', {}, 'Queues'), el('section', { id: 'queues' }, o.queues.length ? table(
    ['Queue', 'State', 'Pending#', 'Scheduled#', 'Running#', 'Retrying#', 'Dead#', 'Oldest pending#', 'Finished / min (30 min)', canWrite() ? 'Actions' : null].filter(Boolean),
    qRows) : el('p', { class: 'muted' }, 'No queues yet.')));

  const sRows = o.streams.map(s => el('tr', {},
    td(s.topic), tdn(s.events),
    td(s.first === null ? '–' : num(s.first) + ' … ' + num(s.last), 'mono'),
    el('td', {}, s.consumers.length ? s.consumers.map(c => el('div', {},
      el('span', { class: 'mono' }, c.consumer), ': ',
      c.lag_events ? el('span', { class: 'late' }, num(c.lag_events) + ' behind, ' + dur(c.lag_ms)) : el('span', { class: 'muted' }, 'caught up'),
      c.behind_trim ? el('span', { class: 'err' }, ' (behind a trim)') : null)) : el('span', { class: 'muted' }, 'none')),
    canWrite() ? el('td', {}, btn('Trim…', () => {
      const n = prompt('Keep how many of the newest events of ' + s.topic + '?', '1000');
      if (n !== null && n !== '') act({ action: 'trim_stream', topic: s.topic, max_events: Number(n), confirm: true });
    }, true)) : null));
  wrap.append(el('h2', {}, 'Streams'), el('section', { id: 'streams' }, o.streams.length ? table(
    ['Topic', 'Events#', 'Offsets', 'Consumers and lag', canWrite() ? 'Actions' : null].filter(Boolean), sRows)
    : el('p', { class: 'muted' }, 'No stream topics.')));

  wrap.append(el('h2', {}, 'Cron'), el('section', { id: 'cron' }, o.schedules.length ? cronTable(o.schedules, false)
    : el('p', { class: 'muted' }, 'No schedules.')));

  const cRows = o.channels.map(c => el('tr', {}, td(c.channel, 'mono'), tdn(c.rows), tdn(c.last_minute), el('td', {}, rel(c.newest_ms))));
  wrap.append(el('h2', {}, 'Pub/sub channels'), el('section', { id: 'channels' }, o.channels.length ? table(
    ['Channel', 'Kept#', 'Last minute#', 'Newest'], cRows) : el('p', { class: 'muted' }, 'No notifications kept.')));
  return wrap;
}

function cronTable(list, actions) {
  return table(['Schedule', 'Expression', 'Queue', 'Status', 'Next fires', 'Last fire', 'Lateness', actions && canWrite() ? 'Actions' : null].filter(Boolean),
    list.map(s => el('tr', { dataset: { schedule: s.name } },
      td(s.name, 'mono'),
      td(el('span', {}, el('code', {}, s.expr), ' ', el('span', { class: 'muted' }, s.tz))),
      td(link(jobsHref(s.queue), s.queue)),
      el('td', {}, s.refused ? el('span', { class: 'state dead', title: s.last_error }, 'refused') : s.paused ? stateTag('paused') : el('span', { class: 'muted' }, 'active'),
        s.last_error ? el('div', { class: 'err' }, s.last_error) : null),
      el('td', {}, s.next_fire_ms === null ? el('span', { class: 'muted' }, 'finished') :
        el('div', {}, rel(s.next_fire_ms), actions ? el('div', { class: 'muted mono' }, s.upcoming_ms.slice(0, 3).map(t => new Date(t).toISOString()).join('  ')) : null)),
      el('td', {}, rel(s.last_fire_ms), s.last_job_id ? el('div', {}, link('#/job/' + s.last_job_id, 'job ' + s.last_job_id)) : null),
      el('td', {}, s.late_ms ? el('span', { class: 'late' }, 'late ' + dur(s.late_ms)) : el('span', { class: 'muted' }, 'on time'),
        s.last_fire_late_ms !== null && s.last_fire_late_ms !== undefined ? el('div', { class: 'muted' }, 'last fired +' + dur(s.last_fire_late_ms)) : null),
      actions && canWrite() ? el('td', {}, el('div', { class: 'actions' },
        s.paused ? btn('Resume', () => act({ action: 'resume_schedule', name: s.name }))
          : btn('Pause', () => act({ action: 'pause_schedule', name: s.name })),
        btn('Run now', () => act({ action: 'run_schedule', name: s.name })))) : null)));
}

async function viewCron() {
  const c = await api('/api/cron');
  return el('div', {}, el('h2', {}, 'Cron schedules'),
    el('section', { id: 'cron' }, c.schedules.length ? cronTable(c.schedules, true) : el('p', { class: 'muted' }, 'No schedules.')));
}

async function viewWorkers() {
  const w = await api('/api/workers');
  const rows = w.workers.map(x => el('tr', {},
    td(x.worker || '(unnamed)', 'mono'), td(link(jobsHref(x.queue, 'running'), x.queue)), tdn(x.jobs),
    el('td', {}, x.job_ids.map(id => [link('#/job/' + id, String(id)), ' ']), x.jobs > x.job_ids.length ? '…' : null),
    el('td', {}, rel(x.first_lease_expires_ms), x.expired_leases ? el('div', { class: 'late' }, 'leases expired: the worker may be gone') : null),
    td(x.alive === null ? 'unknown' : (x.alive ? 'yes' : 'no'), x.alive === null ? 'muted' : null)));
  return el('div', {}, el('h2', {}, 'Workers holding leases'),
    el('section', { id: 'workers' }, rows.length ? table(['Worker', 'Queue', 'Jobs held#', 'Jobs', 'First lease expiry', 'Alive'], rows)
      : el('p', { class: 'muted' }, 'No job is held by a worker right now.')));
}

function filterOf(params) {
  const f = {};
  for (const k of ['queue', 'state', 'key', 'value', 'error']) if (params.get(k)) f[k] = params.get(k);
  return f;
}

async function viewJobs(r) {
  const f = filterOf(r.params);
  const q = new URLSearchParams(f);
  const first = await api('/api/jobs?' + q.toString());
  const state = first.state;
  const rows = el('tbody', {});
  const addRows = page => {
    for (const j of page.jobs) {
      rows.append(el('tr', { dataset: { job: String(j.id) } },
        td(link('#/job/' + j.id, String(j.id))), td(j.queue), el('td', {}, stateTag(j.state)),
        td(j.attempts + ' / ' + j.max_attempts, 'num'), tdn(j.priority),
        el('td', {}, rel(j.at_ms)), td(j.worker || '', 'mono'),
        el('td', {}, el('code', { class: 'payload' }, j.payload_preview)),
        el('td', { class: 'err' }, j.last_error || '')));
    }
  };
  addRows(first);
  const more = el('div', { class: 'bar' });
  const setMore = page => {
    more.replaceChildren();
    if (page.next_before !== null) {
      more.append(btn('Load older', async () => {
        S.view.paged = true;
        const p = new URLSearchParams(f);
        p.set('before', String(page.next_before));
        try { const next = await api('/api/jobs?' + p.toString()); addRows(next); setMore(next); } catch (e) { say(e.message); }
      }), el('span', { class: 'muted' }, 'searched down to id ' + num(page.scanned_to)));
    }
  };
  setMore(first);

  const input = (name, ph, size) => el('label', {}, name, el('input', { name, value: f[name] || '', placeholder: ph, size: size || 14 }));
  const form = el('form', { class: 'filters', onsubmit: e => {
    e.preventDefault();
    const p = new URLSearchParams();
    for (const [k, v] of new FormData(e.target)) if (v) p.set(k, v);
    location.hash = '#/jobs?' + p.toString();
  } },
  el('label', {}, 'queue', el('select', { name: 'queue' }, el('option', { value: '' }, 'all queues'),
    first.queues.map(n => el('option', { value: n, selected: n === f.queue }, n)))),
  el('label', {}, 'state', el('select', { name: 'state' },
    [['', 'not finished'], ['pending'], ['scheduled'], ['running'], ['dead'], ['done']].map(([v, t]) =>
      el('option', { value: v, selected: (f.state || '') === v }, t || v)))),
  input('key', 'payload key, e.g. user.id'), input('value', 'value (JSON or text)'), input('error', 'text in the error'),
  el('button', { type: 'submit' }, 'Filter'));

  const countText = first.count_exact ? num(first.count) + ' matching'
    : (first.count >= first.count_cap ? num(first.count_cap) + '+ matching' : num(first.count) + ' matching among the newest jobs');
  const bulk = canWrite() ? el('div', { class: 'actions' },
    state === 'dead' ? btn('Requeue all matching', () => act({ action: 'requeue', filter: Object.assign({}, f, { state: 'dead' }), confirm: true },
      'Requeue every dead job matching this filter (' + countText + ')?')) : null,
    ['live', 'pending', 'scheduled', 'running'].includes(state) ? btn('Cancel all matching', () => act({ action: 'cancel', filter: f, confirm: true },
      'Cancel every job matching this filter (' + countText + ')? Workers holding them lose their leases.'), true) : null) : null;

  const wrap = el('div', {}, el('h2', {}, 'Jobs'), form,
    el('div', { class: 'bar' }, el('strong', { id: 'count' }, countText), bulk),
    el('section', { id: 'jobs' }, first.jobs.length ? el('table', {},
      el('thead', {}, el('tr', {}, ['ID', 'Queue', 'State', 'Attempts#', 'Priority#', 'Due / at', 'Worker', 'Payload', 'Last error'].map(h =>
        el('th', { class: h.endsWith('#') ? 'num' : null }, h.replace(/#$/, ''))))),
      rows) : el('p', { class: 'muted' }, 'No job matches.')), more);
  if (canWrite()) wrap.append(enqueueForm(f.queue));
  return wrap;
}

function enqueueForm(queue) {
  return el('section', { id: 'enqueue' }, el('h2', {}, 'Enqueue a job'),
    el('form', { class: 'filters', onsubmit: e => {
      e.preventDefault();
      const d = new FormData(e.target);
      let payload, options = null;
      try { payload = JSON.parse(d.get('payload')); } catch (x) { say('payload is not JSON: ' + x.message); return; }
      if (d.get('options')) { try { options = JSON.parse(d.get('options')); } catch (x) { say('options are not JSON: ' + x.message); return; } }
      act({ action: 'enqueue', queue: d.get('queue'), payload, options });
    } },
    el('label', {}, 'queue', el('input', { name: 'queue', value: queue || '', required: true })),
    el('label', {}, 'payload (JSON)', el('input', { name: 'payload', value: '{}', size: 40 })),
    el('label', {}, 'options (JSON)', el('input', { name: 'options', placeholder: '{"delay_ms": 1000, "priority": 5}', size: 30 })),
    el('button', { type: 'submit' }, 'Enqueue')));
}

async function viewJob(r) {
  let j;
  try {
    j = (await api('/api/job/' + encodeURIComponent(r.arg))).job;
  } catch (e) {
    if (e.status === 404) return el('div', {}, el('h2', {}, 'Job ' + r.arg), el('section', {}, el('p', { class: 'muted' }, e.message)));
    throw e;
  }
  const row = (k, v) => [el('dt', {}, k), el('dd', {}, v === null || v === undefined || v === '' ? el('span', { class: 'muted' }, '–') : v)];
  const actions = canWrite() ? el('div', { class: 'actions' },
    j.state === 'dead' ? btn('Requeue (retry now)', () => act({ action: 'requeue', ids: [j.id] })) : null,
    ['pending', 'scheduled', 'running'].includes(j.state) ? btn('Cancel', () => act({ action: 'cancel', ids: [j.id], confirm: true },
      'Cancel job ' + j.id + '?' + (j.state === 'running' ? ' Its worker loses the lease; its ack will be refused.' : '')), true) : null) : null;
  return el('div', {}, el('h2', {}, 'Job ', el('span', { id: 'job-id' }, String(j.id)), ' ', stateTag(j.state)),
    el('section', {}, el('dl', { class: 'fields' },
      row('queue', link(jobsHref(j.queue), j.queue)),
      row('state', j.state + (j.dead_reason ? ' (' + j.dead_reason + ')' : '')),
      row('attempts', j.attempts + ' of ' + j.max_attempts + (j.claims !== null && j.claims !== undefined ? ' (' + j.claims + ' claims)' : '')),
      row('priority', String(j.priority)),
      row(j.state === 'dead' ? 'died' : j.state === 'done' ? 'acked' : 'due', rel(j.run_at_ms)),
      row('created', rel(j.created_ms)),
      row('expires', j.expires_at_ms ? rel(j.expires_at_ms) : null),
      row('dedup key', j.dedup_key ? el('code', {}, j.dedup_key) : null),
      row('lease holder', j.worker ? el('code', {}, j.worker) : null),
      row('fencing token', j.lease_token !== null && j.lease_token !== undefined ? el('code', {}, String(j.lease_token)) : null),
      row('lease expires', j.lease_expires_ms ? rel(j.lease_expires_ms) : null),
      row('last error', j.last_error ? el('pre', { class: 'err' }, j.last_error) : null)),
    actions),
    el('h2', {}, 'Payload'), el('section', {}, el('pre', { id: 'payload' }, JSON.stringify(j.payload, null, 2))),
    el('h2', {}, 'Result'), el('section', {}, j.result === null || j.result === undefined ? el('p', { class: 'muted' }, 'No result saved.')
      : el('pre', { id: 'result' }, JSON.stringify(j.result, null, 2))));
}

// ---- start -------------------------------------------------------------------------------

async function start() {
  try {
    S.config = await api('/api/config');
  } catch (e) {
    say(e.status === 401 ? 'This server needs its token: open the address it printed (…/#token=…).' : String(e.message || e));
    return;
  }
  document.getElementById('db').textContent = S.config.db;
  const mode = document.getElementById('mode');
  mode.textContent = S.config.writes ? 'actions on' : 'read-only';
  mode.className = S.config.writes ? 'badge writes' : 'badge';
  if (S.config.writes && !S.token) say('Actions need the token: open the address the server printed (…/#token=…).');
  window.addEventListener('hashchange', render);
  if (!document.hidden) connect();
  else setLive('off', 'paused (tab hidden)');
  render();
}

start();
