// Starling dashboard: one page, served by the node (broker/admin/www/), no
// build step and nothing loaded from elsewhere. Live data comes from one
// stream (GET /api/v1/events, a snapshot a second) read with fetch(), so the
// admin token travels in an Authorization header, never in a URL or a cookie.
// Listings and operations are the admin API's own endpoints. Every value
// from the node reaches the page through textContent, never as HTML.
'use strict';

(function () {
  const HISTORY = 300;          // points kept per chart: five minutes at one a second
  const STALE_MS = 3500;        // no snapshot this long: the stream is marked stale
  const RETRY_MS = 2000;        // between attempts to open the stream
  const UNREACHABLE_MS = 1500;  // a member silent this long (three missed status frames)
  const PAGE = 50;

  const $ = (id) => document.getElementById(id);
  let token = sessionStorage.getItem('starling.token') || '';
  let last = null;              // the latest snapshot
  let lastAt = 0;               // when it arrived (performance.now)
  const points = [];            // {t, rin, rout, rdrop, conns, sessions, subs, retained, latency}
  let view = 'cluster';

  // --- the API -------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    if (token) h.Authorization = 'Bearer ' + token;
    return h;
  }

  async function api(method, path, body) {
    const opts = { method: method, cache: 'no-store', headers: headers(body ? { 'Content-Type': 'application/json' } : {}) };
    if (body !== undefined) opts.body = JSON.stringify(body);
    let res;
    try {
      res = await fetch(path, opts);
    } catch (e) {
      throw new ApiError(0, 'the node cannot be reached');
    }
    let data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    if (res.status === 401) askToken(data && data.error);
    if (!res.ok) throw new ApiError(res.status, (data && data.error) || res.status + ' ' + res.statusText);
    return data;
  }

  // --- the token -----------------------------------------------------------

  let tokenWaiters = [];

  function askToken(why) {
    $('token-why').textContent = why ? 'The node says: ' + why + '.' : 'This node needs its admin_token.';
    $('token').classList.remove('hidden');
    $('token-input').focus();
    return new Promise((resolve) => tokenWaiters.push(resolve));
  }

  function takeToken() {
    token = $('token-input').value.trim();
    sessionStorage.setItem('starling.token', token);
    $('token-input').value = '';
    $('token').classList.add('hidden');
    const w = tokenWaiters;
    tokenWaiters = [];
    w.forEach((resolve) => resolve());
    if (view === 'browse') loadBrowse();
  }

  // --- the live stream -----------------------------------------------------

  function setLive(text, cls) {
    const el = $('live');
    el.textContent = text;
    el.className = 'pill ' + cls;
  }

  function banner(text) {
    const el = $('banner');
    el.textContent = text || '';
    el.classList.toggle('hidden', !text);
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  async function stream() {
    for (;;) {
      let res = null;
      try {
        res = await fetch('/api/v1/events', { cache: 'no-store', headers: headers({ Accept: 'text/event-stream' }) });
      } catch (e) {
        res = null;
      }
      if (res && res.status === 401) {
        setLive('token needed', 'bad');
        let why = null;
        try { why = (await res.json()).error; } catch (e) { why = null; }
        await askToken(why);
        continue;
      }
      if (res && res.ok && res.body) {
        setLive('live', 'ok');
        banner('');
        await readEvents(res.body.getReader());
      } else if (res) {
        let why = res.status + ' ' + res.statusText;
        try { why = (await res.json()).error || why; } catch (e) { /* keep the status */ }
        banner('The event stream was refused: ' + why);
      }
      setLive('reconnecting', 'bad');
      if (!res || res.ok) banner('Lost the connection to this node; retrying every ' + RETRY_MS / 1000 + ' s.');
      await sleep(RETRY_MS);
    }
  }

  async function readEvents(reader) {
    const decoder = new TextDecoder();
    let text = '';
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (e) {
        return;
      }
      if (chunk.done) return;
      text += decoder.decode(chunk.value, { stream: true });
      let end;
      while ((end = text.indexOf('\n\n')) >= 0) {
        const event = text.slice(0, end);
        text = text.slice(end + 2);
        const data = event.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5)).join('\n');
        if (!data) continue;
        try {
          snapshot(JSON.parse(data));
        } catch (e) {
          banner('A snapshot from the node could not be read: ' + e.message);
        }
      }
    }
  }

  // a stream that stops delivering (the node paused, a proxy holding bytes)
  setInterval(() => {
    if (last && performance.now() - lastAt > STALE_MS) setLive('stale', 'bad');
  }, 1000);

  // --- snapshots -----------------------------------------------------------

  const num = (v) => (v === null || v === undefined ? 0 : Number(v));

  function snapshot(s) {
    const prev = last;
    last = s;
    lastAt = performance.now();
    setLive('live', 'ok');
    let point = { t: num(s.time_ms), conns: num(s.connections), sessions: num(s.sessions), subs: num(s.subscriptions),
      retained: num(s.retained), rin: null, rout: null, rdrop: null, latency: null };
    if (prev && num(s.time_ms) > num(prev.time_ms) && num(s.uptime_s) >= num(prev.uptime_s)) {
      const dt = (num(s.time_ms) - num(prev.time_ms)) / 1000;
      point.rin = Math.max(0, num(s.messages_received) - num(prev.messages_received)) / dt;
      point.rout = Math.max(0, num(s.messages_sent) - num(prev.messages_sent)) / dt;
      point.rdrop = Math.max(0, num(s.messages_dropped) - num(prev.messages_dropped)) / dt;
      const commits = num(s.commits) - num(prev.commits);
      if (commits > 0) point.latency = (num(s.commit_us_total) - num(prev.commit_us_total)) / commits / 1000;
    }
    points.push(point);
    if (points.length > HISTORY) points.shift();
    renderIdentity(s);
    renderCluster(s);
    renderTraffic(point);
    renderOperateChoices(s);
  }

  function fmt(n) {
    if (n === null || n === undefined || Number.isNaN(n)) return '–';
    if (typeof n === 'number' && !Number.isInteger(n) && n < 10) return n.toFixed(2);
    if (typeof n === 'number') return Math.round(n).toLocaleString('en-US');
    return Number(n).toLocaleString('en-US');
  }

  function ago(ms) {
    if (ms === null || ms === undefined) return 'never';
    const v = Number(ms);
    if (v < 1000) return v + ' ms';
    if (v < 120000) return (v / 1000).toFixed(1) + ' s';
    return Math.round(v / 60000) + ' min';
  }

  function renderIdentity(s) {
    $('identity').textContent = 'cluster ' + s.cluster + ' · node ' + s.node + ' · v' + s.version;
  }

  function health(m) {
    if (m.self) return 'self';
    if (!m.alive) return 'down';
    if (m.last_seen_ms === null || Number(m.last_seen_ms) > UNREACHABLE_MS) return 'unreachable';
    return 'up';
  }

  function cell(tr, text, cls) {
    const td = document.createElement('td');
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function renderCluster(s) {
    $('c-leader').textContent = s.leader === null ? 'none' : 'node ' + s.leader;
    $('c-term').textContent = fmt(s.term);
    $('c-commit').textContent = fmt(s.commit_index);
    $('c-applied').textContent = fmt(s.applied_index);
    $('c-members').textContent = fmt(s.members.length);
    $('c-self').textContent = 'node ' + s.node;
    $('c-state').textContent = s.state;
    const body = $('members').tBodies[0];
    const rows = document.createDocumentFragment();
    s.members.slice().sort((a, b) => a.id - b.id).forEach((m) => {
      const tr = document.createElement('tr');
      const h = health(m);
      const leads = s.leader !== null && m.id === s.leader;
      tr.dataset.node = m.id;
      tr.dataset.health = h;
      tr.dataset.leader = leads ? 'true' : 'false';
      tr.className = (leads ? 'leader ' : '') + h;
      const id = cell(tr, 'node ' + m.id);
      if (leads) {
        const badge = document.createElement('span');
        badge.className = 'tag lead';
        badge.textContent = 'leader';
        id.appendChild(badge);
      }
      if (m.self) {
        const badge = document.createElement('span');
        badge.className = 'tag';
        badge.textContent = 'this node';
        id.appendChild(badge);
      }
      cell(tr, m.address, 'mono');
      cell(tr, m.role);
      cell(tr, h === 'down' ? 'unknown' : m.state);
      cell(tr, fmt(m.term), 'num');
      cell(tr, fmt(m.commit_index), 'num');
      cell(tr, fmt(m.applied_index), 'num');
      const r = cell(tr, '');
      const tag = document.createElement('span');
      tag.className = 'tag solo ' + h;
      tag.textContent = h === 'self' ? 'this node' : h;
      r.appendChild(tag);
      cell(tr, m.self ? '–' : ago(m.last_seen_ms), 'num');
      rows.appendChild(tr);
    });
    body.replaceChildren(rows);
  }

  function renderTraffic(p) {
    $('t-in').textContent = fmt(p.rin);
    $('t-out').textContent = fmt(p.rout);
    $('t-dropped').textContent = fmt(p.rdrop);
    $('t-connections').textContent = fmt(p.conns);
    $('t-sessions').textContent = fmt(p.sessions);
    $('t-subscriptions').textContent = fmt(p.subs);
    $('t-retained').textContent = fmt(p.retained);
    // the last second with commits, else the mean since the node started
    let lat = null;
    for (let i = points.length - 1; i >= 0 && lat === null; i--) lat = points[i].latency;
    const all = last && num(last.commits) ? num(last.commit_us_total) / num(last.commits) / 1000 : null;
    const el = $('t-latency');
    el.textContent = lat !== null ? lat.toFixed(2) + ' ms' : all !== null ? all.toFixed(2) + ' ms' : '–';
    el.title = lat !== null ? 'mean of the last second with commits' : 'mean since the node started';
    if (view === 'traffic') drawCharts();
  }

  // --- charts (canvas, drawn by hand) ----------------------------------------

  const COLORS = ['#2f6fde', '#e0802b', '#2a9d5c', '#b040b8', '#c0392b'];

  function drawCharts() {
    chart($('ch-rate'), [{ name: 'in', key: 'rin' }, { name: 'out', key: 'rout' }]);
    chart($('ch-drop'), [{ name: 'delivered', key: 'rout' }, { name: 'dropped', key: 'rdrop', color: '#c0392b' }]);
    chart($('ch-counts'), [{ name: 'connections', key: 'conns' }, { name: 'sessions', key: 'sessions' },
      { name: 'subscriptions', key: 'subs' }]);
    chart($('ch-retained'), [{ name: 'retained', key: 'retained' }]);
    chart($('ch-latency'), [{ name: 'ms', key: 'latency' }]);
  }

  function niceMax(v) {
    if (v <= 0) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    // each a multiple of 4 steps that reads well: 2,400 / 4 = 600
    for (const m of [1, 1.2, 1.6, 2, 2.4, 3.2, 4, 6, 8, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function chart(canvas, series) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (!w || !h) return;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const g = canvas.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const left = 52, right = 8, top = 20, bottom = 18;
    const pw = w - left - right, ph = h - top - bottom;
    let max = 0;
    series.forEach((s) => points.forEach((p) => { if (p[s.key] !== null) max = Math.max(max, p[s.key]); }));
    max = niceMax(max);
    g.font = '11px system-ui, sans-serif';
    g.strokeStyle = '#e3e7ee';
    g.fillStyle = '#6b7280';
    g.lineWidth = 1;
    g.textAlign = 'right';
    g.textBaseline = 'middle';
    for (let i = 0; i <= 4; i++) {
      const y = top + ph - (ph * i) / 4;
      g.beginPath();
      g.moveTo(left, Math.round(y) + 0.5);
      g.lineTo(left + pw, Math.round(y) + 0.5);
      g.stroke();
      g.fillText(fmt((max * i) / 4), left - 6, y);
    }
    g.textAlign = 'left';
    g.textBaseline = 'alphabetic';
    const shown = Math.min(HISTORY, Math.max(60, points.length));
    g.fillText(shown < 120 ? '-' + shown + ' s' : '-' + (shown / 60).toFixed(1).replace(/\.0$/, '') + ' min', left, h - 4);
    g.textAlign = 'right';
    g.fillText('now', left + pw, h - 4);
    // the axis grows with the history: one minute at first, five at most
    const span = Math.min(HISTORY, Math.max(60, points.length));
    const step = pw / (span - 1);
    const x0 = left + pw - (points.length - 1) * step;
    let lx = left;
    series.forEach((s, k) => {
      const color = s.color || COLORS[k % COLORS.length];
      g.strokeStyle = color;
      g.lineWidth = 1.6;
      g.beginPath();
      let pen = false;
      points.forEach((p, i) => {
        const v = p[s.key];
        if (v === null) { pen = false; return; }
        const x = x0 + i * step, y = top + ph - (ph * v) / max;
        if (pen) g.lineTo(x, y); else g.moveTo(x, y);
        pen = true;
      });
      g.stroke();
      g.fillStyle = color;
      g.fillRect(lx, 6, 10, 3);
      g.textAlign = 'left';
      g.textBaseline = 'middle';
      g.fillStyle = '#374151';
      g.fillText(s.name, lx + 14, 8);
      lx += 24 + g.measureText(s.name).width;
    });
  }

  window.addEventListener('resize', () => { if (view === 'traffic') drawCharts(); });

  // --- browse ------------------------------------------------------------------

  const browse = { kind: 'sessions', offset: 0, search: '', count: 0, seq: 0 };

  const COLUMNS = {
    sessions: [['client id', (x) => x.client_id, 'mono'], ['node', (x) => x.node], ['connected', (x) => (x.connected ? 'yes' : 'no')],
      ['expiry', (x) => (x.expiry === null ? 'never' : x.expiry + ' s')], ['subscriptions', (x) => fmt(x.subscriptions), 'num'],
      ['queued', (x) => fmt(x.queued), 'num'], ['in flight', (x) => fmt(x.inflight), 'num'], ['user', (x) => x.username || '']],
    subscriptions: [['client id', (x) => x.client_id, 'mono'], ['filter', (x) => x.filter, 'mono'], ['qos', (x) => x.qos],
      ['node', (x) => x.node], ['no local', (x) => (x.no_local ? 'yes' : '')], ['id', (x) => (x.subscription_id === null ? '' : x.subscription_id)]],
    retained: [['topic', (x) => x.topic, 'mono'], ['qos', (x) => x.qos], ['bytes', (x) => fmt(x.payload_bytes), 'num'],
      ['payload', (x) => (x.payload === null ? '(binary) ' + x.payload_base64.slice(0, 48) : x.payload.slice(0, 120)), 'mono payload']],
    users: [['name', (x) => x.name, 'mono'], ['source', (x) => x.source], ['SCRAM-SHA-256', (x) => (x.scram ? 'yes' : 'no')]],
    acl: [['kind', (x) => x.kind], ['user', (x) => x.user || ''], ['access', (x) => x.access], ['topic', (x) => x.topic, 'mono']],
  };
  // users and ACL rules: the API lists them without offset or search; the
  // page asks for at most LOCAL_MAX and pages and searches them here
  const LOCAL_MAX = 10000;
  const LOCAL = { users: 'users', acl: 'rules' };

  function localPage(kind, data) {
    const s = browse.search.toLowerCase();
    const all = data[LOCAL[kind]].filter((x) => !s || JSON.stringify(x).toLowerCase().includes(s));
    const out = { count: all.length };
    out[kind] = all.slice(browse.offset, browse.offset + PAGE);
    return out;
  }

  function browseQuery() {
    const p = new URLSearchParams({ limit: String(PAGE), offset: String(browse.offset) });
    const s = browse.search;
    if (s) {
      if (browse.kind === 'retained' && /[+#]/.test(s)) p.set('topic', s);
      else p.set('q', s);
    }
    // spaces as %20: the API reads '+' as a plus sign (topics contain it)
    return p.toString().replace(/\+/g, '%20');
  }

  async function loadBrowse() {
    const seq = ++browse.seq;
    const kind = browse.kind;
    let data;
    try {
      if (LOCAL[kind]) data = localPage(kind, await api('GET', '/api/v1/' + kind + '?limit=' + LOCAL_MAX));
      else data = await api('GET', '/api/v1/' + kind + '?' + browseQuery());
    } catch (e) {
      if (seq === browse.seq) {
        $('range').textContent = 'error';
        banner(kind + ': ' + e.message);
      }
      return;
    }
    if (seq !== browse.seq) return; // a newer request is on its way
    browse.count = data.count;
    const cols = COLUMNS[kind];
    const head = document.createElement('tr');
    cols.forEach((c) => { const th = document.createElement('th'); th.textContent = c[0]; head.appendChild(th); });
    const th = document.createElement('th');
    head.appendChild(th);
    $('browse').tHead.replaceChildren(head);
    const rows = document.createDocumentFragment();
    data[kind].forEach((x) => {
      const tr = document.createElement('tr');
      cols.forEach((c) => cell(tr, String(c[1](x)), c[2]));
      const act = cell(tr, '');
      if (kind === 'sessions' && x.connected) act.appendChild(rowButton('disconnect', () => disconnect(x.client_id)));
      if (kind === 'retained') act.appendChild(rowButton('clear', () => clearRetained(x.topic)));
      if (kind === 'users' && x.source === 'cluster') act.appendChild(rowButton('delete', () => deleteUser(x.name)));
      if (kind === 'acl' && x.source !== 'file') act.appendChild(rowButton('delete', () => deleteRule(x)));
      tr.dataset.key = kind === 'retained' ? x.topic : kind === 'users' ? x.name : kind === 'acl' ? x.topic : x.client_id;
      rows.appendChild(tr);
    });
    if (!data[kind].length) {
      const tr = document.createElement('tr');
      const td = cell(tr, browse.search ? 'nothing matches' : 'none', 'empty');
      td.colSpan = cols.length + 1;
      rows.appendChild(tr);
    }
    $('browse').tBodies[0].replaceChildren(rows);
    const first = data.count ? browse.offset + 1 : 0;
    const lastRow = Math.min(browse.offset + PAGE, data.count);
    $('range').textContent = fmt(first) + '–' + fmt(lastRow) + ' of ' + fmt(data.count);
    $('prev').disabled = browse.offset === 0;
    $('next').disabled = browse.offset + PAGE >= data.count;
  }

  function rowButton(text, fn) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'small';
    b.textContent = text;
    b.addEventListener('click', fn);
    return b;
  }

  let searchTimer = 0;
  function onSearch() {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      browse.search = $('search').value.trim();
      browse.offset = 0;
      loadBrowse();
    }, 250);
  }

  // --- operations ----------------------------------------------------------------

  function logOutcome(ok, text) {
    const li = document.createElement('li');
    li.className = ok ? 'ok' : 'bad';
    li.textContent = new Date().toLocaleTimeString() + '  ' + text;
    const log = $('op-log');
    log.insertBefore(li, log.firstChild);
    while (log.children.length > 20) log.removeChild(log.lastChild);
  }

  async function operate(question, what, method, path, body, after) {
    if (!window.confirm(question)) return;
    try {
      const r = await api(method, path, body);
      logOutcome(true, what + ': ' + (r.result || 'ok') + (r.message ? ' (' + r.message + ')' : ''));
      if (after) after();
    } catch (e) {
      logOutcome(false, what + ': refused: ' + e.message);
      window.alert(what + ' refused: ' + e.message);
    }
  }

  function selected(id) {
    const v = $(id).value;
    return v === '' ? null : Number(v);
  }

  function transfer() {
    const node = selected('op-transfer-node');
    operate(node ? 'Transfer leadership to node ' + node + '?' : 'Transfer leadership to any other voter?',
      'transfer' + (node ? ' to node ' + node : ''), 'POST', '/api/v1/cluster/transfer', node ? { node: node } : {});
  }

  function removeNode() {
    const node = selected('op-remove-node');
    if (!node) { logOutcome(false, 'remove: choose a node'); return; }
    operate('Remove node ' + node + ' from the cluster? It stops.', 'remove node ' + node, 'POST',
      '/api/v1/cluster/remove', { node: node });
  }

  function disconnect(id) {
    if (!id) { logOutcome(false, 'disconnect: give a client id'); return; }
    operate('Disconnect client "' + id + '"?', 'disconnect ' + id, 'POST', '/api/v1/sessions/disconnect',
      { client_id: id }, () => { if (view === 'browse') loadBrowse(); });
  }

  function clearRetained(topic) {
    if (!topic) { logOutcome(false, 'clear: give a topic'); return; }
    operate('Clear the retained message of "' + topic + '" on every node?', 'clear ' + topic, 'POST',
      '/api/v1/retained/delete', { topic: topic }, () => { if (view === 'browse') loadBrowse(); });
  }

  function refreshBrowse() { if (view === 'browse') loadBrowse(); }

  function addUser() {
    const name = $('op-user').value.trim();
    const password = $('op-password').value;
    if (!name || !password) { logOutcome(false, 'add user: give a name and a password'); return; }
    operate('Add user "' + name + '" on every node?', 'add user ' + name, 'POST', '/api/v1/users/add',
      { name: name, password: password }, () => { $('op-password').value = ''; refreshBrowse(); });
  }

  function deleteUser(name) {
    operate('Delete user "' + name + '" on every node?', 'delete user ' + name, 'POST', '/api/v1/users/delete',
      { name: name }, refreshBrowse);
  }

  function ruleBody(kind, user, access, topic) {
    const b = { kind: kind, topic: topic };
    if (kind === 'user') b.user = user;
    if (access) b.access = access;
    return b;
  }

  function addRule() {
    const kind = $('op-rule-kind').value;
    const user = $('op-rule-user').value.trim();
    const topic = $('op-rule-topic').value.trim();
    if (!topic || (kind === 'user' && !user)) { logOutcome(false, 'add rule: give a topic (and a user)'); return; }
    operate('Add the rule "' + kind + (kind === 'user' ? ' ' + user : '') + ' ' + $('op-rule-access').value + ' ' + topic +
      '" on every node?', 'add rule ' + topic, 'POST', '/api/v1/acl/add',
      ruleBody(kind, user, $('op-rule-access').value, topic), refreshBrowse);
  }

  function deleteRule(x) {
    operate('Delete the rule "' + x.kind + (x.user ? ' ' + x.user : '') + ' ' + x.access + ' ' + x.topic + '" on every node?',
      'delete rule ' + x.topic, 'POST', '/api/v1/acl/delete', ruleBody(x.kind, x.user, null, x.topic), refreshBrowse);
  }

  let choices = '';
  function renderOperateChoices(s) {
    const ids = s.members.map((m) => m.id).sort((a, b) => a - b);
    const key = ids.join(',') + '/' + s.leader;
    if (key === choices) return;
    choices = key;
    fill($('op-transfer-node'), ids.filter((id) => id !== s.leader), 'any voter');
    fill($('op-remove-node'), ids, 'choose a node');
  }

  function fill(select, ids, none) {
    const keep = select.value;
    const opts = [new Option(none, '')];
    ids.forEach((id) => opts.push(new Option('node ' + id, String(id))));
    select.replaceChildren(...opts);
    if (ids.map(String).includes(keep)) select.value = keep;
  }

  // --- navigation ------------------------------------------------------------------

  function show(name) {
    view = name;
    document.querySelectorAll('#nav button').forEach((b) => b.classList.toggle('active', b.dataset.view === name));
    document.querySelectorAll('.view').forEach((v) => v.classList.toggle('hidden', v.id !== 'view-' + name));
    if (name === 'traffic') drawCharts();
    if (name === 'browse') loadBrowse();
    if (location.hash !== '#' + name) replaceHash(name);
  }

  function replaceHash(name) {
    window.history.replaceState(null, '', '#' + name);
  }

  function start() {
    document.querySelectorAll('#nav button').forEach((b) => b.addEventListener('click', () => show(b.dataset.view)));
    document.querySelectorAll('#browse-tabs button').forEach((b) => b.addEventListener('click', () => {
      document.querySelectorAll('#browse-tabs button').forEach((x) => x.classList.toggle('active', x === b));
      browse.kind = b.dataset.kind;
      browse.offset = 0;
      loadBrowse();
    }));
    $('search').addEventListener('input', onSearch);
    $('prev').addEventListener('click', () => { browse.offset = Math.max(0, browse.offset - PAGE); loadBrowse(); });
    $('next').addEventListener('click', () => { browse.offset += PAGE; loadBrowse(); });
    $('op-transfer').addEventListener('click', transfer);
    $('op-remove').addEventListener('click', removeNode);
    $('op-disconnect').addEventListener('click', () => disconnect($('op-client').value.trim()));
    $('op-clear').addEventListener('click', () => clearRetained($('op-topic').value.trim()));
    $('op-add-user').addEventListener('click', addUser);
    $('op-add-rule').addEventListener('click', addRule);
    $('token-ok').addEventListener('click', takeToken);
    $('token-input').addEventListener('keydown', (e) => { if (e.key === 'Enter') takeToken(); });
    const first = location.hash.slice(1);
    show(['cluster', 'traffic', 'browse', 'operate'].includes(first) ? first : 'cluster');
    stream();
  }

  start();
}());
